"""Run every benchmark, print one table, write benchmarks/results/<name>.json.

    python -m benchmarks                      # full run, minilm on ../shared/data (~12 min)
    python -m benchmarks --quick              # smoke run: 60 sentences per split
    python -m benchmarks --device cuda        # the same on a GPU (pinned memory, big batches)
    python -m benchmarks --only long-sentence # one 20,000-word sentence vs its sentences
    python -m benchmarks --only host-pipeline # the host pipeline (stand-in encoder) vs the disk
    python -m benchmarks --only startup       # process start to first batch, and its parts
    python -m benchmarks --only large         # en/train: probe extract vs its bare forward
    python -m benchmarks --peer neurox        # NeuroX 1.0.9 vs probe extract, whole processes
    python -m benchmarks --device cuda --only gpu   # mBERT-sized on a GPU (benchmarks/gpu.py)

Targets (issues 7 and 23) are checked against the numbers of this run; a missed one is marked
MISSED in the table and listed under "missed" in the JSON. benchmarks/README.md says
what bounds each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import REPO, Settings, machine  # noqa: E402
from benchmarks.host_pipeline import SHAPES  # noqa: E402
from benchmarks.peer import DEFAULT_SPLITS as PEER_SPLITS  # noqa: E402
from probe.runtime.threads import set_openmp_waiting  # noqa: E402

QUICK_SENTENCES = 60
LONG_WORDS = 20_000  # the long-sentence measurement's one sentence
QUICK_LONG_WORDS = 5_000
ONLY = ("extraction", "training", "long-sentence", "host-pipeline", "startup", "large", "gpu",
        "peer")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = Path(os.environ.get("PROBE_DATA", REPO.parent / "shared" / "data"))
    add = parser.add_argument
    add("--model", default="minilm", help="model alias or directory")
    add("--task", default="pos", help="word-level task with a local data set")
    add("--data-dir", type=Path, default=data, help="task data root (default: $PROBE_DATA)")
    add("--device", default="cpu", help="cpu, cuda or cuda:N")
    add("--quick", action="store_true", help=f"smoke run: {QUICK_SENTENCES} sentences per split")
    add("--max-sentences", type=int, default=None, help="per split (default: all)")
    add("--long-words", type=int, default=None, help=f"words of the one long sentence "
        f"(default {LONG_WORDS:,}; --quick {QUICK_LONG_WORDS:,})")  # fmt: skip
    add("--grid-workers", type=int, default=None, help="default: grid's own (one per core)")
    add("--repeats", type=int, default=None,
        help="rounds of the a/b/c and long-sentence comparisons (default 2)")  # fmt: skip
    add("--name", default="latest", help="results file name, without .json")
    add("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    add("--work-dir", type=Path, default=None, help="scratch for caches (default: a temp dir)")
    add("--only", choices=ONLY, default=None,
        help="one part: extraction (a, b, c, cache, memory, long sentence), the cached "
        "training, the long-sentence measurement, the host pipeline against the disk, "
        "start-up, the large job (en/train), or the GPU measurements (--device cuda)")  # fmt: skip
    add("--shapes", default="mbert,me5-small",
        help="hidden-state shapes of the host pipeline's stand-in encoder: "
        f"{', '.join(SHAPES)} (default: mbert,me5-small)")  # fmt: skip
    add(
        "--peer",
        choices=("neurox",),
        default=None,
        help="also run NeuroX 1.0.9 side by side (installs it in a venv under the work dir)",
    )
    add(
        "--peer-splits",
        default=",".join(PEER_SPLITS),
        help="lang/split list for --peer (default: %(default)s)",
    )
    add("--inline", action="store_true", help="every step in this process (tests; no RSS)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # As the `probe` command does (probe/cli): how idle OpenMP threads wait is chosen once,
    # from the load at start, and every step (and the peer) inherits it.
    openmp_waiting = set_openmp_waiting()
    from benchmarks import cached_training, extraction, gpu, host_pipeline, peer, startup

    with tempfile.TemporaryDirectory(prefix="probe-bench-") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        max_sentences = args.max_sentences or (QUICK_SENTENCES if args.quick else None)
        settings = Settings(
            data_dir=str(args.data_dir), work_dir=str(work), model=args.model, task=args.task,
            device=args.device, max_sentences=max_sentences,
            grid_workers=args.grid_workers or (1 if args.quick else None),
            memory_sentences=(max_sentences, 2 * max_sentences) if max_sentences else None,
            repeats=args.repeats or (1 if args.quick else 2),
            long_sentence_words=args.long_words or (QUICK_LONG_WORDS if args.quick else LONG_WORDS),
            inline=args.inline,
        )  # fmt: skip
        began = time.perf_counter()
        record: dict[str, Any] = {
            "name": args.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "python -m benchmarks "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "quick": args.quick,
            "settings": {k: v for k, v in vars(settings).items() if k != "work_dir"},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
            "openmp_waiting": openmp_waiting,
            "machine": machine(),
        }
        if args.only in (None, "extraction"):
            record["extraction"] = extraction.measure(settings)
        elif args.only == "long-sentence":
            long = extraction.long_sentence(settings)
            record["extraction"] = {
                "long_sentence": long,
                "long_sentence_vs_normal": long["long_sentence_vs_normal"],
            }
        if args.only in (None, "training"):
            record["cached_training"] = cached_training.measure(settings)
        if args.only in (None, "host-pipeline"):
            shapes = [s for s in args.shapes.split(",") if s]
            record["host_pipeline"] = {s: host_pipeline.measure(settings, s) for s in shapes}
            first = record["host_pipeline"][shapes[0]]
            for key in ("host_pipeline_words_per_s", "disk_write_words_per_s",
                        "host_pipeline_vs_disk", "disk_direct_words_per_s",
                        "host_pipeline_vs_disk_direct"):  # fmt: skip
                if key in first:
                    record[key] = first[key]
        if args.only in (None, "startup"):
            record["startup"] = startup.measure(settings)
            record["startup_s"] = record["startup"]["startup_s"]
        if args.only in (None, "large"):
            record["large_job"] = extraction.large_job(settings)
        if args.peer or args.only == "peer":
            splits = tuple(s for s in args.peer_splits.split(",") if s)
            record["peer"] = peer.measure(settings, splits)
        if args.only == "gpu" or (args.only is None and settings.device.startswith("cuda")):
            if not record["machine"]["cuda"]:
                raise SystemExit("--only gpu needs a CUDA device (pass --device cuda)")
            record["gpu_mbert"] = gpu.measure(settings)
        record["gpu"] = _gpu_note(settings, record)
        record["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        record["seconds"] = round(time.perf_counter() - began, 1)
    record["targets"] = targets(record)
    record["missed"] = [t["name"] for t in record["targets"] if t["met"] is False]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{args.name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))
    print(f"\nwritten {path}")
    return record


def _gpu_note(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    if settings.device.startswith("cuda"):
        ex = record.get("extraction", {})
        mbert = record.get("gpu_mbert", {})
        return {
            "ran": True,
            "device": record["machine"].get("gpu"),
            "toolkit_words_per_s": ex.get("toolkit", {}).get("words_per_s"),
            "toolkit_gpu_utilisation": ex.get("toolkit", {}).get("gpu_utilisation"),
            "forward_gpu_utilisation": ex.get("forward_only", {}).get("gpu_utilisation"),
            "mbert_words_per_s": mbert.get("toolkit_words_per_s"),
            "mbert_forward_words_per_s": mbert.get("forward_words_per_s"),
            "mbert_host_share": mbert.get("host_share"),
            "mbert_gpu_utilisation": mbert.get("toolkit_gpu_utilisation"),
        }
    why = ("no GPU on this machine" if not record["machine"]["cuda"]
           else "a GPU is present; rerun with --device cuda")  # fmt: skip
    return {"ran": False, "note": f"extraction benchmark not run on CUDA: {why}"}


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 7: value, threshold, met (None where this run did not measure it)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool | None) -> None:
        out.append({"name": name, "value": value, "target": goal, "met": met})

    ex = record.get("extraction") or {}
    if "toolkit" in ex:
        add("toolkit / naive words per s", ex["ratio_toolkit_to_naive"], ">= 5",
            ex["ratio_toolkit_to_naive"] >= 5)  # fmt: skip
        add("toolkit / bare forward words per s", ex["ratio_toolkit_to_forward"], ">= 0.85",
            ex["ratio_toolkit_to_forward"] >= 0.85)  # fmt: skip
        add("cache size over raw float16", ex["cache"]["overhead"], "<= 0.05",
            ex["cache"]["overhead"] <= 0.05)  # fmt: skip
        mem = ex["memory"]
        if mem["growth_mb"] is None:
            add("peak RSS growth (MB) between sizes", None, "flat", None)
        else:
            limit = 0.1 * mem["feature_growth_mb"]
            goal = f"<= {limit:.0f} (10% of the added features)"
            add("peak RSS growth (MB) between sizes", mem["growth_mb"], goal,
                mem["growth_mb"] <= limit)  # fmt: skip
    if "long_sentence" in ex:
        add("long sentence / normal words per s", ex["long_sentence_vs_normal"],
            ">= 0.5", ex["long_sentence_vs_normal"] >= 0.5)  # fmt: skip
    if "host_pipeline_vs_disk" in record:
        add("host pipeline / disk words per s", record["host_pipeline_vs_disk"], ">= 0.8",
            record["host_pipeline_vs_disk"] >= 0.8)  # fmt: skip
    if "large_job" in record:
        ratio = record["large_job"]["toolkit_vs_forward"]
        add(f"{record['large_job']['split']}: toolkit / bare forward", ratio, ">= 0.9",
            ratio >= 0.9)  # fmt: skip
    for cmp in (record.get("peer") or {}).get("splits", {}).values():
        needed = 5 if cmp["words"] >= 100_000 else 3
        add(f"{cmp['split']}: probe / NeuroX (whole process)", cmp["probe_vs_neurox"],
            f">= {needed}", cmp["probe_vs_neurox"] >= needed)  # fmt: skip
    tr = record.get("cached_training")
    if tr:
        add("layers time / extraction pass", tr["ratio_layers_to_extraction"], "< 1",
            tr["ratio_layers_to_extraction"] < 1)  # fmt: skip
        add("grid time / extraction pass", tr["ratio_grid_to_extraction"], "< 1",
            tr["ratio_grid_to_extraction"] < 1)  # fmt: skip
    return out


def _rounds(result: dict[str, Any]) -> str:
    return ", ".join(f"{x:,.0f}" for x in result.get("rounds_words_per_s", [result["words_per_s"]]))


def _peaks(run: dict[str, Any]) -> str:
    return ", ".join("-" if p is None else f"{p:,.0f}" for p in run.get("rounds_peak_rss_mb", []))


def _pipeline_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The table rows of issue 23: host pipeline, start-up, large job, the peer, the GPU."""
    rows: list[tuple[str, str]] = []
    for shape, hp in (record.get("host_pipeline") or {}).items():
        host = hp["rounds"]["host"]
        rounds = ", ".join(f"{r['words_per_s']:,.0f}" for r in host)
        cpu = ", ".join(f"{r['cpu_seconds']:.1f}" for r in host)
        rows.append((
            f"host pipeline ({shape} {host[0]['shape']}), words/s",
            f"{hp['host_pipeline_words_per_s']:,.0f} vs disk {hp['disk_write_words_per_s']:,.0f} "
            f"({hp['disk_write_gb_per_s']:.2f} GB/s): x{hp['host_pipeline_vs_disk']:.3f}; "
            + (f"vs direct I/O {hp['disk_direct_words_per_s']:,.0f} "
               f"({hp['disk_direct_gb_per_s']:.2f} GB/s): "
               f"x{hp['host_pipeline_vs_disk_direct']:.3f}; "
               if "disk_direct_words_per_s" in hp else "")
            + f"{hp['words']:,} words; rounds {rounds}; CPU s {cpu}",
        ))  # fmt: skip
    if "startup" in record:
        st = record["startup"]
        rounds = ", ".join(f"{r['startup_s']:.2f}" for r in st["rounds"])
        imports = ", ".join(f"{k} {v:.2f}" for k, v in st["imports_s"].items())
        rows.append((
            "start-up (process start to first batch)",
            f"{st['startup_s']:.2f} s ({st['split']}; rounds {rounds}); imports alone (s): "
            f"{imports}; not needed but loaded: {', '.join(st['not_needed_loaded']) or 'none'}",
        ))  # fmt: skip
    if "large_job" in record:
        lj = record["large_job"]
        rows.append((
            f"large job {lj['split']} ({lj['words']:,} words), words/s",
            f"{lj['toolkit']['words_per_s']:,.0f} vs bare forward "
            f"{lj['forward_only']['words_per_s']:,.0f}: x{lj['toolkit_vs_forward']:.3f}",
        ))  # fmt: skip
    for cmp in (record.get("peer") or {}).get("splits", {}).values():
        pr, nx = cmp["probe"], cmp["neurox"]
        rows.append((
            f"{cmp['split']} ({cmp['words']:,} words): probe vs NeuroX",
            f"{pr['seconds']:.1f} vs {nx['seconds']:.1f} s wall (x{cmp['probe_vs_neurox']}), "
            f"{pr['words_per_s']:,.0f} vs {nx['words_per_s']:,.0f} words/s, peak RSS "
            f"{pr['peak_rss_mb']:,.0f} vs {nx['peak_rss_mb']:,.0f} MB, "
            f"{pr['bytes_per_word']:,.0f} vs {nx['bytes_per_word']:,.0f} bytes/word",
        ))  # fmt: skip
    if "gpu_mbert" in record:
        g = record["gpu_mbert"]
        rows.append((
            "GPU mBERT-sized, words/s",
            f"{g['toolkit_words_per_s']:,.0f} vs bare forward {g['forward_words_per_s']:,.0f}; "
            f"host share {g['host_share']:.1%}; GPU utilisation "
            f"{g['toolkit_gpu_utilisation']}% ({g['model']})",
        ))  # fmt: skip
    return rows


