"""The atlas as one self-contained HTML page: header, per-layer heatmap, one section per run,
what is missing.

Self-contained because a report is mailed, attached to a paper's supplement or opened from
a laptop without the results tree: the CSS is inline, every figure is an inline PNG (data
URI), the only script sorts tables, and nothing is fetched. Links to each run's
settings.json and results.csv are relative, for when the page sits beside its results.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from probe.results.atlas.measures import STRUCTURAL, Atlas, Cell, Column, build_atlas
from probe.results.atlas.missing import Missing, missing_runs
from probe.results.atlas.runs import ModelRuns, Run

# ColorBrewer's YlGnBu, light (a column's lowest value) to dark (its highest).
_PALETTE = (
    (255, 255, 217),
    (237, 248, 177),
    (199, 233, 180),
    (127, 205, 187),
    (65, 182, 196),
    (29, 145, 192),
    (34, 94, 168),
    (12, 44, 132),
)


@dataclass(frozen=True)
class ModelAtlas:
    """One model's runs, the runs its atlas reads and the atlas itself."""

    model: ModelRuns
    runs: list[Run]
    atlas: Atlas
    missing: list[Missing]


def model_atlas(model: ModelRuns) -> ModelAtlas:
    runs = model.latest()
    return ModelAtlas(model, runs, build_atlas(runs), missing_runs(model))


def write_page(atlases: Sequence[ModelAtlas], out: Path) -> Path:
    """Write the report of one model, or of several side by side, to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    title = "Layer atlas: " + " vs ".join(a.model.key for a in atlases)
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">written by probe report on '
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC from the results "
        "directories below only (no encoder, no cache); every number is x100 and as "
        "the run's own summary prints it.</p>",
    ]
    body += [_header(a, out) for a in atlases]
    body.append(_atlas_section(atlases))
    for a in atlases:
        body.append(_runs_section(a, out, several=len(atlases) > 1))
    body += [_missing_section(a) for a in atlases]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body>\n</html>\n"
    )
    out.write_text(page, encoding="utf-8")
    return out


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _link(path: Path, out: Path, text: str) -> str:
    rel = Path(os.path.relpath(path.resolve(), out.parent.resolve())).as_posix()
    return f'<a href="{_e(quote(rel))}">{_e(text)}</a>'


# --- header: the model and its runs ------------------------------------------------------------


def _header(a: ModelAtlas, out: Path) -> str:
    m, atlas = a.model, a.atlas
    depth = (
        f"{atlas.n_layers} (embeddings + {atlas.n_layers - 1})"
        if atlas.n_layers
        else "unknown (no per-layer run)"
    )
    lines = [
        f'<section class="model" id="model-{_e(m.key)}">',
        f"<h2>{_e(m.alias)}</h2>",
        f"<dl><dt>model</dt><dd>{_e(m.alias)}</dd><dt>cache key</dt><dd><code>{_e(m.key)}"
        f"</code></dd><dt>layers</dt><dd>{_e(depth)}</dd><dt>runs</dt><dd>{len(a.runs)} "
        f"read, {len(m.superseded())} older, {len(m.skipped)} unfinished</dd></dl>",
        '<table class="runs sortable"><thead><tr><th>command</th><th>task</th>'
        "<th>source</th><th>languages</th><th>trained on</th><th>settings</th>"
        "<th>written</th><th>files</th></tr></thead><tbody>",
    ]
    for run in a.runs:
        lines.append(_run_row(run, out, "read"))
    for run in m.superseded():
        lines.append(_run_row(run, out, "older: a newer run of this command and task is read"))
    lines.append("</tbody></table>")
    if m.skipped:
        items = "".join(f"<li><code>{_e(p)}</code>: {_e(why)}</li>" for p, why in m.skipped)
        lines.append(f"<p>unfinished runs, not read:</p><ul>{items}</ul>")
    lines.append("</section>")
    return "\n".join(lines)


def _run_row(run: Run, out: Path, state: str) -> str:
    s = run.settings
    trained = ", ".join(
        f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
        for k, v in (s.get("train_size") or {}).items()
    )
    unit = s.get("train_unit") or ""
    written = dt.datetime.fromtimestamp(run.mtime, dt.UTC).strftime("%Y-%m-%d %H:%M")
    files = " ".join(
        _link(run.path / name, out, name)
        for name in ("settings.json", "results.csv", "summary.txt")
        if (run.path / name).is_file()
    )
    cls = "" if state == "read" else ' class="older"'
    return (
        f'<tr{cls} title="{_e(state)}"><td>{_e(run.command)}</td><td>{_e(run.task)}</td>'
        f"<td>{_e(run.source or '-')}</td><td>{_e(' '.join(run.languages))}{_data(s)}</td>"
        f"<td>{_e(trained)} {_e(unit)}</td><td>{_settings_text(s)}</td>"
        f"<td>{_e(written)}</td><td>{files}</td></tr>"
    )


def _data(s: dict[str, Any]) -> str:
    """The corpora read, where the run names them (UD treebanks per language)."""
    treebanks = s.get("treebanks") or {}
    names = sorted({str(tb) for tbs in treebanks.values() for tb in (tbs or [])})
    return f"<small>treebanks: {_e(' '.join(names))}</small>" if names else ""


def _settings_text(s: dict[str, Any]) -> str:
    """The settings that change a run's numbers most, in one line; the rest in the link."""
    extract = s.get("extract") or {}
    parts = {
        "splits": "/".join(
            str(s[k]) for k in ("train_split", "dev_split", "eval_split") if s.get(k)
        ),
        "cap": s.get("max_train_words") and f"{s['max_train_words']:,} words",
        "sample": s.get("max_sentences") and f"{s['max_sentences']:,} sentences",
        "seeds": ",".join(map(str, s.get("seeds") or [])),
        "pool": extract.get("pooling"),
        "dtype": extract.get("dtype"),
        "git": ((s.get("provenance") or {}).get("git_revision") or "")[:10],
    }
    return _e("; ".join(f"{k} {v}" for k, v in parts.items() if v))


