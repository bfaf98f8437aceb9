"""Results on disk and on screen: long-format tables (CSV/JSON), compact text tables, plots."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import subprocess
import textwrap
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.text import Text

from probe.results.rows import Row
from probe.results.table import Table

log = logging.getLogger(__name__)


def run_directory(
    base: Path, name: str, settings: Mapping[str, Any], volatile: Sequence[str]
) -> Path:
    """`base/<name>-<hash of the settings>`: the same settings give the same directory, so a
    rerun overwrites its own results and nothing else. `volatile` keys (timings, device,
    provenance) are left out of the hash."""
    stable = {k: v for k, v in settings.items() if k not in volatile}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return base / f"{name}-{digest[:8]}"


def cache_settings(
    command: str,
    task_name: str,
    cache: Any,
    source: str,
    langs: Sequence[str],
    max_sentences: int | None,
) -> dict[str, Any]:
    """The settings every run on the cache records first: which command read which cache of
    which model, data and languages (`cache` is the run's probe.extract CacheHandle: its
    model, key and spec; never the device or the cache root, which change no number)."""
    return {
        "command": command,
        "task": task_name,
        "source": source,
        "languages": list(langs),
        **cache.settings(),
        "max_sentences": max_sentences,
    }


def write_table(rows: Sequence[Row], directory: Path, settings: Mapping[str, Any]) -> None:
    """results.csv (one row per number), results.json (settings + rows) and settings.json."""
    Table(rows).write(directory, settings)


def provenance(seed: int) -> dict[str, Any]:
    """Package versions, git revision and seed: what a rerun needs to match."""
    versions: dict[str, str | None] = {}
    for name in ("probe", "torch", "transformers", "numpy", "h5py", "scikit-learn", "seqeval"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent, check=False,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"versions": versions, "git_revision": rev, "python": platform.python_version(),
            "seed": seed}  # fmt: skip


def pivot(
    rows: Iterable[Row], head: str, metric: str
) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(layers, langs, {(layer, lang): value}) for one head and metric, in first-seen order."""
    layers: dict[str, None] = {}
    langs: dict[str, None] = {}
    cells = {}
    for r in rows:
        if r.head == head and r.metric == metric:
            layers.setdefault(r.layer)
            langs.setdefault(r.lang)
            cells[(r.layer, r.lang)] = r.value
    return list(layers), list(langs), cells


def text_table(
    row_names: Sequence[str],
    col_names: Sequence[str],
    cells: Mapping[tuple[str, str], float],
    *,
    corner: str = "layer",
    scale: float = 100.0,
    digits: int = 1,
) -> str:
    """A fixed-width table; missing cells print as '-'."""
    width = max(6, *(len(c) for c in col_names)) + 1
    lines = [f"{corner:<6}" + "".join(f"{c:>{width}}" for c in col_names)]
    for r in row_names:
        values = []
        for c in col_names:
            v = cells.get((r, c))
            values.append(
                f"{'-':>{width}}"
                if v is None or math.isnan(v)
                else f"{v * scale:>{width}.{digits}f}"
            )
        lines.append(f"{r:<6}" + "".join(values))
    return "\n".join(lines)


def plot_layer_curves(
    layers: Sequence[int],
    series: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    highlight: str | None = None,
) -> Path:
    """One line per series over the layers (e.g. one per language); the source drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, values in series.items():
        bold = name == highlight
        ax.plot(layers, [100 * v for v in values], marker="o", ms=3,
                lw=2.6 if bold else 1.3, label=f"{name} (source)" if bold else name,
                zorder=3 if bold else 2)  # fmt: skip
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(layers))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1, loc="best")
    return save_figure(fig, path)


# Fewest characters a wrapped line is given, however narrow its room: below that a text
# breaks into shreds, and the figure grows instead (save_figure).
_MIN_LINE = 12


def save_figure(fig: Figure, path: Path) -> Path:
    """Fit the figure's text inside it, write it to `path` (making its directory), close it.

    Every plot of the toolkit ends here, because its titles and labels carry task, model and
    cache-key names of any length, and `tight_layout` only moves axes: it cannot fit a title
    wider than the figure, which then ran off the PNG (the grid heatmap's title, for a
    me5-small cache). So text wider than its room is first wrapped onto lines (`_wrap`), then
    the axes are laid out; whatever still sticks out (a big legend, a label in a tiny panel)
    widens or heightens the figure by as much. What still does not fit is logged, not
    raised: a cramped plot is no reason to lose a run whose results are already written.
    """
    import matplotlib.pyplot as plt

    renderer = _renderer(fig)
    originals: dict[Text, str] = {}
    for _ in range(2):  # wrap to the rooms of the laid-out axes, then lay out the wrapped text
        _layout(fig)
        for text, room in _rooms(fig):
            _wrap(text, originals.setdefault(text, text.get_text()), room, renderer)
    _layout(fig)
    width, height = fig.get_size_inches()
    for _ in range(3):
        left, bottom, right, top = _overflow(fig, renderer)
        if max(left, bottom, right, top) <= 0.01:
            break
        grown = (min(width * 2, fig.get_figwidth() + left + right),
                 min(height * 2, fig.get_figheight() + bottom + top))  # fmt: skip
        if tuple(grown) == tuple(fig.get_size_inches()):
            break
        fig.set_size_inches(*grown)
        _layout(fig)
    if max(_overflow(fig, renderer)) > 0.01:
        log.warning("%s: some of the figure's text runs over its edge", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _renderer(fig: Figure) -> RendererBase:
    """The renderer text is measured with: the figure's own (Agg) canvas, or an Agg one."""
    get = getattr(fig.canvas, "get_renderer", None)
    if get is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        get = FigureCanvasAgg(fig).get_renderer
    return get()  # type: ignore[no-any-return]