def table(record: dict[str, Any]) -> str:
    """One plain-text table of every number of the run, then the targets."""
    rows: list[tuple[str, str]] = []
    ex = record.get("extraction") or {}
    if "toolkit" in ex:
        a, b, c = ex["toolkit"], ex["naive"], ex["forward_only"]
        rows += [
            ("extraction words (test splits)", f"{a['words']:,}"),
            ("(a) probe extract, words/s",
             f"{a['words_per_s']:,.0f}  ({a['compute_dtype']}, {a['batch_tokens']} tokens/batch; "
             f"rounds {_rounds(a)})"),
            ("(b) one sentence per pass fp32, words/s",
             f"{b['words_per_s']:,.0f}  (rounds {_rounds(b)})"),
            ("(c) bare forward of (a)'s batches, words/s",
             f"{c['words_per_s']:,.0f}  (rounds {_rounds(c)})"),
            ("a/b", f"{ex['ratio_toolkit_to_naive']:.2f}"),
            ("a/c", f"{ex['ratio_toolkit_to_forward']:.3f}"),
            ("padding waste (share of pad tokens)", f"{a['padding_waste']:.1%}"),
        ]  # fmt: skip
        cache = ex["cache"]
        rows += [
            ("cache bytes/word (raw fp16)",
             f"{cache['bytes_per_word']:,.0f} ({cache['raw_bytes_per_word']:,}), "
             f"overhead {cache['overhead']:.2%}; naive fp32 file {b['bytes_per_word']:,.0f}"),
            ("read one layer, all words: cache vs numpy",
             f"{cache['read_gb_per_s']:.2f} vs {cache['numpy_read_gb_per_s']:.2f} GB/s "
             f"({cache['read_split']})"),
        ]  # fmt: skip
        mem = ex["memory"]
        for run in mem["runs"]:
            rss = "-" if run["peak_rss_mb"] is None else f"{run['peak_rss_mb']:,.0f} MB"
            rows.append((f"peak RSS, {mem['split']} {run['sentences']:,} sentences",
                         f"{rss} ({run['words']:,} words, {run['feature_mb']:,.0f} MB of "
                         f"features, {mem.get('block_mb', '-')} MB blocks; lowest of "
                         f"{_peaks(run)})"))  # fmt: skip
    if "long_sentence" in ex:
        long = ex["long_sentence"]
        rows.append((f"one {long['words']:,}-word sentence vs {long['sentences']:,}, words/s",
                     f"{long['long']['words_per_s']:,.0f} vs {long['normal']['words_per_s']:,.0f}"
                     f" ({long['from']} words; rounds {_rounds(long['long'])} vs "
                     f"{_rounds(long['normal'])})"))  # fmt: skip
    tr = record.get("cached_training")
    if tr:
        e = tr["extraction"]
        rows += [
            ("extraction pass (source dev + all test)",
             f"{e['call_seconds']:.1f} s ({e['words']:,} words, {e['words_per_s']:,.0f} words/s)"),
            ("probe layers on the cache",
             f"{tr['layers']['call_seconds']:.1f} s (x{tr['ratio_layers_to_extraction']:.2f})"),
            ("probe grid on the cache",
             f"{tr['grid']['call_seconds']:.1f} s (x{tr['ratio_grid_to_extraction']:.2f})"),
        ]  # fmt: skip
    rows += _pipeline_rows(record)
    gpu = record["gpu"]
    rows.append(("GPU", gpu.get("note") or f"{gpu['device']}: utilisation "
                 f"{gpu['toolkit_gpu_utilisation']}%"))  # fmt: skip
    m = record["machine"]
    rows.append(("machine", f"{m['cpu']}, {m['cores']} cores, load {m['load_average_1m']} -> "
                 f"{record['load_average_1m_after']}, torch {m['torch']}"))  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'target':<{width}}  {'value':>10}  {'goal':<32} met")
    for t in record["targets"]:
        state = {True: "yes", False: "MISSED", None: "-"}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:,}"
        lines.append(f"{t['name']:<{width}}  {value:>10}  {t['target']:<32} {state}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