# --- the per-layer atlas -----------------------------------------------------------------------


def _atlas_section(atlases: Sequence[ModelAtlas]) -> str:
    groups = _groups(a.atlas for a in atlases)
    labels = list(groups)
    ranges = {label: _range(a.atlas.column(label) for a in atlases) for label in labels}
    depths = {a.atlas.n_layers for a in atlases}
    fractions = len(depths) > 1
    tables = [_atlas_table(a, groups, ranges, fractions) for a in atlases]
    legend = (
        "colour: each column from its lowest value (light) to its highest (dark)"
        + (", on one scale across the models" if len(atlases) > 1 else "")
        + "; outlined: the column's best layer; [low, high]: 95% bootstrap interval, "
        "± sd over seeds, where the run has them; hover a column's name for what it "
        "measures and which run it is from"
        + ("; depth = layer / last layer, since the models' depths differ" if fractions else "")
    )
    rules = "".join(
        f"<li><b>{_e(a.model.key)}</b>: most structural layer "
        f"{_e(_or_unknown(a.atlas.most_structural))} ({_e(a.atlas.structural_rule)}); most "
        f"language-neutral layer {_e(_or_unknown(a.atlas.most_neutral))} "
        f"({_e(a.atlas.neutral_rule)})</li>"
        for a in atlases
    )
    return (
        '<section id="atlas"><h2>Per-layer atlas</h2>'
        f'<p class="note">{_e(legend)}</p><ul class="marks">{rules}</ul>'
        f'<div class="side">{"".join(tables)}</div></section>'
    )


def _or_unknown(layer: int | None) -> str:
    return "unknown" if layer is None else str(layer)


def _groups(atlases: Iterable[Atlas]) -> dict[str, str]:
    """{column label: its group} over the models, structural first, each model's order kept:
    a column only one model has is shown, empty, beside the other's too."""
    groups: dict[str, str] = {}
    for atlas in atlases:
        for col in atlas.columns:
            groups.setdefault(col.label, col.group)
    return dict(sorted(groups.items(), key=lambda item: item[1] != STRUCTURAL))


