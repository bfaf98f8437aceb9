"""Start-up of `probe extract`: from process start to the first batch the encoder runs.

Each round spawns `python -m benchmarks.startup extract ...`, which runs the real `probe`
command line with two probes added: the time `load_encoder` takes, and the wall-clock time
of the first `Encoder.submit` (printed, then the process exits without extracting the rest).
Start-up is that time minus the spawn time in the parent. The child also reports which of
the heavy libraries extraction does not need were imported by then, and separate fresh
processes time the imports alone (`python -c "import torch"` and so on), so the report says
what remains of start-up and why.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Settings

MARKER = "STARTUP-RESULT "
# Libraries `probe extract` has no use for: none of them may be loaded by its first batch.
NOT_NEEDED = ("matplotlib", "datasets", "sklearn", "seqeval", "pandas", "lang2vec", "dask", "ray")
# What start-up is made of, each timed in a fresh interpreter (cumulative, in this order).
IMPORT_STEPS = {
    "python": "pass",
    "torch": "import torch",
    "transformers": "import torch, transformers",
    "transformers modeling (AutoModel)": "import torch, transformers; "
    "from transformers import AutoModel; from transformers.models.bert import modeling_bert",
    "probe.extract": "import torch, transformers; from transformers.models.bert import "
    "modeling_bert; import probe.extract.run",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def first_batch(settings: Settings, lang: str, split: str) -> dict[str, Any]:
    """One fresh `probe extract` process, timed from spawn to its first batch."""
    cache = Path(settings.work_dir) / "startup-cache"
    command = [sys.executable, "-m", "benchmarks.startup", "extract", "--model", settings.model,
               "--task", settings.task, "--langs", lang, "--splits", split,
               "--data-dir", settings.data_dir, "--cache-dir", str(cache),
               "--device", settings.device, "--overwrite", "always"]  # fmt: skip
    spawned = time.time()
    proc = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                          check=False)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"startup child failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")  # fmt: skip
    child = json.loads(lines[-1][len(MARKER) :])
    return {
        "startup_s": round(child["first_batch"] - spawned, 3),
        "interpreter_s": round(child["started"] - spawned, 3),
        "load_encoder_s": child["load_encoder_s"],
        "not_needed_loaded": child["not_needed_loaded"],
        "modules": child["modules"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def import_times(repeats: int) -> dict[str, float]:
    """Median wall time of a fresh interpreter running each of IMPORT_STEPS."""
    out = {}
    for name, code in IMPORT_STEPS.items():
        times = []
        for _ in range(max(repeats, 1)):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), check=True)
            times.append(time.perf_counter() - began)
        out[name] = round(statistics.median(times), 3)
    return out


def measure(settings: Settings, lang: str = "de", split: str = "test") -> dict[str, Any]:
    """Start-up of `probe extract` on one split (median of `repeats` rounds) and its parts."""
    rounds = [first_batch(settings, lang, split) for _ in range(max(settings.repeats, 1))]
    return {
        "split": f"{settings.task}/{lang}/{split}",
        "startup_s": statistics.median(r["startup_s"] for r in rounds),
        "rounds": rounds,
        # five more fresh interpreters each: skipped by inline runs (the smoke test)
        "imports_s": {} if settings.inline else import_times(settings.repeats),
        "not_needed_loaded": sorted({m for r in rounds for m in r["not_needed_loaded"]}),
    }


def _child() -> None:
    """`python -m benchmarks.startup <probe args>`: the CLI, stopped at its first batch."""
    started = time.time()
    import probe.extract.encoder as encoder_module
    import probe.extract.run as run_module

    load = run_module.load_encoder
    timings: dict[str, float] = {}

    def timed_load(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return load(*args, **kwargs)
        finally:
            timings["load_encoder_s"] = round(time.perf_counter() - began, 3)

    def first(self: Any, batch: Any, out: Any) -> None:
        now = time.time()
        loaded = [m for m in NOT_NEEDED if m in sys.modules]
        print(MARKER + json.dumps({"started": started, "first_batch": now, **timings,
                                   "not_needed_loaded": loaded,
                                   "modules": len(sys.modules)}), flush=True)  # fmt: skip
        os._exit(0)  # the rest of the extraction is not start-up

    run_module.load_encoder = timed_load  # type: ignore[assignment]
    encoder_module.Encoder.submit = first  # type: ignore[method-assign]
    from probe.cli import main

    sys.argv = ["probe", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _child()