def _layout(fig: Figure) -> None:
    # tight_layout warns when axes decorations cannot fit; save_figure then grows the figure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def _rooms(fig: Figure) -> list[tuple[Text, float]]:
    """Each title and label, with the length (pixels, along the text) it may take: the
    figure's width for figure texts (the suptitle), `_room` for those of the axes."""
    rooms = [(t, (fig.bbox.height if _vertical(t) else fig.bbox.width) * 0.96) for t in fig.texts]
    for ax in fig.axes:
        rooms += [
            (ax.title, _room(fig, ax, lambda a: a.get_title(), vertical=False)),
            (ax.xaxis.label, _room(fig, ax, lambda a: a.get_xlabel(), vertical=False)),
            (ax.yaxis.label, _room(fig, ax, lambda a: a.get_ylabel(), vertical=True)),
        ]
    return rooms


def _room(fig: Figure, ax: Axes, text_of: Callable[[Axes], str], vertical: bool) -> float:
    """Room for a text centred on `ax` (its title or x label; its y label if `vertical`):
    at least the axes' width (height), and up to the figure's edges or halfway to the
    nearest axes beside it in the same row (column) that has such a text of its own, so
    that a lone heatmap's title may run above its colour bar but panels' titles never meet.
    """

    def span(a: Axes, along: bool) -> tuple[float, float]:
        box = a.bbox
        return (box.y0, box.y1) if along == vertical else (box.x0, box.x1)

    lo, hi = span(ax, True)
    across = span(ax, False)
    low, high = (fig.bbox.y0, fig.bbox.y1) if vertical else (fig.bbox.x0, fig.bbox.x1)
    for other in fig.axes:
        if other is ax or not text_of(other).strip():
            continue
        o_lo, o_hi = span(other, True)
        o_across = span(other, False)
        if o_across[0] >= across[1] or across[0] >= o_across[1]:
            continue  # another row (column)
        if o_lo >= hi:
            high = min(high, (hi + o_lo) / 2)
        elif o_hi <= lo:
            low = max(low, (o_hi + lo) / 2)
        else:
            return hi - lo  # overlapping axes (an inset, a twin): keep to this one
    centre = (lo + hi) / 2
    return max(hi - lo, 2 * min(centre - low, high - centre) * 0.96)


def _vertical(text: Text) -> bool:
    return 45 < text.get_rotation() % 180 < 135


def _wrap(text: Text, original: str, room: float, renderer: RendererBase) -> None:
    """Set `original` on `text`, wrapped onto few lines of even length that fit in `room`
    pixels: at spaces if that is enough, else also after hyphens (a long model or cache-key
    name), else inside words. Math text ($...$) is left whole: a break could cut a formula."""
    text.set_text(original)
    if not original.strip() or "$" in original or room <= 0:
        return

    def length() -> float:
        extent = text.get_window_extent(renderer)
        return float(extent.height if _vertical(text) else extent.width)

    size = length()
    if size <= room:
        return
    lines = original.split("\n")
    first = max(_MIN_LINE, int(max(len(line) for line in lines) * room / size))
    for hyphens, words in ((False, False), (True, False), (True, True)):
        wrapper = textwrap.TextWrapper(break_long_words=words, break_on_hyphens=hyphens)

        def show(chars: int, wrapper: textwrap.TextWrapper = wrapper) -> int:
            wrapper.width = chars
            parts = [part for line in lines for part in (wrapper.wrap(line) or [""])]
            text.set_text("\n".join(parts))
            return len(parts)

        chars = first
        while show(chars) and length() > room and chars > _MIN_LINE:
            chars = max(_MIN_LINE, chars - max(1, chars // 10))
        if length() > room:
            continue  # even the shortest lines are too wide: break in more places
        # The fewest lines that fit; now the narrowest lines that keep their number and fit,
        # so that the lines are even and the last one is not a stray word.
        count = show(chars)
        while chars > _MIN_LINE and show(chars - 1) == count and length() <= room:
            chars -= 1
        show(chars)
        return


def _overflow(fig: Figure, renderer: RendererBase) -> tuple[float, float, float, float]:
    """How far (inches) the drawn artists reach past the figure's left, bottom, right, top."""
    tight = fig.get_tightbbox(renderer)
    box = fig.bbox_inches
    return (max(0.0, box.x0 - tight.x0), max(0.0, box.y0 - tight.y0),
            max(0.0, tight.x1 - box.x1), max(0.0, tight.y1 - box.y1))  # fmt: skip
