"""`probe calibration` on screen and on disk: ECE tables, reliability.json and the plots.

Rows are selected by their typed fields: `config` (the regime), `layers` ((i,) for a probe,
(k, last) for DLFA), `subset="dev"` (the temperature fit) and `group="held-out"`. The
reliability diagrams travel from the jobs as bin rows (`bin_rows`: per bin its items,
accuracy and confidence, before and after scaling), which `diagrams` turns back into the
reliability.json entries (the first seed's heads); they never reach results.csv. Tables print
seed means (seed None); the held-out table and the differences add the sd over seeds, and the
differences their 95% interval with a "*" when it excludes 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.calibration import Reliability
from probe.data.tasks import Task
from probe.results.intervals import interval_text, mark
from probe.results.render.domain_shift import pm, seeds_line, split_choice, str_table
from probe.results.report import save_figure, text_table
from probe.results.rows import Row
from probe.results.table import Table

# Bin rows: per bin, its items, accuracy and confidence; `_ts` after temperature scaling.
_BIN_FIELDS = ("count", "accuracy", "confidence")
BIN_METRICS = tuple(f"bin_{f}{s}" for s in ("", "_ts") for f in _BIN_FIELDS)

Diagrams = dict[str, dict[str, dict[str, dict[str, Any]]]]  # head -> layer -> lang -> entry


def is_bin(metric: str) -> bool:
    return metric in BIN_METRICS


def is_dlfa(row: Row) -> bool:
    """DLFA reads a (k, last) pair of layers; a probe reads one."""
    return len(row.layers) == 2


def bin_rows(like: Row, before: Reliability, after: Reliability) -> list[Row]:
    """One head's reliability bins on one language as rows shaped `like` (its head, layer,
    language and typed fields), subset `bin<b>`."""
    rows = []
    for suffix, rel in (("", before), ("_ts", after)):
        for name, values in zip(_BIN_FIELDS, (rel.counts, rel.accuracy, rel.confidence),
                                strict=True):  # fmt: skip
            rows += [Row(like.head, like.layer, like.lang, f"bin_{name}{suffix}", float(v),
                         layers=like.layers, config=like.config, subset=f"bin{b}",
                         seed=like.seed)
                     for b, v in enumerate(values)]  # fmt: skip
    return rows


def diagrams(bins: Table, rows: Table) -> Diagrams:
    """reliability.json: per head, layer and language, ECE before and after scaling, T and
    both diagrams' bins (in the order the heads ran)."""
    seed = bins[0].seed if bins else None  # the seed whose heads the diagrams show
    temperature = {(r.config, r.layers): r.value
                   for r in rows.filter(subset="dev", metric="temperature", seed=seed,
                                        stat="")}  # fmt: skip
    values: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in bins:
        values.setdefault((r.head, r.layer, r.lang), {}).setdefault(r.metric, []).append(r.value)
    first = {(r.head, r.layer, r.lang): r for r in bins}
    out: Diagrams = {}
    for (head, layer, lang), found in values.items():
        before, after = (_reliability(found, suffix) for suffix in ("", "_ts"))
        like = first[(head, layer, lang)]
        out.setdefault(head, {}).setdefault(layer, {})[lang] = {
            "ece": before.ece,
            "ece_ts": after.ece,
            "temperature": temperature[(like.config, like.layers)],
            "before": before.as_dict(),
            "after": after.as_dict(),
        }
    return out


def _reliability(found: dict[str, list[float]], suffix: str) -> Reliability:
    counts = np.asarray(found[f"bin_count{suffix}"], dtype=np.int64)
    return Reliability(np.linspace(0.0, 1.0, len(counts) + 1), counts,
                       np.asarray(found[f"bin_accuracy{suffix}"], dtype=np.float64),
                       np.asarray(found[f"bin_confidence{suffix}"], dtype=np.float64))  # fmt: skip


def render_calibration(
    task: Task, rows: Table, bins: Table, regimes: Sequence[str], langs: Sequence[str],
    held_out: Sequence[str], n_layers: int, directory: Path, key: str, *, design: str = "",
    recipe: str = "", seeds: Sequence[int] = (0,), compared: Sequence[str] = (),
) -> str:  # fmt: skip
    """Write reliability.json, reliability_<regime>.png and ece_per_layer.png; return the
    summary text (`design`, the `design_line`, the recipe and seeds lines first)."""
    found = diagrams(bins, rows)
    (directory / "reliability.json").write_text(json.dumps(found, indent=1))
    first = bins[0].seed if bins else None
    plot_reliability(found, rows, regimes, langs, directory, key, seed=first)
    plot_ece(task, rows, regimes, langs, n_layers, directory, key)
    text = summary(task, rows, regimes, langs, held_out, n_layers, compared)
    head = [line for line in (design, recipe, seeds_line(seeds)) if line]
    return "\n".join(head) + "\n\n" + text


