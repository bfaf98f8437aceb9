"""Fault injection: a process kills (or freezes) itself at a named point, for crash tests.

`PROBE_FAULT=<point>:<n>[:stop]` makes the n-th pass through `fault_point("<point>")` in
this process send itself SIGKILL (or SIGSTOP with `:stop`, so a test can look at the cache
while a writer is frozen mid-shard, then let it go on). Points: `forward` (before an encoder
forward pass), `write` (a block half-written into a shard's temporary file), `commit` (shard
flagged complete and closed, not yet fsynced), `rename` (fsynced, just before the rename),
`renamed` (just after it). The variable is read on the first call; unset, a call costs one
global read, so the points can sit in hot loops.
"""

from __future__ import annotations

import os
import signal

from probe.errors import ProbeError

POINTS = ("forward", "write", "commit", "rename", "renamed")

_plan: tuple[str, int, int] | None | bool = False  # False: PROBE_FAULT not read yet
_passes = 0


def fault_point(name: str) -> None:
    """Die (or stop) here when PROBE_FAULT names this point and this is its n-th pass."""
    global _plan, _passes
    if _plan is None:
        return
    if _plan is False:
        _plan = _parse(os.environ.get("PROBE_FAULT", ""))
        if _plan is None:
            return
    point, n, sig = _plan  # type: ignore[misc]
    if name != point:
        return
    _passes += 1
    if _passes == n:
        os.kill(os.getpid(), sig)


def _parse(text: str) -> tuple[str, int, int] | None:
    if not text:
        return None
    parts = text.split(":")
    ok = 2 <= len(parts) <= 3 and parts[0] in POINTS and parts[1].isdigit() and int(parts[1]) > 0
    if not ok or (len(parts) == 3 and parts[2] not in ("kill", "stop")):
        raise ProbeError(
            f"PROBE_FAULT={text!r}: expected <point>:<n>[:kill|stop] with point one of "
            f"{', '.join(POINTS)} and n >= 1 (it is a test hook; unset it for real runs)"
        )
    sig = signal.SIGSTOP if len(parts) == 3 and parts[2] == "stop" else signal.SIGKILL
    return parts[0], int(parts[1]), sig
