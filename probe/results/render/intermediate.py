"""`probe intermediate` on screen and on disk: the configuration table and intermediate.png."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.data.tasks import Task
from probe.results.gains import BASELINE, SD, scores
from probe.results.intervals import interval_text, mark
from probe.results.render.intermediate_scores import render_scores
from probe.results.report import save_figure
from probe.results.rows import Row
from probe.results.table import Table

_FIXED_GROUPS = ("targets", "enf", "noenf")


def render_intermediate(task: Task, rows: Table, source: str, directory: Path, key: str) -> str:
    """Write intermediate.png; return the summary table (every scored language, source first,
    as the rows have them)."""
    langs = scores(task, rows).values("lang")
    plot_intermediate(task, rows, source, langs, directory / "intermediate.png", key)
    return intermediate_table(task, rows, source, langs) + render_scores(task, rows, source)


class _Cells:
    """Seed-mean scores, gains (rows: their intervals) and gain sds by (configuration,
    language or group)."""

    def __init__(self, task: Task, rows: Table) -> None:
        gain = f"gain_{task.metric}"
        means = scores(task, rows).filter(seed=None)  # per-seed rows stay in results.csv
        self.confs = means.values("config")
        self.values = {(r.config, r.lang): r.value for r in means}
        # Keyed by language for a language's gain, by group for an aggregate's.
        self.gain_rows = {(r.config, r.group or r.lang): r
                          for r in rows.filter(metric=gain, stat="", seed=None)}  # fmt: skip
        self.gains = {k: r.value for k, r in self.gain_rows.items()}
        self.sds = {(r.config, r.group or r.lang): r.value
                    for r in rows.filter(metric=f"{gain}_sd", stat=SD)}  # fmt: skip
        # Gain columns: targets, enf, noenf, then each family, as present.
        present = rows.values("group", metric=gain, stat="", group=lambda g: g != "")
        self.groups = [g for g in _FIXED_GROUPS if g in present]
        self.groups += [g for g in present if g not in _FIXED_GROUPS]


def intermediate_table(task: Task, rows: Table, source: str, langs: Sequence[str]) -> str:
    """Main metric x100 per configuration and language (seed means), the target mean and the
    gains, marked "*" where their interval excludes 0; then each gain's seed sd and
    interval."""
    metric = task.metric
    cells = _Cells(task, rows)
    confs, values, gains, groups = cells.confs, cells.values, cells.gains, cells.groups
    targets = [lang for lang in langs if lang != source]
    name_width = max(8, *(len(c) + 1 for c in confs))
    cols = [*langs, "mean"]
    width = max(7, *(len(c) + 1 for c in cols))
    gwidths = [max(9, len(_short(g)) + 3) for g in groups]
    head = f"{'config':<{name_width}}" + "".join(f"{c:>{width}}" for c in cols)
    head += "".join(f"{'Δ' + _short(g):>{w - 1}} " for g, w in zip(groups, gwidths, strict=True))
    lines = [
        f"{task.name}: {metric} x100 per configuration; source {source}; mean = over target "
        f"languages; Δ = gain over '{BASELINE}' (targets, inside/outside the source's family, "
        "per family); * = its 95% interval excludes 0",
        head,
    ]
    for conf in confs:
        mean = [values[(conf, t)] for t in targets if (conf, t) in values]
        line = f"{conf:<{name_width}}"
        line += "".join(_cell(values.get((conf, c)), width) for c in langs)
        line += _cell(float(np.mean(mean)) if mean else None, width)
        for g, w in zip(groups, gwidths, strict=True):
            found = cells.gain_rows.get((conf, g))
            line += _cell(gains.get((conf, g)), w - 1, signed=True)
            line += mark(found) if found is not None and mark(found) else " "
        lines.append(line.rstrip())
    lines += _interval_block(cells, name_width)
    return "\n".join(lines)


def _interval_block(cells: _Cells, name_width: int) -> list[str]:
    """One line per configuration: each group's Δ ± seed sd and its interval."""
    others = [c for c in cells.confs if c != BASELINE and any((c, g) in cells.gain_rows
                                                             for g in cells.groups)]  # fmt: skip
    if not others:
        return []
    texts = {(c, g): _gain_text(cells, c, g) for c in others for g in cells.groups}
    widths = [max(len(g), *(len(texts[(c, g)]) for c in others)) + 2 for g in cells.groups]
    sd = " ± sd over seeds" if cells.sds else ""
    lines = ["", f"Δ over '{BASELINE}' x100: seed mean{sd} [95% paired bootstrap interval over "
             "sentences and seeds]"]  # fmt: skip
    lines.append(
        f"{'config':<{name_width}}"
        + "".join(f"{g:>{w}}" for g, w in zip(cells.groups, widths, strict=True))
    )
    for c in others:
        lines.append(
            f"{c:<{name_width}}"
            + "".join(f"{texts[(c, g)]:>{w}}" for g, w in zip(cells.groups, widths, strict=True))
        )
    return lines


