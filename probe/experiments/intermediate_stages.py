"""What each intermediate stage of `probe intermediate` trained on: settings.json's "stages".

Per stage: its task, languages and linguistic domain (`intermediate_suites`), the training
budget it was given (`--max-train-words`, split over its languages), and per language the
words (pairs for pair tasks) and sentences it trained on and its dev items, as the seed
jobs measured them. Every job draws its samples with the run's first seed, so the sizes
are the same in every job; the first seed's are recorded.

A stage that got less than `SHORT` of its budget (a language with less data than its
share: vi VTB has 20k training words) is flagged `short`, logged and named in the summary
(`short_stages`): it is not refused, since the user may want it, but a comparison with a
stage at the full budget then compares amounts of data too. `distinct_items` counts the
different sentences (pairs) it trains on, over its languages: on parallel data a
translation of one is not another (`intermediate_parallel`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from probe.data.tasks import get_task
from probe.experiments.intermediate_plan import language_budgets, parse_stage
from probe.experiments.intermediate_suites import task_domain
from probe.results.rows import Row

log = logging.getLogger(__name__)

# The TRAINING metrics `intermediate_seed` writes per stage and language (layer: the stage).
STAGE_SIZES = ("train_items", "train_sentences", "dev_items")
# ... and per stage (lang: its languages joined by "+"): the different items it trains on.
DISTINCT = "distinct_items"
# A stage is short below this fraction of its budget.
SHORT = 0.9


def stage_settings(
    via: Sequence[str], training: Iterable[Row], max_train_words: int | None
) -> dict[str, dict[str, Any]]:
    """{stage name: task, langs, multilingual, domain, unit, budget per language, and the
    measured sizes per language with the training total}."""
    rows = [r for r in training if r.metric in (*STAGE_SIZES, DISTINCT)]
    first = min((r.seed for r in rows if r.seed is not None), default=None)
    measured: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r.seed == first:
            measured[(r.layer, r.lang, r.metric)] = int(r.value)
    out: dict[str, dict[str, Any]] = {}
    for name in via:
        stage = parse_stage(name)
        task = get_task(stage.task)
        sizes = {
            metric: {lang: measured[(name, lang, metric)]
                     for lang in stage.langs if (name, lang, metric) in measured}
            for metric in STAGE_SIZES
        }  # fmt: skip
        total = sum(sizes["train_items"].values())
        distinct = measured.get((name, "+".join(stage.langs), DISTINCT))
        out[name] = {
            "task": stage.task,
            "langs": list(stage.langs),
            "multilingual": stage.multilingual,
            "domain": task_domain(stage.task),
            "unit": "pairs" if task.probe_level == "pair" and not task.edges else "words",
            "budget": language_budgets(stage, max_train_words),
            "budget_total": max_train_words,
            **sizes,
            "train_total": total,
            "distinct_items": distinct,
            "short": bool(max_train_words and total < SHORT * max_train_words),
        }
    return out


def short_stages(stages: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per stage flagged `short` (logged as a warning too): its languages, what
    each got of its share, and the totals."""
    lines = []
    for name, s in stages.items():
        if not s["short"]:
            continue
        got = ", ".join(f"{lang} {s['train_items'].get(lang, 0)}/{s['budget'][lang]}"
                        for lang in s["langs"])  # fmt: skip
        lines.append(f"short stage {name} ({'+'.join(s['langs'])}): {s['train_total']} of its "
                     f"{s['budget_total']} {s['unit']} ({got}); below {SHORT:.0%} of the "
                     "budget, so its comparisons mix in data size")  # fmt: skip
    for line in lines:
        log.warning("%s", line)
    return lines
