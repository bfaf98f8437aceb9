"""Performance benchmarks (scripts, not timed tests): `python -m benchmarks` (or benchmarks/run.py).

extraction.py       probe extract vs a one-sentence-per-pass loop vs the bare forward pass;
                    cache bytes per word, read speed, peak memory at two sizes
cached_training.py  probe layers and probe grid on the cache vs one extraction pass
harness.py          settings, one subprocess per measurement, machine facts
run.py              runs everything, prints one table, writes benchmarks/results/<name>.json
"""