def _range(columns: Iterable[Column | None]) -> tuple[float, float] | None:
    values = [
        c.value for col in columns if col for c in col.cells.values() if not math.isnan(c.value)
    ]
    return (min(values), max(values)) if values else None


def _atlas_table(
    a: ModelAtlas,
    label_groups: dict[str, str],
    ranges: dict[str, tuple[float, float] | None],
    fractions: bool,
) -> str:
    atlas = a.atlas
    labels = list(label_groups)
    cols = [atlas.column(label) for label in labels]
    groups: list[tuple[str, int]] = []
    for group in label_groups.values():
        if groups and groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
    lead = 2 if fractions else 1
    head = [
        f'<table class="atlas sortable" data-model="{_e(a.model.key)}">',
        f'<caption>{_e(a.model.key)}</caption><thead><tr><th colspan="{lead}"></th>'
        + "".join(f'<th colspan="{n}" class="group">{_e(g)}</th>' for g, n in groups)
        + "</tr><tr><th>layer</th>"
        + ("<th>depth</th>" if fractions else ""),
    ]
    for label, col in zip(labels, cols, strict=True):
        tip = f"{col.what} (run {col.run.task}/{col.run.name})" if col else "no run has it"
        head.append(f'<th title="{_e(tip)}">{_e(label)}</th>')
    head.append("</tr></thead><tbody>")
    rows = []
    last = max(atlas.n_layers - 1, 1)
    for layer in range(atlas.n_layers):
        marks = []
        if layer == atlas.most_structural:
            marks.append('<span class="mark s">most structural</span>')
        if layer == atlas.most_neutral:
            marks.append('<span class="mark n">most language-neutral</span>')
        name = "emb" if layer == 0 else str(layer)
        cells = [f'<th data-v="{layer}">{name}{"".join(marks)}</th>']
        if fractions:
            cells.append(f'<td data-v="{layer / last:.4f}">{layer / last:.2f}</td>')
        for label, col in zip(labels, cols, strict=True):
            cells.append(_cell(col, layer, ranges.get(label)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(head) + "".join(rows) + "</tbody></table>"


def _cell(col: Column | None, layer: int, span: tuple[float, float] | None) -> str:
    cell: Cell | None = col.cells.get(layer) if col else None
    if cell is None or math.isnan(cell.value):
        return '<td class="empty" data-v="">-</td>'
    low, high = span if span else (cell.value, cell.value)
    t = 0.5 if high <= low else (cell.value - low) / (high - low)
    rgb = _colour(t)
    ink = "#fff" if _luminance(rgb) < 0.45 else "#111"
    peak = ' class="peak"' if col is not None and col.peak() == layer else ""
    detail = ""
    if cell.low is not None and cell.high is not None:
        detail = f"[{100 * cell.low:.1f}, {100 * cell.high:.1f}]"
    elif cell.sd is not None:
        detail = f"±{100 * cell.sd:.1f}"
    small = f"<small>{detail}</small>" if detail else ""
    return (
        f'<td{peak} data-v="{cell.value:.6g}" style="background:rgb{rgb};color:{ink}">'
        f"{100 * cell.value:.1f}{small}</td>"
    )


def _colour(t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t)) * (len(_PALETTE) - 1)
    i = min(int(t), len(_PALETTE) - 2)
    f = t - i
    lo, hi = _PALETTE[i], _PALETTE[i + 1]
    r, g, b = (round(x + (y - x) * f) for x, y in zip(lo, hi, strict=True))
    return r, g, b


def _luminance(rgb: tuple[int, int, int]) -> float:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# --- one section per run -----------------------------------------------------------------------


_TITLES = {
    "layers": "probes per layer",
    "structural": "structural probes",
    "map": "structural vs cross-lingual map",
    "grid": "DLFA grid",
    "intermediate": "intermediate-task gains",
    "domain-shift": "domain-shift drops",
    "calibration": "calibration and reliability",
    "finetune": "fine-tuning",
}


def _runs_section(a: ModelAtlas, out: Path, several: bool) -> str:
    who = f" of {a.model.key}" if several else ""
    parts = [f'<section class="runs-detail"><h2>Experiments{_e(who)}</h2>']
    for run in a.runs:
        title = f"{run.command}: {_TITLES.get(run.command, run.command)} ({run.task}"
        title += f", source {run.source})" if run.source else ")"
        parts.append(
            f'<section class="run" id="{_e(a.model.key)}-{_e(run.task)}-'
            f'{_e(run.name)}"><h3>{_e(title)}</h3>'
            f'<p class="note">{_link(run.path, out, f"{run.task}/{run.name}")}: '
            f"{_link(run.path / 'settings.json', out, 'settings.json')}</p>"
        )
        for png in run.figures:
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{_e(png.name)} '
                f'of {_e(run.name)}"><figcaption>{_e(png.name)}</figcaption></figure>'
            )
        summary = run.summary
        if summary:
            parts.append(
                f"<details open><summary>summary.txt</summary><pre>{_e(summary)}</pre></details>"
            )
        parts.append("</section>")
    parts.append("</section>")
    return "\n".join(parts)