def _gain_text(cells: _Cells, conf: str, group: str) -> str:
    """ "+1.2 ± 0.3 [+0.4, +2.0]*" (no sd with one seed; "-" without the gain)."""
    row = cells.gain_rows.get((conf, group))
    if row is None:
        return "-"
    text = f"{100 * row.value:+.1f}"
    sd = cells.sds.get((conf, group))
    if sd is not None:
        text += f" ± {100 * sd:.1f}"
    return f"{text} {interval_text(row)}{mark(row)}"


def _short(group: str) -> str:
    return group if len(group) <= 12 else group[:11] + "."


def _cell(value: float | None, width: int, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return f"{'-':>{width}}"
    return f"{100 * value:>+{width}.1f}" if signed else f"{100 * value:>{width}.1f}"


def plot_intermediate(
    task: Task, rows: Table, source: str, langs: Sequence[str], path: Path, key: str
) -> Path:
    """Left: score per configuration (bar = target mean, dots = languages); right: gain over
    'none' per configuration inside/outside the source's family and per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = task.metric
    cells = _Cells(task, rows)
    confs, values, gains, sds = cells.confs, cells.values, cells.gains, cells.sds
    targets = [lang for lang in langs if lang != source]
    groups = [g for g in cells.groups if g != "targets"] or ["targets"]
    x = np.arange(len(confs))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(confs) + 4), 4.6),
                                      dpi=120)  # fmt: skip
    means = [np.mean([values[(c, t)] for t in targets if (c, t) in values] or [np.nan])
             for c in confs]  # fmt: skip
    left.bar(x, 100 * np.asarray(means), color="#9bb7d4", label="mean over targets")
    markers = "osD^v<>ph*"
    for j, lang in enumerate(langs):
        ys = [100 * values.get((c, lang), np.nan) for c in confs]
        left.plot(x, ys, linestyle="none", marker="x" if lang == source else markers[j % 10],
                  ms=5, label=f"{lang} (source)" if lang == source else lang)  # fmt: skip
    shown = [v for v in values.values() if np.isfinite(v)]
    if shown:
        left.set_ylim(max(0.0, 100 * min(shown) - 10), min(100.0, 100 * max(shown) + 5))
    left.set_xticks(x, confs, rotation=30, ha="right")
    left.set_ylabel(f"{metric} x100")
    left.set_title(f"{task.name}: score per configuration", fontsize=9)
    left.legend(fontsize=7, ncol=2)
    left.grid(axis="y", alpha=0.3)
    others = [c for c in confs if c != BASELINE]
    width = 0.8 / max(1, len(groups))
    for j, group in enumerate(groups):
        ys = [100 * gains.get((c, group), np.nan) for c in others]
        err = [100 * sds.get((c, group), 0.0) for c in others] if sds else None
        right.bar(np.arange(len(others)) + (j - (len(groups) - 1) / 2) * width, ys, width,
                  yerr=err, capsize=2, label=group)  # fmt: skip
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(np.arange(len(others)), others, rotation=30, ha="right")
    right.set_ylabel(f"gain over '{BASELINE}' in {metric} x100")
    right.set_title("gain by language group (enf/noenf: in/outside the source's family)",
                    fontsize=9)  # fmt: skip
    right.legend(fontsize=7)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(f"intermediate tasks -> {task.name} (source {source}), {key}", fontsize=9)
    return save_figure(fig, path)


SET_SIZE_CSV = "gain_per_set_size.csv"


def gain_per_set_size(
    task: Task, rows: Table, source: str, sets: Sequence[tuple[int, str, str]], directory: Path
) -> str:
    """The gain over 'none' per set size and language family: one line per set (size and
    schedule), one column per family of the targets and the target average, each cell the
    seed-mean gain with its 95% paired bootstrap interval ("*": excludes 0), from the family
    and "targets" gain rows of `configuration_gains`; also written long-form to
    gain_per_set_size.csv. `sets`: (size, schedule, configuration) in display order; the
    text is "" when no set was run. Below the sets, per schedule, the largest set minus the
    smallest (suite9 − suite3) on the same items and seeds, with its paired interval (the
    `sizediff_` rows of `intermediate_set_sizes`): the direct answer to "does 9 beat 3?".

    Why families and not enf/noenf: the question is how diversity helps across families,
    and a family's mean is over the targets it holds (the CSV names them)."""
    gain = f"gain_{task.metric}"
    found = {(r.config, r.group): r for r in rows.filter(metric=gain, stat="", seed=None)
             if r.group}  # fmt: skip
    sds = {(r.config, r.group): r.value for r in rows.filter(metric=f"{gain}_sd", stat=SD)}
    sets = [s for s in sets if any(conf == s[2] for conf, _ in found)]
    if not sets:
        return ""
    diffs = {
        (r.config, r.layer, r.group): r
        for r in rows.filter(metric=f"sizediff_{task.metric}", stat="", seed=None)
    }
    diff_sds = {
        (r.config, r.layer, r.group): r.value
        for r in rows.filter(metric=f"sizediff_{task.metric}_sd", stat=SD)
    }
    size_of = {conf: size for size, _, conf in sets}
    schedule_of = {conf: schedule for _, schedule, conf in sets}
    pairs = list(dict.fromkeys((big, small) for big, small, _ in diffs
                               if big in size_of and small in size_of))  # fmt: skip
    families = [g for g in dict.fromkeys(g for _, g in found) if g not in _FIXED_GROUPS]
    groups = [*families, "targets"]
    members = _family_members(task, rows, source)
    _write_set_sizes(directory / SET_SIZE_CSV, sets, groups, found, sds, members)
    _append_differences(directory / SET_SIZE_CSV, pairs, size_of, schedule_of, groups, diffs,
                        diff_sds, members)  # fmt: skip
    labels = [f"{size} {schedule}" if size > 1 else "1" for size, schedule, _ in sets]
    texts = {(conf, g): _set_cell(found.get((conf, g))) for _, _, conf in sets for g in groups}
    diff_labels = [f"{size_of[big]}-{size_of[small]} {schedule_of[big]}"
                   for big, small in pairs]  # fmt: skip
    texts.update({(f"{big}|{small}", g): _set_cell(diffs.get((big, small, g)))
                  for big, small in pairs for g in groups})  # fmt: skip
    keys = [conf for _, _, conf in sets] + [f"{b}|{s}" for b, s in pairs]
    label_w = max(8, *(len(x) + 1 for x in labels + diff_labels))
    widths = [max(len(g), *(len(texts[(c, g)]) for c in keys)) + 2 for g in groups]
    lines = ["", f"gain over '{BASELINE}' per set size and language family ({task.metric} x100, "
             "seed mean [95% paired bootstrap interval]; * = excludes 0; targets = all target "
             f"languages; {SET_SIZE_CSV})",
             f"{'set':<{label_w}}" + "".join(f"{g:>{w}}" for g, w in zip(groups, widths,
                                                                        strict=True))]  # fmt: skip
    for label, (_, _, conf) in zip(labels, sets, strict=True):
        cells = "".join(f"{texts[(conf, g)]:>{w}}" for g, w in zip(groups, widths, strict=True))
        lines.append(f"{label:<{label_w}}{cells}")
    if pairs:
        lines.append("larger set minus smaller set, same items and seeds (paired interval):")
    for label, (big, small) in zip(diff_labels, pairs, strict=True):
        cells = "".join(f"{texts[(f'{big}|{small}', g)]:>{w}}"
                        for g, w in zip(groups, widths, strict=True))  # fmt: skip
        lines.append(f"{label:<{label_w}}{cells}")
    lines += [f"  {label}: {conf}" for label, (_, _, conf) in zip(labels, sets, strict=True)]
    return "\n".join(lines)


def _set_cell(row: Row | None) -> str:
    if row is None:
        return "-"
    return f"{100 * row.value:+.1f} {interval_text(row)}{mark(row)}"


def _family_members(task: Task, rows: Table, source: str) -> dict[str, list[str]]:
    """Each family's target languages (and "targets": all), as the per-language gain rows
    have them."""
    from probe.data.languages import family

    out: dict[str, list[str]] = {}
    gain = f"gain_{task.metric}"
    targets = [lang for lang in rows.values("lang", metric=gain, stat="", group="", seed=None)
               if lang != source]  # fmt: skip
    out["targets"] = targets
    for lang in targets:
        fam = family(lang)
        if fam is not None:
            out.setdefault(fam, []).append(lang)
    return out


def _write_set_sizes(
    path: Path, sets: Sequence[tuple[int, str, str]], groups: Sequence[str],
    found: dict[tuple[str, str], Row], sds: dict[tuple[str, str], float],
    members: dict[str, list[str]],
) -> None:  # fmt: skip
    """Long form: one row per (set, family or targets) with the gain, its sd and interval."""
    import csv

    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["size", "schedule", "config", "minus", "group", "langs", "gain", "sd",
                      "ci_low", "ci_high"])  # fmt: skip
        for size, schedule, conf in sets:
            for group in groups:
                row = found.get((conf, group))
                if row is None:
                    continue
                sd = sds.get((conf, group))
                out.writerow([size, schedule, conf, "", group, "+".join(members.get(group, [])),
                              row.value, "" if sd is None else sd,
                              "" if row.ci_low is None else row.ci_low,
                              "" if row.ci_high is None else row.ci_high])  # fmt: skip


def _append_differences(
    path: Path, pairs: Sequence[tuple[str, str]], size_of: dict[str, int],
    schedule_of: dict[str, str], groups: Sequence[str], diffs: dict[tuple[str, str, str], Row],
    sds: dict[tuple[str, str, str], float], members: dict[str, list[str]],
) -> None:  # fmt: skip
    """The larger-minus-smaller rows: size "9-3", config the larger set, minus the smaller,
    gain the paired difference with its sd and interval."""
    import csv

    with path.open("a", newline="") as f:
        out = csv.writer(f)
        for big, small in pairs:
            schedule = schedule_of[big]
            for group in groups:
                row = diffs.get((big, small, group))
                if row is None:
                    continue
                sd = sds.get((big, small, group))
                out.writerow([f"{size_of[big]}-{size_of[small]}", schedule, big, small, group,
                              "+".join(members.get(group, [])), row.value,
                              "" if sd is None else sd,
                              "" if row.ci_low is None else row.ci_low,
                              "" if row.ci_high is None else row.ci_high])  # fmt: skip
