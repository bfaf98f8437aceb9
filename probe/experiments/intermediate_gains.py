"""Gains over "none" for `probe intermediate` (both modes): seed means, sds and intervals.

Every configuration's target score is compared with the "none" configuration's, per language
and averaged over the language groups (enf / noenf / targets,
`probe.results.gains.language_groups`) and over each language family of the targets. A gain
is the seed-mean difference; with several seeds an sd row gives the spread of the per-seed
differences; when the jobs returned item statistics, `ci_low`/`ci_high` hold the paired
bootstrap interval over the target's evaluation sentences (pairs) and the seeds
(`probe.analysis.bootstrap`). Both configurations are scored on the same sentences, so the
interval is paired: sentence difficulty both share cancels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from probe.analysis.bootstrap import PairedBootstrap
from probe.data.languages import family
from probe.data.tasks import Task
from probe.results.gains import BASELINE, scores
from probe.results.intervals import delta_rows
from probe.results.items import ItemSet
from probe.results.rows import Row
from probe.results.table import Table


def configuration_gains(
    task: Task, rows: Sequence[Row], items: ItemSet, source: str, boot: PairedBootstrap
) -> list[Row]:
    """Every configuration's gain over "none" in the task's main metric: per language (the
    source's own included), per language group and per family of the targets.

    `rows`: the per-seed score rows (seed set) of every configuration, as the jobs returned
    them; configurations in first-seen order."""
    score = scores(task, rows).filter(metric=task.metric)
    base = list(score.filter(config=BASELINE))
    if not base:
        return []
    out: list[Row] = []
    for conf in score.values("config", config=lambda c: c != BASELINE):
        mine = list(score.filter(config=conf))
        like = mine[0]
        out += delta_rows(mine, base, items, boot, source, like=like, config=conf)
        out += _family_gains(mine, base, items, boot, source, like)
    return out


def _family_gains(
    mine: Sequence[Row], base: Sequence[Row], items: ItemSet, boot: PairedBootstrap,
    source: str, like: Row,
) -> list[Row]:  # fmt: skip
    """The gain averaged over each family's target languages (lang and group: the family).

    Complements enf/noenf, which is empty on one side when no target shares the source's
    family (MasakhaNER's source pcm is a creole of its own)."""
    langs = {r.lang for r in base}
    targets = [lang for lang in dict.fromkeys(r.lang for r in mine)
               if lang in langs and lang != source]  # fmt: skip
    families: dict[str, list[str]] = {}
    for lang in targets:
        fam = family(lang)
        if fam is not None:
            families.setdefault(fam, []).append(lang)
    out = []
    for fam, members in families.items():
        a = [r for r in mine if r.lang in members]
        b = [r for r in base if r.lang in members]
        # The "targets" group of the family's own languages is the family's mean.
        found = Table(delta_rows(a, b, items, boot, source, like=like, config=like.config))
        for r in found.filter(group="targets"):
            out.append(dataclasses.replace(r, lang=fam, group=fam))
    return out


def recipe_differences(recipes: dict[str, dict[str, object]]) -> dict[str, list[str]]:
    """{configuration: the recipe fields in which its target stage differs from "none"'s}
    (only configurations that differ); `recipes` maps configuration -> its target stage's
    recipe (epochs, schedule, learning rate, dropout, precision, head size, ...)."""
    base = recipes.get(BASELINE)
    if base is None:
        return {}
    out = {}
    for conf, recipe in recipes.items():
        fields = sorted(k for k in {*base, *recipe} if base.get(k) != recipe.get(k))
        if fields:
            out[conf] = fields
    return out


def recipe_note(differences: dict[str, list[str]], same: str) -> str:
    """The summary's line on "one recipe per comparison": `same` when every configuration's
    target stage trains as "none"'s does, else which configurations differ, and in what."""
    if not differences:
        return (
            f"one recipe: every configuration's target stage trains as '{BASELINE}' does ({same})"
        )
    listed = "; ".join(f"{c}: {', '.join(f)}" for c, f in differences.items())
    return f"recipes differ from '{BASELINE}' (gains mix in these): {listed}"
