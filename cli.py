"""Entry point named by the design card; the click app lives in probe/cli.py."""

from probe.cli import main

if __name__ == "__main__":
    main()
