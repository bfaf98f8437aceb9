"""Extraction speed, cache size and read speed, and extraction's peak memory.

Three ways to get every hidden state of one model for the same sentences, each timed in a
fresh process of the same run:

    toolkit   `probe extract`: length-sorted batches, bf16 where the CPU has it, pooling on
              the device, float16 shards written by a thread while the next block computes
    naive     what users write without a toolkit (NeuroX's extractor, the structural-probes
              scripts): one sentence per forward pass with output_hidden_states=True in
              float32, first-subword pooling, one HDF5 dataset per sentence
    forward   the bare forward passes of the toolkit's own batches (inputs built beforehand,
              no pooling, no copy back, no writing): the ceiling for the toolkit

Words per second count the words of the splits (not subwords) over the loop itself: the
model is loaded and the data read before the clock starts, in all three.

`long_sentence` times `probe extract` on one very long sentence (overlapping windows) against
the same words as ordinary sentences.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Settings, run_step

TEST_SPLITS = ("test",)


def extract_setup(
    settings: Settings,
    cache: str,
    *,
    langs: Sequence[str] = ("all",),
    splits: Sequence[str] | None = TEST_SPLITS,
    source: str | None = None,
    max_sentences: int | None = None,
    block_bytes: int | None = None,
    overwrite: str = "always",
) -> tuple[Any, Any, Any, Any]:
    """The (spec, request, options, paths) of one measurement: a fresh cache (rebuilt unless
    `overwrite` says otherwise), everything else from settings."""
    from probe.extract import CachePaths, ExtractOptions, ExtractRequest, ExtractSpec

    spec = ExtractSpec(settings.model, compute_dtype=settings.compute_dtype)
    request = ExtractRequest(
        settings.task, tuple(langs), tuple(splits) if splits else None, source,
        max_sentences if max_sentences is not None else settings.max_sentences,
    )  # fmt: skip
    options = ExtractOptions(device=settings.device, batch_tokens=settings.batch_tokens,
                             overwrite=overwrite)  # fmt: skip
    block = block_bytes if block_bytes is not None else settings.block_bytes
    if block is not None:
        options = replace(options, block_bytes=block)
    return spec, request, options, CachePaths(Path(cache), Path(settings.data_dir))


# --- the three ways -------------------------------------------------------------------------


def toolkit(
    settings: Settings,
    cache: str,
    langs: Sequence[str] = ("all",),
    splits: Sequence[str] | None = TEST_SPLITS,
    max_sentences: int | None = None,
    block_bytes: int | None = None,
) -> dict[str, Any]:
    """(a) `probe extract` into a fresh cache; words/s over the shards' own time."""
    from probe.extract import ensure_cached

    spec, request, options, paths = extract_setup(settings, cache, langs=langs, splits=splits,
                                                  max_sentences=max_sentences,
                                                  block_bytes=block_bytes)  # fmt: skip
    began = time.perf_counter()
    with gpu_sampler(settings.device) as utilisation:
        report = ensure_cached(spec, request, options, paths, progress=False).report
    wall = time.perf_counter() - began
    return {
        "words": report.rows,
        "seconds": round(report.seconds, 3),
        "call_seconds": round(wall, 3),  # with model loading, data reading and hashing
        "words_per_s": round(report.rows / report.seconds, 1),
        "padding_waste": round(report.padding_waste, 4),
        "device": report.device,
        "compute_dtype": report.compute_dtype,
        "batch_tokens": options.batch_tokens or (32768 if "cuda" in report.device else 4096),
        "key": report.key,
        "gpu_utilisation": utilisation(),
    }


