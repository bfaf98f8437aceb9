"""What each intermediate stage of `probe intermediate` trained on: settings.json's "stages".

Per stage: its task, languages and linguistic domain (`intermediate_suites`), the training
budget it was given (`--max-train-words`, split over its languages), and per language the
words (pairs for pair tasks) and sentences it trained on and its dev items, as the seed
jobs measured them. Every job draws its samples with the run's first seed, so the sizes
are the same in every job; the first seed's are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from probe.data.tasks import get_task
from probe.experiments.intermediate_plan import language_budgets, parse_stage
from probe.experiments.intermediate_suites import task_domain
from probe.results.rows import Row

# The TRAINING metrics `intermediate_seed` writes per stage and language (layer: the stage).
STAGE_SIZES = ("train_items", "train_sentences", "dev_items")


def stage_settings(
    via: Sequence[str], training: Iterable[Row], max_train_words: int | None
) -> dict[str, dict[str, Any]]:
    """{stage name: task, langs, multilingual, domain, unit, budget per language, and the
    measured sizes per language with the training total}."""
    rows = [r for r in training if r.metric in STAGE_SIZES]
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
        out[name] = {
            "task": stage.task,
            "langs": list(stage.langs),
            "multilingual": stage.multilingual,
            "domain": task_domain(stage.task),
            "unit": "pairs" if task.probe_level == "pair" and not task.edges else "words",
            "budget": language_budgets(stage, max_train_words),
            **sizes,
            "train_total": sum(sizes["train_items"].values()),
        }
    return out
