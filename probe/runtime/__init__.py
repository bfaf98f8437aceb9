"""How the process runs: device and precision policy, threads, ranks, fault points, locks.

Kept empty: importing `probe.runtime.faults` must not load torch through `precision`."""