def design_line(
    task: Task, source: str, pooled: Sequence[str], pooled_cap: int | None, match_size: bool,
    max_train_words: int | None,
) -> str:  # fmt: skip
    """The run's design in one line: the two regimes, the split they train on (the task's own
    or --train-split) and whether the pooled head is size-matched to the source's."""
    both = "+".join(pooled)
    regimes = f"the {source}-only head against the {both} head, each on {split_choice(task)}"
    if match_size and pooled_cap is not None:
        size = (f"size-matched: the pooled head trains on as many words as the {source} head, "
                f"{pooled_cap:,} per pooled language (train + dev; --no-match-size pools all "
                "of it)")  # fmt: skip
    else:
        cap = f", at most {max_train_words:,} words each" if max_train_words else ""
        size = f"not size-matched (--no-match-size): the pooled head trains on all of it{cap}"
    return f"design: {regimes}; {size}"


def _heads(rows: Table, regime: str, seed: int | None = None) -> Table:
    """One row per head of the regime, in the order they ran: its dev temperature (the seed
    mean by default, or one seed's)."""
    return rows.filter(config=regime, subset="dev", metric="temperature", seed=seed, stat="")


def _sd(rows: Table, row: Row) -> float | None:
    found = rows.filter(head=row.head, layers=row.layers, lang=row.lang, config=row.config,
                        subset=row.subset, group=row.group, metric=f"{row.metric}_sd",
                        stat="sd")  # fmt: skip
    return found[0].value if found else None


def summary(
    task: Task, rows: Table, regimes: Sequence[str], langs: Sequence[str],
    held_out: Sequence[str], n_layers: int, compared: Sequence[str] = (),
) -> str:  # fmt: skip
    """ECE before/after temperature scaling per regime, the regimes on held-out targets,
    then the differences with their intervals."""
    lines = []
    for regime in regimes:
        words = rows.one(config=regime, metric="train_words")
        heads = _heads(rows, regime)
        names = [f"D{h.layer}" if is_dlfa(h) else h.layer for h in heads]
        for metric, what in (("ece", "ECE"), ("ece_ts", "ECE after temperature scaling")):
            scored = rows.filter(config=regime, metric=metric, lang=lambda g: g in langs,
                                 subset="", group="", seed=None, stat="")  # fmt: skip
            table = {(name, r.lang): r.value for name, h in zip(names, heads, strict=True)
                     for r in scored.filter(layers=h.layers)}  # fmt: skip
            lines += [
                f"{what} x100 (mean over seeds), heads trained on {regime} ({int(words):,} "
                "words; D = DLFA k,last)",
                text_table(names, langs, table),
                "",
            ]
        temps = [f"{name} {h.value:.2f}" for name, h in zip(names, heads, strict=True)]
        lines += [f"temperature T fitted on the {regime} dev data: {', '.join(temps)}", ""]
    if held_out:
        names = [*map(str, range(n_layers))]
        if any(is_dlfa(h) for h in _heads(rows, regimes[0])):
            names.append("dlfa")
        label = "acc" if task.metric == "accuracy" else "F1"
        for scale, what, metrics in (
            (100.0, f"{task.metric}, ECE, ECE after T (x100)",
             ((task.metric, label), ("ece", "ECE"), ("ece_ts", "ECE-T"))),
            (1.0, "NLL, NLL after T (nats)", (("nll", "NLL"), ("nll_ts", "NLL-T"))),
        ):  # fmt: skip
            cols: list[str] = []
            cells: dict[tuple[str, str], str] = {}
            for metric, short in metrics:
                for regime in regimes:
                    col = f"{short}:{regime}"
                    cols.append(col)
                    for r in rows.filter(config=regime, group="held-out", metric=metric,
                                         seed=None, stat=""):  # fmt: skip
                        name = "dlfa" if is_dlfa(r) else str(r.layers[0])
                        sd = _sd(rows, r)
                        cells[(name, col)] = (pm(r.value, sd, scale) if scale != 1.0 else
                                              f"{r.value:.3f}" + ("" if sd is None
                                                                  else f"±{sd:.3f}"))  # fmt: skip
            lines += [
                f"held-out targets ({', '.join(held_out)}), mean {what} ± sd over seeds, per "
                "regime",
                str_table(names, cols, cells, corner="layer"),
                "",
            ]
    lines += _differences(task, rows, compared)
    return "\n".join(lines).rstrip()


def _differences(task: Task, rows: Table, compared: Sequence[str]) -> list[str]:
    """The differences' table: per comparison, the task metric's and ECE's Δ over the
    compared languages (mean over them), ± sd over seeds, with the 95% interval."""
    label = "acc" if task.metric == "accuracy" else "F1"
    metrics = list(dict.fromkeys((task.metric, "ece")))
    found = rows.filter(metric=lambda m: m in {f"gain_{x}" for x in metrics}, group="targets",
                        stat="")  # fmt: skip
    if not found:
        return []
    cols: list[str] = []
    for metric in metrics:
        short = label if metric == task.metric else "ECE"
        cols += [f"{short} Δ", f"{short} 95% CI"]
    cells: dict[tuple[str, str], str] = {}
    names: list[str] = []
    for r in found:
        name = f"{r.head} ({r.config})"
        names = names if name in names else [*names, name]
        short = label if r.metric == f"gain_{task.metric}" else "ECE"
        cells[(name, f"{short} Δ")] = pm(r.value, _sd(rows, r), sign=True) + mark(r)
        cells[(name, f"{short} 95% CI")] = interval_text(r)
    return [
        f"differences x100 on {', '.join(compared)} (mean over them; ± sd over seeds, 95% "
        "interval over sentences and seeds, * = excludes 0): dlfa-last / dlfa-k = DLFA minus "
        "its matched single-layer baseline (the last layer / layer k, trained alike) in one "
        "regime; pooled-source = the pooled regime's head minus the source-only one's. ECE "
        "Δ < 0: better calibrated",
        str_table(names, cols, cells, corner="comparison"),
        "",
    ]


