"""This process's place in a `torchrun` / `accelerate launch` job, and the few messages ranks swap.

Both launchers export RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR/MASTER_PORT); a
plain `python` run has none of them and is rank 0 of 1, with no process group at all. Work
is split by a deterministic plan every rank computes alike (`assign`), so ranks only talk
three times per run: rank 0 says what is left to do, everyone reports what it did, and that
exchange doubles as the barrier before rank 0 writes the manifest.

The process group is gloo even on GPU nodes: only small pickled objects cross it (never
tensors), and gloo's timeout is plain wall time, whereas NCCL's watchdog would abort a rank
that waits longer than its timeout for a slower one to finish its shards.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from probe.errors import ProbeError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a finished rank waits for the slowest one (seconds); PROBE_DIST_TIMEOUT overrides.
DEFAULT_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class Rank:
    """Who this process is in the job (runtime state: never stored in a config)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


def current_rank(environ: Mapping[str, str] | None = None) -> Rank:
    """Read RANK, WORLD_SIZE and LOCAL_RANK as torchrun and accelerate export them."""
    env = os.environ if environ is None else environ

    def read(name: str) -> int | None:
        raw = env.get(name, "")
        if raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ProbeError(f"environment variable {name}={raw!r} is not an integer") from None

    rank, world, local_rank = read("RANK"), read("WORLD_SIZE"), read("LOCAL_RANK")
    rank = 0 if rank is None else rank
    world = 1 if world is None else world
    local = rank if local_rank is None else local_rank
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ProbeError(
            f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} do not describe a process "
            "of a job (need 0 <= RANK < WORLD_SIZE); launch with torchrun or accelerate launch"
        )
    return Rank(rank, world, local)


def assign(weights: Sequence[int], world_size: int) -> list[int]:
    """Owner rank of each item: heaviest first, each to the least-loaded rank (ties: lowest).

    Depends only on the weights and the world size, so every rank computes the same plan
    without talking; rank 0 always gets the heaviest item.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, not {world_size}")
    owners = [0] * len(weights)
    loads = [(0, r) for r in range(world_size)]  # (load, rank) min-heap
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, owner = heapq.heappop(loads)
        owners[i] = owner
        heapq.heappush(loads, (load + weights[i], owner))
    return owners


def timeout() -> timedelta:
    raw = os.environ.get("PROBE_DIST_TIMEOUT", "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ProbeError(f"PROBE_DIST_TIMEOUT={raw!r} is not a number of seconds") from None
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def process_group(rank: Rank) -> Iterator[None]:
    """Join the job's gloo group for the block (nothing at all for a single process).

    A group the caller already initialised is used as it is and left open.
    """
    if not rank.distributed:
        yield
        return
    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_world_size() != rank.world_size or dist.get_rank() != rank.rank:
            raise ProbeError(
                f"an initialised process group ({dist.get_rank()}/{dist.get_world_size()}) "
                f"disagrees with the environment ({rank})"
            )
        yield
        return
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ProbeError(
            f"WORLD_SIZE={rank.world_size} but {' and '.join(missing)} not set: start the job "
            "with `torchrun` or `accelerate launch`, which set them"
        )
    dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world_size, timeout=timeout())
    log.debug("%s joined the process group", rank)
    try:
        yield
        # Leave together: a rank that tore gloo down while a peer's last message to it was
        # still in flight was seen to abort at exit (SIGABRT, "terminate called without an
        # active exception"), failing a run whose shards were all complete.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def from_main(rank: Rank, compute: Callable[[], T]) -> T:
    """Rank 0 computes a value and every rank returns it; a failure there fails every rank.

    Rank 0 raises its own exception; the others raise a ProbeError naming it, instead of
    waiting for a message that never comes.
    """
    if not rank.distributed:
        return compute()
    import torch.distributed as dist

    payload: list[Any] = [None]
    error: BaseException | None = None
    if rank.is_main:
        try:
            payload = [("ok", compute())]
        except Exception as err:  # every rank must hear about it, then rank 0 re-raises
            error = err
            payload = [("error", f"{type(err).__name__}: {err}")]
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    status, value = payload[0]
    if status == "error":
        raise ProbeError(f"rank 0 failed while planning the work: {value}")
    return value  # type: ignore[no-any-return]


def gather_all(rank: Rank, value: T) -> list[T]:
    """Every rank's value, in rank order, on every rank; waits for the slowest (a barrier)."""
    if not rank.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * rank.world_size
    dist.all_gather_object(out, value)
    return out
