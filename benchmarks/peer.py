"""The real peer: NeuroX 1.0.9's extractor against `probe extract`, whole processes, side by side.

`python -m benchmarks --peer neurox` installs NeuroX 1.0.9 with pip into a venv of its own
under the benchmark's work dir (`--no-deps`: its pins are old; the venv sees this
interpreter's site-packages, so both tools run the same torch, transformers and h5py, which
is all its extractor imports), writes each split as NeuroX's input (one sentence a line,
words joined by spaces) and runs, alternating for `repeats` rounds:

    probe   `probe extract --model M --task T --langs L --splits S` into a fresh cache
    neurox  `python -m neurox.data.extraction.transformers_extractor M input.txt out.hdf5
            --aggregation first --output_type hdf5` (one sentence per forward, float32)

Both are timed from process start to exit (start-up, model loading and writing included),
with the child's own peak RSS (`os.wait4`); words/s count the split's words; bytes per word
are the files written. The ratio of the medians is the target (>= 3 on UD German GSD test,
>= 5 on English EWT train). Not part of CI (it installs a package).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Settings
from probe.runtime.threads import set_openmp_waiting

NEUROX = "neurox==1.0.9"
DEFAULT_SPLITS = ("de/test", "en/train")  # UD German GSD test (16.5k words), EWT train (204k)


def neurox_python(work: Path) -> Path:
    """The venv's interpreter, NeuroX installed in it (once per work dir)."""
    venv = work / "venv-neurox"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)  # fmt: skip
    probe_import = subprocess.run(
        [str(python), "-c", "import neurox.data.extraction.transformers_extractor"],
        capture_output=True, check=False,
    )  # fmt: skip
    if probe_import.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", NEUROX],
                       check=True)  # fmt: skip
    return python


def split_text(settings: Settings, lang: str, split: str, path: Path) -> dict[str, Any]:
    """One split as NeuroX reads it: a sentence a line, words joined by single spaces.

    NeuroX splits lines on spaces, so a word that holds a space (rare in UD) is written with
    "_" in its place; the word count stays the split's own.
    """
    from probe.data.sources.records import TaggedSentence
    from probe.data.tasks import get_task, read_split

    records = read_split(get_task(settings.task), Path(settings.data_dir), lang, split)
    sentences = [r.words for r in records if isinstance(r, TaggedSentence)]
    if settings.max_sentences:
        sentences = sentences[: settings.max_sentences]
    path.write_text(
        "".join(" ".join(w.replace(" ", "_") for w in words) + "\n" for words in sentences),
        encoding="utf-8",
    )
    return {"sentences": len(sentences), "words": sum(len(s) for s in sentences)}


def timed_process(command: list[str], log: Path) -> dict[str, Any]:
    """Run `command` (stdout and stderr to `log`); its wall time and its own peak RSS."""
    env = dict(os.environ)
    set_openmp_waiting(env)  # as `probe` chooses for itself (a no-op under benchmarks.run)
    with open(log, "wb") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{command[:4]} failed (exit {proc.returncode}):\n{tail}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.h5"))


def compare_split(settings: Settings, lang: str, split: str, python: Path) -> dict[str, Any]:
    """Both tools on one split, `settings.repeats` alternating rounds; medians and ratio."""
    from probe.models import resolve_model

    work = Path(settings.work_dir) / "peer"
    work.mkdir(parents=True, exist_ok=True)
    text = work / f"{lang}-{split}.txt"
    counts = split_text(settings, lang, split, text)
    model = resolve_model(settings.model, work / "unused-cache").path
    probe_cmd = [sys.executable, "-m", "probe.cli", "extract", "--model", settings.model,
                 "--task", settings.task, "--langs", lang, "--splits", split,
                 "--data-dir", settings.data_dir, "--device", settings.device,
                 "--overwrite", "always"]  # fmt: skip
    if settings.max_sentences:
        probe_cmd += ["--max-sentences", str(settings.max_sentences)]
    rounds: dict[str, list[dict[str, Any]]] = {"probe": [], "neurox": []}
    for i in range(max(settings.repeats, 1)):
        cache = work / f"probe-cache-{i}"
        run = timed_process([*probe_cmd, "--cache-dir", str(cache)], work / "probe.log")
        run["bytes"] = _size(cache)
        shutil.rmtree(cache, ignore_errors=True)
        rounds["probe"].append(run)
        out = work / f"neurox-{i}.hdf5"
        neurox_cmd = [str(python), "-m", "neurox.data.extraction.transformers_extractor",
                      str(model), str(text), str(out), "--aggregation", "first",
                      "--output_type", "hdf5"]  # fmt: skip
        if settings.device == "cpu":
            neurox_cmd.append("--disable_cuda")
        run = timed_process(neurox_cmd, work / "neurox.log")
        run["bytes"] = _size(out)
        out.unlink(missing_ok=True)
        rounds["neurox"].append(run)
    text.unlink()
    result: dict[str, Any] = {"split": f"{settings.task}/{lang}/{split}", **counts}
    for tool, runs in rounds.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        result[tool] = {
            "seconds": seconds,
            "words_per_s": round(counts["words"] / seconds, 1),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "bytes_per_word": round(runs[0]["bytes"] / counts["words"], 1),
            "rounds": runs,
        }
    result["probe_vs_neurox"] = round(result["neurox"]["seconds"] / result["probe"]["seconds"], 2)
    return result


def measure(settings: Settings, splits: tuple[str, ...] = DEFAULT_SPLITS) -> dict[str, Any]:
    """NeuroX against `probe extract` on each `lang/split`."""
    python = neurox_python(Path(settings.work_dir))
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('neurox'))"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout.strip()  # fmt: skip
    out: dict[str, Any] = {"neurox_version": version, "model": settings.model, "splits": {}}
    for name in splits:
        lang, split = name.split("/")
        out["splits"][name] = compare_split(settings, lang, split, python)
    return out