def naive(settings: Settings, out: str) -> dict[str, Any]:
    """(b) One sentence per forward pass, float32, one HDF5 dataset per sentence."""
    import h5py
    import torch

    from probe.extract.plan import plan_jobs
    from probe.models import load_encoder, resolve_model
    from probe.runtime.device import resolve_device

    _, request, _, paths = extract_setup(settings, str(Path(out).parent / "unused-cache"))
    jobs = plan_jobs(request, paths)
    device = resolve_device(settings.device)
    model, tokenizer = load_encoder(resolve_model(settings.model, paths.cache_root), str(device))
    model.float()
    limit = min(int(getattr(model.config, "max_position_embeddings", 512)), 512)
    words = truncated = 0
    Path(out).mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with gpu_sampler(settings.device) as utilisation, torch.inference_mode():
        for job in jobs:
            path = Path(out) / f"{job.lang}-{job.split}.h5"
            with h5py.File(path, "w") as file:
                for index, record in enumerate(job.records):
                    enc = tokenizer(
                        list(record.words), is_split_into_words=True, truncation=True,
                        max_length=limit, return_tensors="pt",
                    )  # fmt: skip
                    states = model(**enc.to(device), output_hidden_states=True).hidden_states
                    layers = torch.stack(states)[:, 0]  # (layers, tokens, hidden)
                    first: dict[int, int] = {}
                    for position, word in enumerate(enc.word_ids(0)):
                        if word is not None and word not in first:
                            first[word] = position
                    n = len(record.words)
                    feats = np.zeros((layers.shape[0], n, layers.shape[2]), dtype=np.float32)
                    found = sorted(first)
                    feats[:, found] = layers[:, [first[w] for w in found]].cpu().numpy()
                    truncated += n - len(found)
                    file.create_dataset(str(index), data=feats)
                    words += n
    seconds = time.perf_counter() - began
    size = sum(p.stat().st_size for p in Path(out).glob("*.h5"))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "words": words,
        "seconds": round(seconds, 3),
        "words_per_s": round(words / seconds, 1),
        "words_without_vector": truncated,
        "bytes_per_word": round(size / max(words, 1), 1),
        "gpu_utilisation": utilisation(),
    }


def forward_only(
    settings: Settings,
    langs: Sequence[str] = ("all",),
    splits: Sequence[str] | None = TEST_SPLITS,
) -> dict[str, Any]:
    """(c) The toolkit's own batches through the model, nothing else timed."""
    from probe.runtime.precision import small_kernel_caches

    with small_kernel_caches():  # as `probe extract` runs the encoder
        return _forward_only(settings, langs, splits)


def _forward_only(
    settings: Settings, langs: Sequence[str], splits: Sequence[str] | None
) -> dict[str, Any]:
    import torch

    from probe.extract import Encoder
    from probe.extract.batching import prepared as prepared_batches
    from probe.extract.blocks import block_ranges, block_rows
    from probe.extract.plan import plan_jobs
    from probe.models import load_encoder, resolve_model
    from probe.runtime.device import resolve_device
    from probe.runtime.precision import autocast, pick_compute_dtype

    spec, request, options, paths = extract_setup(
        settings, str(Path(settings.work_dir) / "unused-cache"), langs=langs, splits=splits
    )
    jobs = plan_jobs(request, paths)
    device = resolve_device(settings.device)
    compute = pick_compute_dtype(spec.compute_dtype, device)
    model, tokenizer = load_encoder(resolve_model(settings.model, paths.cache_root), str(device))
    encoder = Encoder(model, tokenizer, device, compute, spec.max_length, spec.window_stride)
    batch_tokens = options.batch_tokens or (32768 if device.type == "cuda" else 4096)
    rows_per_block = block_rows(encoder.n_layers, encoder.hidden, spec.dtype,
                                options.block_bytes, word_level=True)  # fmt: skip
    batches: list[dict[str, torch.Tensor]] = []
    words = tokens = real = 0
    for job in jobs:  # the blocks and batches extraction forms (probe.extract.blocks)
        per_record = job.rows_per_record
        words += sum(per_record)
        for lo, hi in block_ranges(per_record, rows_per_block):
            units = encoder.units.words(job.records[lo:hi])
            bases = [0] * len(units)  # output rows play no part here
            for prepared in prepared_batches(units, bases, spec.pooling, batch_tokens,
                                             encoder.units.pad_id):  # fmt: skip
                tokens += prepared.tokens
                real += prepared.tokens - prepared.pad_tokens
                batches.append(_inputs(encoder, prepared))
    pin = device.type == "cuda"
    _synchronize(device)
    began = time.perf_counter()
    with (
        gpu_sampler(settings.device) as utilisation,
        torch.inference_mode(),
        autocast(device, compute),
    ):
        for inputs in batches:
            moved = {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin)
                     for k, v in inputs.items()}  # fmt: skip
            model(**moved, output_hidden_states=True, return_dict=True)
        _synchronize(device)
    seconds = time.perf_counter() - began
    return {
        "words": words,
        "seconds": round(seconds, 3),
        "words_per_s": round(words / seconds, 1),
        "batches": len(batches),
        "padding_waste": round(1 - real / tokens, 4),
        "compute_dtype": str(compute).removeprefix("torch."),
        "gpu_utilisation": utilisation(),
    }


