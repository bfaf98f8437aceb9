"""`probe intermediate`'s calibration and domain-shift blocks of the summary.

Read from the run's rows only (probe.experiments.intermediate_calibration and
intermediate_domains write them): ECE before and after temperature scaling per
configuration, source-only vs multilingual intermediate stages, and with --eval-domains each
configuration's drop per other-domain set with its difference from "none"'s.
"""

from __future__ import annotations

import numpy as np

from probe.data.tasks import Task
from probe.results.gains import BASELINE, SD
from probe.results.intervals import interval_text, mark
from probe.results.rows import Row
from probe.results.table import Table

# Kept in step with probe.experiments.intermediate_calibration (results may not import
# experiments): the comparison rows' group, the two groups and their difference.
_GROUP = "stage-languages"
_SOURCE_ONLY, _MULTILINGUAL = "source-only", "multilingual"
_DIFFERENCE = f"{_MULTILINGUAL}-{_SOURCE_ONLY}"


def render_scores(task: Task, rows: Table, source: str) -> str:
    """The calibration block, and the domain-shift block when the run has drops; each
    starts with a blank line, so the result appends to the configuration table."""
    blocks = [calibration_block(rows, source), domain_block(task, rows)]
    return "".join(f"\n\n{b}" for b in blocks if b)


def _means(rows: Table, metric: str) -> Table:
    return rows.filter(metric=metric, seed=None, stat="", eval_task="", subset="", group="")


def calibration_block(rows: Table, source: str) -> str:
    """ECE x100 per configuration (mean over target languages) before and after temperature
    scaling, T, then the source-only vs multilingual comparison."""
    ece, ts = _means(rows, "ece"), _means(rows, "ece_ts")
    confs = ece.values("config")
    if not confs:
        return ""
    temps = {r.config: r.value for r in rows.filter(metric="temperature", seed=None, stat="")}
    width = max(8, *(len(c) + 1 for c in confs))
    lines = [
        "calibration: ECE x100 per configuration, mean over target languages; ECE_ts after "
        f"temperature scaling with T fitted on the head's own {source} dev predictions",
        f"{'config':<{width}}{'ECE':>8}{'ECE_ts':>8}{'T':>7}",
    ]
    for conf in confs:
        before = _target_mean(ece, conf, source)
        after = _target_mean(ts, conf, source)
        t = temps.get(conf)
        lines.append(f"{conf:<{width}}{_pct(before):>8}{_pct(after):>8}"
                     f"{'-' if t is None else f'{t:.2f}':>7}")  # fmt: skip
    lines += _group_lines(rows, source)
    return "\n".join(lines)


def _target_mean(table: Table, conf: str, source: str) -> float | None:
    values = [r.value for r in table.filter(config=conf) if r.lang != source]
    return float(np.mean(values)) if values else None


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _group_lines(rows: Table, source: str) -> list[str]:
    """source-only vs multilingual: each group's mean ECE and the difference."""
    found = rows.filter(group=_GROUP, stat="")
    sds = {(r.config, r.metric): r.value for r in rows.filter(group=_GROUP, stat=SD)}
    lines = ["", f"stage languages: {_SOURCE_ONLY} = every intermediate stage in {source} only; "
             f"{_MULTILINGUAL} = a stage in another language or several; ECE x100, mean over "
             "the group's configurations and the target languages"]  # fmt: skip
    groups = {(r.config, r.metric): r for r in found}
    present = [g for g in (_SOURCE_ONLY, _MULTILINGUAL) if (g, "ece") in groups]
    for g in present:
        n = ", ".join(f"{m} {_pct(groups[(g, m)].value)}" for m in ("ece", "ece_ts")
                      if (g, m) in groups)  # fmt: skip
        lines.append(f"  {g}: {n}")
    if len(present) < 2:
        missing = _MULTILINGUAL if _SOURCE_ONLY in present else _SOURCE_ONLY
        how = "--via panx:de or panx:en+de" if missing == _MULTILINGUAL else f"a stage in {source}"
        lines.append(f"  no {missing} configuration to compare with (add one: {how})")
        return lines
    for m in ("ece", "ece_ts"):
        row = groups.get((_DIFFERENCE, f"delta_{m}"))
        if row is None:
            continue
        sd = sds.get((_DIFFERENCE, f"delta_{m}_sd"))
        spread = f" ± {100 * sd:.1f} (sd over seeds)" if sd is not None else ""
        lines.append(f"  Δ {_MULTILINGUAL} - {_SOURCE_ONLY} {m}: {_pct(row.value, True)}{spread} "
                     f"{interval_text(row)}{mark(row)} (95% interval over target languages; "
                     "< 0: multilingual stages calibrate better)")  # fmt: skip
    return lines