def _missing_section(a: ModelAtlas) -> str:
    if not a.missing:
        return (
            f'<section class="missing"><h2>Missing from the atlas of {_e(a.model.key)}</h2>'
            "<p>nothing: every experiment of a complete atlas has a run.</p></section>"
        )
    items = "".join(f"<li>{_e(m.what)}<br><code>{_e(m.command)}</code></li>" for m in a.missing)
    return (
        f'<section class="missing"><h2>Missing from the atlas of {_e(a.model.key)}</h2>'
        "<p>each with the command that fills it; add the --data-dir, --cache-dir and "
        "--results-dir your other runs used, then rerun probe report.</p>"
        f"<ul>{items}</ul></section>"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#111;
  max-width:110rem}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid
  #ccc}h3{font-size:1.05rem;margin-top:1.5rem}
.note{color:#555;font-size:.9rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem;margin:.4rem 0}
dt{font-weight:600}dd{margin:0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.2rem .4rem;vertical-align:top}
thead th{background:#f3f3f3;cursor:pointer}
table.runs td:nth-child(4){max-width:18rem}
table.runs td small{display:block;color:#666;font-size:.75rem}
tr.older{color:#888}
table.atlas td{text-align:right;min-width:3.6rem;white-space:nowrap}
table.atlas td small{display:block;font-size:.7rem;opacity:.85}
table.atlas td.peak{outline:2px solid #d62728;outline-offset:-2px;font-weight:700}
table.atlas td.empty{color:#bbb;text-align:center}
table.atlas caption{font-weight:600;text-align:left}
th.group{text-align:center;text-transform:uppercase;font-size:.75rem;letter-spacing:.05em}
.mark{display:block;font-size:.65rem;font-weight:600;border-radius:3px;padding:0 .2rem;
  margin-top:.1rem;white-space:nowrap}
.mark.s{background:#fde0c5}.mark.n{background:#c9e4f6}
.side{display:flex;gap:1.5rem;align-items:flex-start;overflow-x:auto;padding-bottom:.5rem}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}
figure img{max-width:min(100%,56rem);height:auto;border:1px solid #eee}
figcaption{font-size:.8rem;color:#555}
pre{background:#fafafa;border:1px solid #eee;padding:.5rem;overflow-x:auto;font-size:.75rem}
code{font-size:.85rem;background:#f5f5f5;padding:0 .2rem}
"""

# Click a header to sort its table's body by that column (numbers by data-v), again to reverse.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
  Array.prototype.forEach.call(heads, function (th, index) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute("data-sort") !== "up";
      rows.sort(function (a, b) {
        var x = a.cells[index], y = b.cells[index];
        var u = x.getAttribute("data-v"), v = y.getAttribute("data-v");
        var p = u === null || u === "" ? NaN : parseFloat(u);
        var q = v === null || v === "" ? NaN : parseFloat(v);
        var c = isNaN(p) || isNaN(q) ? x.textContent.localeCompare(y.textContent) : p - q;
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      th.setAttribute("data-sort", up ? "up" : "down");
    });
  });
});
"""
