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
# experiments): the group means' group, the three groups, and the matched pairs' group.
_GROUP = "stage-languages"
_GROUPS = ("source-only", "other-language", "multilingual")
_PAIRS = "stage-pairs"


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
                     f"{_temperature(t):>7}")  # fmt: skip
    lines += _group_lines(rows, source)
    return "\n".join(lines)


def _temperature(t: float | None) -> str:
    """T as printed: a head whose dev predictions carry no information fits T towards
    infinity (uniform probabilities minimise its NLL), so a large T is shown as such."""
    if t is None:
        return "-"
    return f"{t:.2f}" if t < 100 else ">100"


def _target_mean(table: Table, conf: str, source: str) -> float | None:
    values = [r.value for r in table.filter(config=conf) if r.lang != source]
    return float(np.mean(values)) if values else None


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _group_lines(rows: Table, source: str) -> list[str]:
    """The three groups of single-stage configurations (mean ± sd [interval]), then each
    non-source stage against the source-only stage of its task."""
    found = {(r.config, r.metric): r for r in rows.filter(group=_GROUP, stat="")}
    sds = {(r.config, r.metric): r.value for r in rows.filter(group=_GROUP, stat=SD)}
    lines = [
        "",
        f"stage languages (single-stage configurations only; sets are in no group): "
        f"source-only = a stage in {source}, other-language = in one other language, "
        "multilingual = in several; ECE x100, mean over the group's configurations and "
        "the target languages ± sd over seeds [95% interval resampling target languages and "
        "seeds; none under 3 targets]",
    ]
    present = [g for g in _GROUPS if (g, "ece") in found]
    if not present:
        lines.append("  no single-stage configuration (add one to --via, e.g. pos:tr)")
        return lines
    for g in present:
        parts = [f"{m} {_spread(found[(g, m)], sds.get((g, f'{m}_sd')))}"
                 for m in ("ece", "ece_ts") if (g, m) in found]  # fmt: skip
        lines.append(f"  {g}: " + "; ".join(parts))
    pairs = rows.filter(group=_PAIRS, stat="")
    pair_sds = {(r.config, r.metric): r.value for r in rows.filter(group=_PAIRS, stat=SD)}
    names = list(dict.fromkeys((r.config, r.layer) for r in pairs))
    if not names:
        lines.append(f"  no matched pair: add a non-source stage of a task whose {source} "
                     "stage is in --via (pos:tr beside pos)")  # fmt: skip
        return lines
    lines += ["", "matched pairs, same task: ECE difference x100 (stage minus the "
              "source-only stage), mean over target languages ± sd over seeds [95% interval "
              "resampling target languages and seeds; none under 3 targets]; < 0: the stage "
              "calibrates better"]  # fmt: skip
    by = {(r.config, r.layer, r.metric): r for r in pairs}
    for conf, reference in names:
        parts = []
        for m in ("ece", "ece_ts"):
            r = by.get((conf, reference, f"delta_{m}"))
            if r is not None:
                parts.append(f"Δ{m} {_spread(r, pair_sds.get((conf, f'delta_{m}_sd')), True)}")
        lines.append(f"  {conf} vs {reference}: " + "; ".join(parts))
    return lines


def _spread(row: Row, sd: float | None, signed: bool = False) -> str:
    spread = f" ± {100 * sd:.1f}" if sd is not None else ""
    star = mark(row) if signed else ""  # "*" (excludes 0) means something for a difference
    return f"{_pct(row.value, signed)}{spread} {interval_text(row)}{star}"


def domain_block(task: Task, rows: Table) -> str:
    """Each configuration's drop (in-domain minus out-of-domain) x100 per set and over all
    sets, "*" where its interval excludes 0 and "†" where its training data holds the set's
    corpus (seen_domain); then each drop minus none's."""
    metric = task.metric
    drops = rows.filter(metric=f"drop_{metric}", seed=None, stat="")
    if not drops:
        return ""
    diffs = rows.filter(metric=f"dropdiff_{metric}", seed=None, stat="")
    confs = drops.values("config")
    seen = _seen(rows)
    sets = [s for s in dict.fromkeys(_set(r) for r in drops) if s != "all"]
    cols = [*sets, "all"] if len(sets) > 1 else sets
    width = max(8, *(len(c) + 1 for c in confs))
    cw = max(9, *(len(c) + 2 for c in cols))
    lines = [
        f"domain shift: drop in {metric} x100 = in-domain minus out-of-domain score of the same "
        f"head (set = lang:task); * = its 95% interval excludes 0 (unpaired: two test sets); "
        f"† = a seen domain: the configuration trained on that set's corpus",
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
                dagger = "†" if c in seen.get(conf, ()) or (c == "all" and conf in seen) else " "
                text = "-" if r is None else f"{_pct(r.value, True)}{mark(r) or ' '}{dagger}"
                line += f"{text:>{cw}}"
            lines.append(line.rstrip())
    lines += _pooled_lines(rows, metric)
    lines += _seen_lines(rows, seen)
    lines += _flag_lines(rows)
    return "\n".join(lines)


def _seen(rows: Table) -> dict[str, list[str]]:
    """{configuration: the sets (lang:task) whose corpus its training data holds}."""
    out: dict[str, list[str]] = {}
    for r in rows.filter(head="data", metric="seen_domain"):
        if r.value:
            out.setdefault(r.config, []).append(f"{r.lang}:{r.eval_task}")
    return out


def _seen_lines(rows: Table, seen: dict[str, list[str]]) -> list[str]:
    if not seen:
        return []
    share = {(r.config, f"{r.lang}:{r.eval_task}"): r for r in
             rows.filter(head="data", metric="seen_share")}  # fmt: skip
    out = ["", "seen domains (†): share of the set's corpus (its train split, else dev) found in "
           "the configuration's training/dev data; its drop is partly in-domain, and 'all' "
           "includes it"]  # fmt: skip
    for conf, sets in seen.items():
        found = [f"{s} {100 * share[(conf, s)].value:.0f}% of {share[(conf, s)].subset}"
                 if (conf, s) in share else s for s in sets]  # fmt: skip
        out.append(f"  {conf}: " + ", ".join(found))
    return out


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
    """The training-size flag in its three states: small, large, unknown (no train split)."""
    words = {r.lang: r.value for r in rows.filter(head="data", metric="train_words")}
    small = {r.lang: r.value for r in rows.filter(head="data", metric="small_train")}
    unknown = rows.values("lang", head="data", metric="train_unknown")
    if not words and not unknown:
        return []
    limit = rows.values("value", head="data", metric="small_train_words")
    below = f"under {int(limit[0]):,} words" if limit else "a small training split"
    text = ", ".join(f"{lang} {int(n):,} ({'small' if small.get(lang) else 'large'})"
                     for lang, n in words.items()) or "none"  # fmt: skip
    out = ["", "in-domain training words per language in the data (zero-shot: only the source "
           f"trains; small = {below}, a low-resource flag): {text}"]  # fmt: skip
    if unknown:
        out.append(f"  unknown (no training split in the data, so neither small nor large): "
                   f"{', '.join(unknown)}")  # fmt: skip
    return out
