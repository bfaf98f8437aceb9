"""How the process runs: device and precision policy, threads, ranks, fault points, locks,
file identities and the hub check.

Kept empty: importing `probe.runtime.faults` must not load torch through `precision`."""
