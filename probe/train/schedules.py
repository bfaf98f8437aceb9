"""Training schedules over several tasks on cached features: sequential stages, mixed batches.

A schedule trains one shared body through stages. Each stage is one `train.fit` call on a
fresh `TaskHead` (or, for mixed tasks, a `MultiTaskHead`) whose body starts from the
previous stage's body weights; classifiers never carry over (tasks differ in labels and
level). Building a fresh body and then loading the carried weights keeps the random stream
the same in every schedule, so from one seed the target classifier starts from the same
weights whatever came before it, and a schedule with no intermediate task is plain training.

    sequential  via A, then via B, ..., then the target      one stage per task
    mixed       via A and B interleaved, then the target     batches drawn at random, in
                                                             proportion to the items each
                                                             task has left (all are seen)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from probe.heads.multitask import Body, Level, MultiTaskHead, TaskHead
from probe.train import Batch, Feed, TrainConfig, evaluate, fit

Schedule = Literal["sequential", "mixed"]
SCHEDULES: tuple[Schedule, ...] = ("sequential", "mixed")
BodyState = dict[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class StageData:
    """One task's training material: its train and dev views and its label count."""

    name: str
    level: Level
    n_classes: int
    train: Feed
    dev: Feed | None


@dataclass(frozen=True, eq=False)
class StageResult:
    """One trained stage: the tasks it saw, the trained head, and how training went."""

    tasks: tuple[str, ...]
    head: nn.Module  # TaskHead (one task) or MultiTaskHead (mixed)
    best_epoch: int
    epochs_run: int
    best_dev_loss: float | None
    seconds: float

    @property
    def body(self) -> Body:
        body = self.head.body
        assert isinstance(body, Body)
        return body

    def task_head(self, name: str) -> TaskHead:
        """The head of one task of this stage (the shared body plus that task's classifier)."""
        head = self.head.heads[name] if isinstance(self.head, MultiTaskHead) else self.head
        assert isinstance(head, TaskHead)
        return head


class MixedFeed:
    """Batches of several feeds in one stream; each batch is one task's, tagged with its index.

    Training (a generator given): at every step a task is drawn with probability proportional
    to the items it has left, so the tasks stay interleaved to the end of the epoch and every
    batch of every task is seen exactly once per epoch. Evaluation (no generator): the
    feeds one after another. The tag is the batch's first input, a 0-d int tensor, which
    `MultiTaskHead` reads. Not for `predict_proba` (items of different tasks do not share
    one order).
    """

    def __init__(self, feeds: Sequence[Feed]) -> None:
        if not feeds:
            raise ValueError("a mixed feed needs at least one feed")
        self.feeds = tuple(feeds)

    @property
    def n_items(self) -> int:
        return sum(f.n_items for f in self.feeds)

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[Batch]:
        streams = [f.batches(batch_size, generator=generator, device=device) for f in self.feeds]
        left = np.array([float(f.n_items) for f in self.feeds])
        alive = [True] * len(streams)
        while any(alive):
            active = [i for i, on in enumerate(alive) if on]
            if generator is None or len(active) == 1:
                index = active[0]
            else:
                weights = np.maximum(left[active], 1.0)
                draw = float(torch.rand((), generator=generator)) * weights.sum()
                index = active[min(int(np.searchsorted(np.cumsum(weights), draw, side="right")),
                                   len(active) - 1)]  # fmt: skip
            batch = next(streams[index], None)
            if batch is None:
                alive[index] = False
                continue
            left[index] -= len(batch.items) if batch.items is not None else len(batch.labels)
            tag = torch.tensor(index, device=device)
            yield Batch((tag, *batch.inputs), batch.labels, batch.mask, batch.items)


def body_state(body: nn.Module) -> BodyState:
    """A detached CPU copy of a body's weights: what one stage hands the next."""
    return {k: v.detach().to("cpu", copy=True) for k, v in body.state_dict().items()}


def train_stage(
    new_body: Callable[[], Body],
    tasks: Sequence[StageData],
    config: TrainConfig,
    warm: BodyState | None = None,
) -> StageResult:
    """Train one stage: a fresh body (loaded with `warm` when given) and new classifiers.

    One task trains a `TaskHead` on its own views; several train a `MultiTaskHead` on a
    `MixedFeed` of their views, early-stopping on their pooled dev loss: the mean over every
    dev item of all of them (word tasks' words outnumber pair tasks' pairs, and dominate it).
    """
    if not tasks:
        raise ValueError("a stage needs at least one task")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"a stage cannot train one task twice: {names}")

    def build() -> nn.Module:
        body = new_body()
        if warm is not None:
            body.load_state_dict(warm)
        heads = {t.name: TaskHead(body, t.n_classes, t.level) for t in tasks}
        return heads[names[0]] if len(tasks) == 1 else MultiTaskHead(heads)

    if len(tasks) == 1:
        train, dev = tasks[0].train, tasks[0].dev
    else:
        train = MixedFeed([t.train for t in tasks])
        devs = [t.dev for t in tasks if t.dev is not None]
        dev = MixedFeed(devs) if len(devs) == len(tasks) else None
    result = fit(build, train, dev, config)
    return StageResult(tuple(names), result.head, result.best_epoch, result.epochs_run,
                       result.best_dev_loss, result.seconds)  # fmt: skip


def run_schedule(
    new_body: Callable[[], Body],
    via: Sequence[StageData],
    target: StageData,
    schedule: Schedule,
    config: TrainConfig,
    memo: dict[tuple[tuple[str, ...], ...], StageResult] | None = None,
) -> list[StageResult]:
    """Train the body on the intermediate tasks (sequentially or mixed), then on the target.

    Returns every stage's result; the last is the target's, whose head is what gets scored.
    With no intermediate task this is exactly `fit` on a fresh `TaskHead` of the target.
    `memo` (keyed by the stages so far) lets schedules that share a prefix of stages, such
    as A then A>B, train it once: a stage is a pure function of its prefix and the seed, so
    reusing it changes no number. Keep one memo per seed, body and data.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
    if schedule == "sequential":
        groups: list[list[StageData]] = [[t] for t in via]
    else:
        groups = [list(via)] if via else []
    results: list[StageResult] = []
    warm: BodyState | None = None
    prefix: tuple[tuple[str, ...], ...] = ()
    for n, group in enumerate([*groups, [target]]):
        prefix = (*prefix, tuple(t.name for t in group))
        stage = memo.get(prefix) if memo is not None else None
        if stage is None:
            stage = train_stage(new_body, group, config, warm)
            if memo is not None and n < len(groups):  # the target stage is never shared
                memo[prefix] = stage
        warm = body_state(stage.body)
        results.append(stage)
    return results


def dev_accuracy(stage: StageResult, task: StageData) -> float | None:
    """Accuracy of one task of a stage on its dev view (None without one): did it learn?"""
    if task.dev is None:
        return None
    _, acc = evaluate(stage.task_head(task.name), task.dev)
    return acc