def domain_block(task: Task, rows: Table) -> str:
    """Each configuration's drop (in-domain minus out-of-domain) x100 per set and over all
    sets, "*" where its interval excludes 0; then each drop minus none's."""
    metric = task.metric
    drops = rows.filter(metric=f"drop_{metric}", seed=None, stat="")
    if not drops:
        return ""
    diffs = rows.filter(metric=f"dropdiff_{metric}", seed=None, stat="")
    confs = drops.values("config")
    sets = [s for s in dict.fromkeys(_set(r) for r in drops) if s != "all"]
    cols = [*sets, "all"] if len(sets) > 1 else sets
    width = max(8, *(len(c) + 1 for c in confs))
    cw = max(9, *(len(c) + 2 for c in cols))
    lines = [
        f"domain shift: drop in {metric} x100 = in-domain minus out-of-domain score of the same "
        f"head (set = lang:task); * = its 95% interval excludes 0 (unpaired: two test sets)",
        f"{'config':<{width}}" + "".join(f"{c:>{cw}}" for c in cols),
    ]
    for table, label in ((drops, None), (diffs, f"drop minus '{BASELINE}''s drop")):
        if label is not None:
            if not table:
                break
            lines += [
                "",
                f"{label} x100 (> 0: drops more than '{BASELINE}'; paired within each set)",
                f"{'config':<{width}}" + "".join(f"{c:>{cw}}" for c in cols),
            ]
        cells = {(r.config, _set(r)): r for r in table}
        for conf in table.values("config"):
            line = f"{conf:<{width}}"
            for c in cols:
                r = cells.get((conf, c))
                text = "-" if r is None else f"{_pct(r.value, True)}{mark(r) or ' '}"
                line += f"{text:>{cw}}"
            lines.append(line.rstrip())
    lines += _pooled_lines(rows, metric)
    lines += _flag_lines(rows)
    return "\n".join(lines)


def _pooled_lines(rows: Table, metric: str) -> list[str]:
    """Per configuration, the drop over all sets and its difference from none's, each as
    seed mean ± sd [95% interval]: the numbers two runs (--body mlp, --body dlfa) compare."""
    found = {(r.config, r.metric): r for r in rows.filter(group="sets", seed=None, stat="")}
    sds = {(r.config, r.metric): r.value for r in rows.filter(group="sets", seed=None, stat=SD)}
    confs = dict.fromkeys(c for c, m in found if m == f"drop_{metric}")
    if not confs:
        return []
    out = ["", "over all sets x100: drop, and drop minus none's: seed mean ± sd [95% interval]"]
    for conf in confs:
        parts = []
        for m in (f"drop_{metric}", f"dropdiff_{metric}"):
            r = found.get((conf, m))
            if r is not None:
                sd = sds.get((conf, f"{m}_sd"))
                spread = f" ± {100 * sd:.1f}" if sd is not None else ""
                parts.append(f"{m.split('_')[0]} {_pct(r.value, True)}{spread} "
                             f"{interval_text(r)}{mark(r)}")  # fmt: skip
        out.append(f"  {conf}: " + "; ".join(parts))
    return out


def _set(row: Row) -> str:
    return "all" if row.group == "sets" else f"{row.lang}:{row.eval_task}"


def _flag_lines(rows: Table) -> list[str]:
    words = {r.lang: r.value for r in rows.filter(head="data", metric="train_words")}
    small = {r.lang: r.value for r in rows.filter(head="data", metric="small_train")}
    if not words:
        return []
    limit = rows.values("value", head="data", metric="small_train_words")
    below = f"under {int(limit[0]):,} words" if limit else "a small training split"
    text = ", ".join(f"{lang} {int(n):,}{' (small)' if small.get(lang) else ''}"
                     for lang, n in words.items())  # fmt: skip
    return ["", "in-domain training words per language in the data (zero-shot: only the source "
            f"trains; small = {below}, a low-resource flag): {text}"]  # fmt: skip