def _inputs(encoder: Any, prepared: Any) -> dict[str, Any]:
    """The encoder's int64 inputs of one prepared batch, built before the clock starts."""
    import torch

    inputs = {
        "input_ids": torch.from_numpy(prepared.input_ids).long(),
        "attention_mask": torch.from_numpy(prepared.mask).long(),
    }
    if "token_type_ids" in encoder.tokenizer.model_input_names:
        inputs["token_type_ids"] = torch.from_numpy(prepared.types).long()
    return inputs


def _synchronize(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


# --- the cache: size and read speed -----------------------------------------------------------


def cache_stats(settings: Settings, cache: str, key: str, repeats: int = 5) -> dict[str, Any]:
    """Bytes per word against the raw float16 size; one layer's read speed against numpy's.

    Reads are of the largest shard's last layer, every word, from a warm page cache (the
    shard was just written); numpy reads the same bytes from a plain `.npy` file.
    """
    from probe.cache import open_shard

    shards = sorted((Path(cache) / key).rglob("*.h5"))
    if not shards:
        raise RuntimeError(f"no shard under {Path(cache) / key}")
    words = 0
    layers = hidden = 0
    for path in shards:
        with open_shard(path) as shard:
            words += shard.n_rows
            layers, hidden = shard.n_layers, shard.hidden
    size = sum(p.stat().st_size for p in shards)
    raw = layers * hidden * 2
    largest = max(shards, key=lambda p: p.stat().st_size)
    with open_shard(largest) as shard:
        last = shard.n_layers - 1
        array = shard.layer(last)
        h5_times = _timed(lambda: shard.layer(last), repeats)
    npy = Path(settings.work_dir) / "one-layer.npy"
    np.save(npy, array)
    np_times = _timed(lambda: np.load(npy), repeats)
    npy.unlink()
    gb = array.nbytes / 1e9
    return {
        "words": words,
        "shards": len(shards),
        "bytes": size,
        "bytes_per_word": round(size / words, 1),
        "raw_bytes_per_word": raw,
        "overhead": round(size / (words * raw) - 1, 4),
        "read_split": str(largest.relative_to(Path(cache) / key)),
        "read_bytes": array.nbytes,
        "read_gb_per_s": round(gb / statistics.median(h5_times), 2),
        "numpy_read_gb_per_s": round(gb / statistics.median(np_times), 2),
    }


def _timed(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


# --- peak memory ------------------------------------------------------------------------------


def largest_split(settings: Settings) -> dict[str, Any]:
    """The task's largest local split (by file size) and its sentence count."""
    from probe.data.discovery import expand_languages
    from probe.data.sources.records import TaggedSentence
    from probe.data.tasks import get_task, read_split
    from probe.errors import ProbeError

    task = get_task(settings.task)
    data_dir = Path(settings.data_dir)
    best: tuple[int, str, str] | None = None
    for lang in expand_languages(task, ("all",), data_dir):
        for split in ("train", "dev", "test"):
            try:
                paths = task.files(data_dir, lang, split)
            except (KeyError, ProbeError):  # no such split for this language
                continue
            if paths and all(p.is_file() for p in paths):
                size = sum(p.stat().st_size for p in paths)
                if best is None or size > best[0]:
                    best = (size, lang, split)
    if best is None:
        raise RuntimeError(f"no local split of {settings.task} under {data_dir}")
    _, lang, split = best
    records = read_split(task, data_dir, lang, split)
    words = sum(len(r.words) for r in records if isinstance(r, TaggedSentence))
    return {"lang": lang, "split": split, "sentences": len(records), "words": words}


def memory(settings: Settings) -> dict[str, Any]:
    """Peak RSS of `probe extract` on the largest split at two sizes (fresh process each)."""
    split = largest_split(settings)
    sizes = settings.memory_sentences or (split["sentences"] // 2, split["sentences"])
    # Memory is bounded by the blocks in flight (one being computed, one being written),
    # reached from the second block on. Blocks are sized so that the smaller run holds at
    # least four: with the default 256 MB the largest UD split is only 2 and 4 blocks, and
    # the comparison would set a run that never fills the pipeline against one that does.
    per_word = _bytes_per_word(settings)
    small_words = split["words"] * sizes[0] / max(split["sentences"], 1)
    default = extract_setup(settings, "unused")[2].block_bytes
    block_bytes = settings.block_bytes or int(min(default, max(small_words * per_word / 4,
                                                                4 << 20)))  # fmt: skip
    # A peak is one high-water mark, moved tens of MB by thread timing (which block is being
    # written while which is computed): each size runs `repeats` times and its lowest peak
    # counts. A leak would raise every run of the larger size, so it still shows.
    runs = []
    for n in sizes:
        cache = Path(settings.work_dir) / f"memory-{n}"
        peaks: list[float | None] = []
        for _ in range(max(settings.repeats, 1)):
            result = run_step(
                "benchmarks.extraction:toolkit", settings, cache=str(cache),
                langs=[split["lang"]], splits=[split["split"]], max_sentences=n,
                block_bytes=block_bytes,
            )  # fmt: skip
            shutil.rmtree(cache, ignore_errors=True)
            peaks.append(result.get("peak_rss_mb"))
        measured = [p for p in peaks if p is not None]
        runs.append({
            "sentences": n, "words": result["words"],
            "feature_mb": None,
            "peak_rss_mb": min(measured) if measured else None,
            "rounds_peak_rss_mb": peaks,
            "words_per_s": result["words_per_s"],
        })  # fmt: skip
    for run in runs:
        run["feature_mb"] = round(run["words"] * per_word / 2**20, 1)
    small, large = runs
    growth = (
        None
        if small["peak_rss_mb"] is None or large["peak_rss_mb"] is None
        else round(large["peak_rss_mb"] - small["peak_rss_mb"], 1)
    )
    return {"split": f"{split['lang']}/{split['split']}", "runs": runs, "growth_mb": growth,
            "feature_growth_mb": round(large["feature_mb"] - small["feature_mb"], 1),
            "block_mb": round(block_bytes / 2**20, 1)}  # fmt: skip


def _bytes_per_word(settings: Settings) -> int:
    """float16 bytes of every layer of one word for the benchmark's model."""
    from transformers import AutoConfig

    from probe.models import resolve_model

    ref = resolve_model(settings.model, Path(settings.work_dir) / "unused-cache")
    config = AutoConfig.from_pretrained(ref.path)
    return 2 * (int(config.num_hidden_layers) + 1) * int(config.hidden_size)


# --- one long sentence ------------------------------------------------------------------------

LONG_TASK = "udpos"  # the token-per-line layout (xtreme/udpos/<lang>/<split>-<lang>.tsv), UPOS


def long_sentence_data(settings: Settings, root: Path, n_words: int) -> dict[str, Any]:
    """Two token-per-line data dirs holding the same `n_words` real words: as the source
    split's own sentences (`normal`) and as one sentence (`long`, no blank line).

    The words are the task's source-language evaluation split (EWT test for `pos`), in file
    order, repeated from the start where the split has fewer words.
    """
    from probe.data.catalogue import UPOS
    from probe.data.sources.records import TaggedSentence
    from probe.data.tasks import get_task, read_split

    task = get_task(settings.task)
    lang = task.default_source
    split = read_split(task, Path(settings.data_dir), lang, task.eval_split)
    records = [r for r in split if isinstance(r, TaggedSentence)]
    sentences: list[list[tuple[str, str]]] = []
    total = 0
    while total < n_words:
        for record in records:
            take = min(len(record.words), n_words - total)
            if take <= 0:
                break
            tags = [t if t in UPOS else "X" for t in record.tags[:take]]
            sentences.append(list(zip(record.words[:take], tags, strict=True)))
            total += take
        if not total:
            raise RuntimeError(f"{settings.task}/{lang}/{task.eval_split} holds no words")
    lines = ["\n".join(f"{w}\t{t}" for w, t in sent) for sent in sentences]
    for shape, text in (("normal", "\n\n".join(lines)), ("long", "\n".join(lines))):
        path = root / shape / "xtreme" / LONG_TASK / "en" / "test-en.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return {"words": total, "sentences": len(sentences), "from": f"{settings.task}/{lang}/"
            f"{task.eval_split}"}  # fmt: skip


def long_sentence(settings: Settings) -> dict[str, Any]:
    """`probe extract` words/s on one sentence of `settings.long_sentence_words` words against
    the same words as ordinary sentences (the ratio is the target: >= 0.5).

    A sentence longer than the model's positions runs as overlapping windows (half a window
    apart by default, so every subword is computed about twice, each window at full length),
    so it cannot reach the ordinary sentences' speed; the target is within 2x of it. The
    two shapes alternate for `settings.repeats` rounds and each keeps its best round.
    """
    work = Path(settings.work_dir)
    root = work / "long-sentence"
    data = long_sentence_data(settings, root, settings.long_sentence_words)
    rounds: dict[str, list[dict[str, Any]]] = {"normal": [], "long": []}
    for i in range(settings.repeats):
        for shape, runs in rounds.items():
            shaped = replace(settings, data_dir=str(root / shape), task=LONG_TASK,
                             max_sentences=None)  # fmt: skip
            cache = work / f"long-sentence-cache-{shape}-{i}"
            runs.append(run_step("benchmarks.extraction:toolkit", shaped, cache=str(cache),
                                 langs=["en"], splits=["test"]))  # fmt: skip
            shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    best = {}
    for shape, runs in rounds.items():
        best[shape] = dict(max(runs, key=lambda r: r["words_per_s"]))
        best[shape]["rounds_words_per_s"] = [r["words_per_s"] for r in runs]
        if best[shape]["words"] != data["words"]:
            raise RuntimeError(f"{shape}: {best[shape]['words']} of {data['words']} words")
    ratio = best["long"]["words_per_s"] / best["normal"]["words_per_s"]
    return {**data, "normal": best["normal"], "long": best["long"],
            "long_sentence_vs_normal": round(ratio, 3)}  # fmt: skip


# --- GPU utilisation --------------------------------------------------------------------------


@contextmanager
def gpu_sampler(device: str, interval: float = 0.1) -> Iterator[Any]:
    """Sample GPU utilisation (%) while the block runs; yields a function giving the mean.

    On a CPU run the function returns None. Uses torch.cuda.utilization (pynvml) when it
    works, else `nvidia-smi`.
    """
    import torch

    if not device.startswith("cuda") and not (device == "auto" and torch.cuda.is_available()):
        yield lambda: None
        return
    index = torch.device(device if device.startswith("cuda") else "cuda").index or 0
    samples: list[float] = []
    stop = threading.Event()

    def read() -> float | None:
        try:
            return float(torch.cuda.utilization(index))
        except Exception:  # noqa: BLE001 - pynvml missing: ask nvidia-smi
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     "-i", str(index)], capture_output=True, text=True, timeout=5, check=True,
                )  # fmt: skip
                return float(out.stdout.strip().splitlines()[0])
            except Exception:  # noqa: BLE001 - no way to read it: report None
                return None

    def loop() -> None:
        while not stop.is_set():
            value = read()
            if value is not None:
                samples.append(value)
            stop.wait(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield lambda: round(statistics.mean(samples), 1) if samples else None
    finally:
        stop.set()
        thread.join()


# --- a large job ------------------------------------------------------------------------------


def large_job(settings: Settings, lang: str = "en", split: str = "train") -> dict[str, Any]:
    """`probe extract` on one large split against the bare forward of its own batches
    (target >= 0.9): alternating fresh processes, `repeats` rounds, medians."""
    work = Path(settings.work_dir)
    rounds: dict[str, list[dict[str, Any]]] = {"toolkit": [], "forward_only": []}
    for i in range(max(settings.repeats, 1)):
        cache = work / f"large-cache-{i}"
        rounds["toolkit"].append(
            run_step(
                "benchmarks.extraction:toolkit",
                settings,
                cache=str(cache),
                langs=[lang],
                splits=[split],
            )
        )
        shutil.rmtree(cache, ignore_errors=True)
        rounds["forward_only"].append(run_step("benchmarks.extraction:forward_only", settings,
                                               langs=[lang], splits=[split]))  # fmt: skip
    out: dict[str, Any] = {"split": f"{settings.task}/{lang}/{split}",
                           "words": rounds["toolkit"][0]["words"]}  # fmt: skip
    for way, runs in rounds.items():
        out[way] = {"words_per_s": statistics.median(r["words_per_s"] for r in runs),
                    "rounds_words_per_s": [r["words_per_s"] for r in runs]}  # fmt: skip
    out["toolkit_vs_forward"] = round(
        out["toolkit"]["words_per_s"] / out["forward_only"]["words_per_s"], 3
    )
    return out


# --- everything -------------------------------------------------------------------------------


def measure(settings: Settings) -> dict[str, Any]:
    """All extraction measurements of one run, and the ratios the targets are stated in.

    The three ways run in turn, `settings.repeats` rounds, and each keeps its best round:
    on a shared machine another process can take a core away from any single run, and the
    best of a few is the closest to what the method itself costs (as `timeit` does).
    """
    work = Path(settings.work_dir)
    rounds: dict[str, list[dict[str, Any]]] = {"toolkit": [], "naive": [], "forward_only": []}
    stats: dict[str, Any] = {}
    for i in range(settings.repeats):
        cache = work / f"extract-cache-{i}"
        a = run_step("benchmarks.extraction:toolkit", settings, cache=str(cache))
        rounds["toolkit"].append(a)
        if i == 0:  # the cache is the same every round; reading needs no fresh process
            stats = cache_stats(settings, cache=str(cache), key=a["key"])
        shutil.rmtree(cache, ignore_errors=True)
        rounds["naive"].append(run_step("benchmarks.extraction:naive", settings,
                                        out=str(work / "naive")))  # fmt: skip
        rounds["forward_only"].append(run_step("benchmarks.extraction:forward_only", settings))
    best = {}
    for way, runs in rounds.items():
        best[way] = dict(max(runs, key=lambda r: r["words_per_s"]))
        best[way]["rounds_words_per_s"] = [r["words_per_s"] for r in runs]
    a, b, c = best["toolkit"], best["naive"], best["forward_only"]
    long = long_sentence(settings)
    if not a["words"] == b["words"] == c["words"]:
        raise RuntimeError(f"the three ways saw different words: {a['words']}, {b['words']}, "
                           f"{c['words']}")  # fmt: skip
    return {
        **best,
        "ratio_toolkit_to_naive": round(a["words_per_s"] / b["words_per_s"], 2),
        "ratio_toolkit_to_forward": round(a["words_per_s"] / c["words_per_s"], 3),
        "cache": stats,
        "memory": memory(settings),
        "long_sentence": long,
        "long_sentence_vs_normal": long["long_sentence_vs_normal"],
    }