def _bars(ax: Any, rel: dict[str, Any], color: str, label: str, filled: bool) -> None:
    edges = np.asarray(rel["edges"])
    acc = np.asarray([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    if filled:
        ax.bar(centres, np.nan_to_num(acc), width=np.diff(edges), color=color, alpha=0.55,
               edgecolor="none", label=label)  # fmt: skip
    else:
        ax.plot(centres, acc, ".-", color=color, ms=3, lw=1, label=label)


def plot_reliability(
    found: Diagrams, rows: Table, regimes: Sequence[str], langs: Sequence[str], directory: Path,
    key: str, seed: int | None = None,
) -> list[Path]:  # fmt: skip
    """Per regime, a grid of reliability diagrams: languages x heads (layers, then DLFA).
    Bars: accuracy per confidence bin before scaling; line: after temperature scaling.
    `rows` name the heads (their dev temperature rows); `found` holds their diagrams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for regime in regimes:
        heads = list(_heads(rows, regime, seed))
        fig, axes = plt.subplots(len(langs), len(heads), dpi=90, squeeze=False,
                                 figsize=(1.9 * len(heads) + 0.6, 1.9 * len(langs) + 0.6),
                                 sharex=True, sharey=True)  # fmt: skip
        for i, lang in enumerate(langs):
            for j, head in enumerate(heads):
                ax = axes[i, j]
                entry = found[head.head][head.layer][lang]
                ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
                _bars(ax, entry["before"], "tab:blue", "before", True)
                _bars(ax, entry["after"], "tab:red", "after T", False)
                ax.text(0.03, 0.97, f"ECE {100 * entry['ece']:.1f}\n→{100 * entry['ece_ts']:.1f}",
                        va="top", fontsize=6, transform=ax.transAxes)  # fmt: skip
                if i == 0:
                    ax.set_title(f"{'DLFA ' if is_dlfa(head) else 'layer '}{head.layer}",
                                 fontsize=8)  # fmt: skip
                if j == 0:
                    ax.set_ylabel(f"{lang}\naccuracy", fontsize=8)
                if i == len(langs) - 1:
                    ax.set_xlabel("confidence", fontsize=7)
                ax.tick_params(labelsize=6)
        axes[0, 0].legend(fontsize=6, loc="lower right")
        fig.suptitle(f"reliability, head trained on {regime} ({key}); bars before, line after "
                     "temperature scaling", fontsize=9)  # fmt: skip
        paths.append(save_figure(fig, directory / f"reliability_{regime.replace('+', '-')}.png"))
    return paths


def plot_ece(
    task: Task, rows: Table, regimes: Sequence[str], langs: Sequence[str], n_layers: int,
    directory: Path, key: str,
) -> Path:  # fmt: skip
    """ECE per layer, one panel per language: each regime before (solid) and after T (dashed);
    DLFA at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(langs))
    n_rows = -(-len(langs) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.2 * n_rows), dpi=110,
                             squeeze=False, sharey=True)  # fmt: skip
    layers = list(range(n_layers))
    for ax, lang in zip(axes.flat, langs, strict=False):
        for regime, color in zip(regimes, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            for metric, style in (("ece", "-"), ("ece_ts", "--")):
                scored = rows.filter(config=regime, lang=lang, metric=metric, seed=None, stat="")
                probe = {r.layers: r.value for r in scored if not is_dlfa(r)}
                ys = [100 * probe.get((i,), np.nan) for i in layers]
                label = f"{regime}{' after T' if metric == 'ece_ts' else ''}"
                ax.plot(layers, ys, style, marker="o", ms=3, color=color, label=label)
                dlfa = [r.value for r in scored if is_dlfa(r)]
                if dlfa:
                    ax.plot([n_layers], [100 * dlfa[0]], "*" if metric == "ece" else "x", ms=8,
                            color=color)  # fmt: skip
        ax.set_xticks([*layers, n_layers], [*map(str, layers), "DLFA"])
        ax.set_title(lang, fontsize=9)
        ax.set_ylabel("ECE x100", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(langs) :]:
        ax.axis("off")
    fig.suptitle(f"{task.name} ({key}): ECE per layer, per training regime, before/after T",
                 fontsize=10)  # fmt: skip
    return save_figure(fig, directory / "ece_per_layer.png")
