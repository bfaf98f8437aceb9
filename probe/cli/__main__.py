"""`python -m probe.cli ...` runs `probe` (and `torchrun ... -m probe.cli extract` each rank)."""

from probe.cli import main

main()
