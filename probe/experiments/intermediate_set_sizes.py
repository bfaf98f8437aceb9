"""Does a larger set of intermediate tasks help more than a smaller one (suite9 vs suite3)?

Two gains over "none" with overlapping intervals do not answer that: this module gives,
per schedule, the paired difference between its largest and its smallest set (the same
target items, the same seeds), per family of the targets and over all targets, with the
paired bootstrap interval over items and seeds (`probe.results.intervals.delta_rows`, as
`intermediate_gains` computes the gains over "none").

Rows: metric `sizediff_<metric>` (and `_sd` with several seeds), config the larger set,
layer the smaller set it is compared with, lang and group the family or "targets".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from probe.analysis.bootstrap import PairedBootstrap
from probe.data.languages import family
from probe.data.tasks import Task
from probe.results.gains import scores
from probe.results.intervals import delta_rows
from probe.results.items import ItemSet
from probe.results.rows import Row

PREFIX = "sizediff_"


def extreme_sets(sets: Sequence[tuple[int, str, str]]) -> list[tuple[str, str, str]]:
    """(schedule, larger set, smaller set) per schedule with two or more set sizes: the
    first set of its largest and of its smallest size (`set_sizes` order, prefixes
    first). Size 1 (the first stage alone) belongs to no schedule."""
    out = []
    for schedule in dict.fromkeys(s for _, s, _ in sets if s):
        mine = [(size, conf) for size, s, conf in sets if s == schedule]
        small, big = min(size for size, _ in mine), max(size for size, _ in mine)
        if small < big:
            first = {size: conf for size, conf in reversed(mine)}
            out.append((schedule, first[big], first[small]))
    return out


def set_size_deltas(
    task: Task, rows: Sequence[Row], items: ItemSet, source: str, boot: PairedBootstrap,
    sets: Sequence[tuple[int, str, str]],
) -> list[Row]:  # fmt: skip
    """The larger minus the smaller set of each schedule (`extreme_sets`), per family of
    the targets and over all targets. `rows`: the per-seed score rows."""
    score = scores(task, rows).filter(metric=task.metric)
    out: list[Row] = []
    for _, big, small in extreme_sets(sets):
        a, b = list(score.filter(config=big)), list(score.filter(config=small))
        if not a or not b:
            continue
        langs = {r.lang for r in b}
        targets = [lang for lang in dict.fromkeys(r.lang for r in a)
                   if lang in langs and lang != source]  # fmt: skip
        scopes: dict[str, list[str]] = {"targets": targets}
        for lang in targets:
            fam = family(lang)
            if fam is not None:
                scopes.setdefault(fam, []).append(lang)
        for group, members in scopes.items():
            found = delta_rows([r for r in a if r.lang in members],
                               [r for r in b if r.lang in members], items, boot, source,
                               like=a[0], config=big)  # fmt: skip
            for r in found:
                if r.group == "targets":
                    metric = PREFIX + r.metric.removeprefix("gain_")
                    out.append(dataclasses.replace(r, layer=small, lang=group, group=group,
                                                   metric=metric))  # fmt: skip
    return out
