"""What a complete atlas still lacks for a model, each with the command that fills it.

A complete atlas has, for the model's main task (the task of its probes, `pos` by default):
the per-layer probes, the structural probes, one morphology task, the cross-lingual map,
the DLFA grid, intermediate-task training, the domain-shift drops and calibration. The
commands repeat what the model's runs share (model, source, training cap, seeds) so the
new run's numbers sit beside the old ones on the same footing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from probe.results.atlas.runs import MORPH_PREFIX, ModelRuns, Run

_RANDOM = "+random"


@dataclass(frozen=True)
class Missing:
    what: str
    command: str


def main_task(runs: list[Run]) -> str:
    """The task the atlas is of: the newest `layers` run's that is not a morphology task."""
    probes = [r for r in runs if r.command == "layers" and not r.task.startswith(MORPH_PREFIX)]
    return max(probes, key=lambda r: r.mtime).task if probes else "pos"


def missing_runs(model: ModelRuns) -> list[Missing]:
    runs = model.latest()
    task = main_task(runs)
    have = {(r.command, r.task) for r in runs}
    commands = {r.command for r in runs}
    base = _shared_options(model, runs)

    def cmd(*words: str) -> str:
        return shlex.join(["probe", *words, *base])

    out = []
    wanted = [
        (
            "layers",
            task,
            "per-layer probes of the main task (source score, zero-shot, selectivity)",
            cmd("layers", "--task", task),
        ),
        (
            "structural",
            task,
            "structural probes (UUAS, distance and depth Spearman)",
            cmd("structural", "--task", task),
        ),
        (
            "map",
            task,
            "cross-lingual map (transfer ratio, Tatoeba retrieval, CKA)",
            cmd("map", "--task", task),
        ),
        ("grid", task, "DLFA grid (each layer fused with the last)", cmd("grid", "--task", task)),
    ]
    for command, wanted_task, what, line in wanted:
        if (command, wanted_task) not in have:
            out.append(Missing(what, line))
    if not any(r.task.startswith(MORPH_PREFIX) for r in runs):
        out.append(
            Missing(
                "morphology (one probe per UD feature: morph-Number, morph-Case, ...)",
                cmd("layers", "--task", f"{MORPH_PREFIX}Number"),
            )
        )
    rest = [
        (
            "intermediate",
            "intermediate-task gains",
            cmd("intermediate", "--target", "ner", "--via", "pos,udpos,panx"),
        ),
        (
            "domain-shift",
            "domain-shift drops (in-domain vs out-of-domain treebanks)",
            cmd("domain-shift", "--task", task),
        ),
        (
            "calibration",
            "calibration (ECE, reliability diagrams, temperature)",
            cmd("calibration", "--task", task),
        ),
    ]
    out += [Missing(what, line) for command, what, line in rest if command not in commands]
    return out


def _shared_options(model: ModelRuns, runs: list[Run]) -> list[str]:
    """--model (and the twin's seed), then the training cap and seeds all runs share."""
    words = ["--model", model.alias]
    if _RANDOM in model.key:
        seed = model.key.split(_RANDOM, 1)[1].split("-", 1)[0]
        words += ["--random-weights-seed", seed]
    caps = {r.settings.get("max_train_words") for r in runs}
    if len(caps) == 1 and (cap := caps.pop()) is not None:
        words += ["--max-train-words", str(cap)]
    seeds = {tuple(r.settings.get("seeds") or ()) for r in runs}
    if len(seeds) == 1 and (one := seeds.pop()):
        words += ["--seeds", ",".join(map(str, one))]
    return words
