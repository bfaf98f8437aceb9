"""`probe intermediate --finetune`: intermediate tasks with the encoder trained end to end.

The same comparison as `probe.experiments.intermediate` ("none", each task, growing sets),
but every stage fine-tunes the encoder together with the shared head body and that task's
classifier, reusing `probe finetune`'s tokenisation, training loop with best-epoch selection
on source dev (`probe.train.finetune`) and scoring. The encoder and the body carry over from
stage to stage; classifiers do not. Each configuration starts again from the pretrained
encoder; stages shared by several configurations (A in A and A>B) are trained once and
their encoder/body weights reused, which changes no number (a stage depends only on what
came before it and the seed).

One job per configuration (minutes each, saved as it finishes: a rerun after a crash trains
only the rest). The jobs share the encoder loaded once in this process, so they run here,
one after another (`in_process`): no --workers or --cluster.

Gains over "none" come with a paired bootstrap interval over the target's evaluation
sentences (`probe.experiments.intermediate_gains`); the run trains one seed (each seed would
fine-tune every configuration again), so the interval has no seed part and no sd is given.
Every configuration's target stage fine-tunes with the same settings as "none"'s (one
`FinetuneConfig`: epochs, steps, learning rates, warmup, precision) and the same head
architecture; the summary says so, or which configurations differ.

Limits: word-level tasks only (fine-tuning on sentence pairs is not implemented in
`probe finetune` either), and the sequential schedule only (mixed batches would need a
multi-task fine-tuning loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from probe._version import __version__
from probe.analysis.bootstrap import LEVEL, N_BOOT, PairedBootstrap
from probe.data.tasks import Task, default_data_dir, get_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment
from probe.experiments.finetune import FinetuneConfig
from probe.experiments.intermediate_gains import (
    configuration_gains,
    recipe_differences,
    recipe_note,
)
from probe.experiments.intermediate_plan import Configuration
from probe.experiments.intermediate_seed import TARGET_PARAMETERS, TRAINING
from probe.experiments.intermediate_session import FinetuneSession, data_digest
from probe.experiments.leakage import SplitUse
from probe.extract import CacheHandle
from probe.results.gains import average_seeds
from probe.results.items import JobOutput
from probe.results.render.intermediate import render_intermediate
from probe.results.report import provenance
from probe.results.rows import Row
from probe.results.table import Table


@dataclass(frozen=True)
class IntermediateFinetuneConfig:
    """One `probe intermediate --finetune` run. `finetune` holds the target (its `task`), the
    model, data and every fine-tuning setting; `max_steps` and `max_train_sentences` apply to
    each stage and each task."""

    finetune: FinetuneConfig
    via: tuple[str, ...] = ("all",)
    sets: str | None = None
    body: str = "mlp"
    layer: int | None = None
    width: int = 256
    max_eval_sentences: int | None = None  # per target language


# FinetuneConfig fields that pick the data and model, recorded elsewhere in the settings.
_NOT_FINETUNING = ("model", "task", "langs", "source", "data_dir", "cache_root")
# FinetuneConfig fields that say how a stage fine-tunes: a configuration's recipe.
_RECIPE = ("epochs", "lr", "head_lr", "batch_size", "max_length", "warmup", "weight_decay",
           "precision", "max_steps", "reduction", "seeds")  # fmt: skip


class IntermediateFinetuneExperiment(Experiment[IntermediateFinetuneConfig, "_ConfigJob"]):
    """Every configuration fine-tuned in this process: one job per configuration."""

    name = "intermediate --finetune"
    levels = ("word",)
    needs_cache = False
    in_process = True
    volatile = ("device",)
    session: FinetuneSession
    recipe_line: str  # the summary's "one recipe per comparison" line, once the jobs ran

    def task_name(self) -> str:
        return self.config.finetune.task

    def source_lang(self, task: Task) -> str:
        return self.config.finetune.source or task.default_source

    def task_data_dir(self) -> Path | None:
        return default_data_dir(self.config.finetune.data_dir)

    def data_choice(self) -> tuple[str | None, tuple[str, ...]]:
        return self.config.finetune.train_split, self.config.finetune.treebanks

    def resolve(self) -> tuple[Task, str]:
        target = get_task(self.task_name())
        if target.level != "word":
            raise ProbeError(f"--finetune supports word-level targets only; {target.name!r} is not")
        return super().resolve()

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle | None:
        """No cache: load the encoder and tokenise every task's data, once for all jobs."""
        self.session = FinetuneSession(self.config, task, source, progress)
        return None

    def context(self, task: Task, source: str, cache: CacheHandle | None) -> Context:
        return Context(task, source, self.session.langs, None, self.session.n_layers)

    def split_use(self, ctx: Context) -> SplitUse:
        """The target's source train/dev and each intermediate task's, against the target's
        evaluation splits (the leakage guard reads them from the files)."""
        use = super().split_use(ctx)
        for via in map(get_task, self.session.via):
            use += SplitUse.zero_shot(via, (via.default_source,), ())
        return use

    def jobs(self, ctx: Context) -> list[tuple[str, _ConfigJob]]:
        return [(_job_name(c.name), _ConfigJob(self.session, c)) for c in self.session.plan]

    @staticmethod
    def job_function() -> Callable[[_ConfigJob], JobOutput]:
        return run_configuration

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """The seed's rows, their seed-mean copies (seed None, as a multi-seed run has),
        and every configuration's gain over "none" with its interval over sentences."""
        kept = [r for part in parts.values() for r in part if r.head != TRAINING]
        gains = configuration_gains(ctx.task, kept, ctx.items, ctx.source, PairedBootstrap())
        rows = kept + average_seeds([kept]) + gains
        return [replace(r, model=self.session.ref.slug) for r in rows]

    def job_settings(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """Whether every configuration's target stage fine-tuned as "none"'s did."""
        ft = self.config.finetune
        shared = {k: getattr(ft, k) for k in _RECIPE}
        shared.update(epochs=self.session.epochs, body=self.config.body)
        recipes: dict[str, dict[str, object]] = {}
        for part in parts.values():
            for r in part:
                if r.head == TRAINING and r.metric == TARGET_PARAMETERS:
                    recipes[r.config] = {**shared, "parameters": int(r.value)}
        differ = recipe_differences(recipes)
        steps = f" or {ft.max_steps} steps" if ft.max_steps else ""
        same = (f"{self.config.body} body, encoder lr {ft.lr:g}, head lr {ft.head_lr:g}, "
                f"{self.session.epochs} epochs{steps}, warmup {ft.warmup:g}, precision "
                f"{ft.precision}; only the encoder and body they start from differ")  # fmt: skip
        self.recipe_line = recipe_note(differ, same)
        return {"recipe_differences": differ,
                "intervals": {"method": "paired bootstrap over evaluation sentences",
                              "replicates": N_BOOT, "level": LEVEL}}  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg, s = self.config, self.session
        ft = cfg.finetune
        return {
            **{f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "finetune"},
            "command": "intermediate", "mode": "finetune", "target": ctx.task.name,
            "model": ft.model, "model_identity": s.ref.identity, "via": list(s.via),
            "via_sources": {t: get_task(t).default_source for t in s.via},
            "configurations": [c.name for c in s.plan], "schedules": ["sequential"],
            "layers": list(s.layers),
            "finetune": {k: v for k, v in asdict(ft).items() if k not in _NOT_FINETUNING},
            "epochs": s.epochs, "max_length": s.max_length,
            "train_sentences": {n: len(d.train) for n, d in s.tasks.items()},
            "dev_sentences": {n: len(d.dev) for n, d in s.tasks.items()},
            "device": str(s.device), "provenance": provenance(ft.seed),
        }  # fmt: skip

    def identity(self) -> Any:
        """Saved configurations are reused only for the same settings, toolkit version,
        model and encoded training data."""
        s = self.session
        digests = {n: data_digest(d) for n, d in sorted(s.tasks.items())}
        return {"config": self.config, "version": __version__, "model": s.ref.identity,
                "data": digests}  # fmt: skip

    def results_base(self, ctx: Context) -> Path:
        return self.options.results_dir / ctx.task.name / self.session.ref.slug

    def directory_name(self, ctx: Context) -> str:
        return f"intermediate-ft-{self.config.body}-{ctx.source}"

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        slug = self.session.ref.slug
        table = render_intermediate(ctx.task, rows, ctx.source, directory, slug)
        return f"{table}\n{self.recipe_line}"


@dataclass(frozen=True, eq=False)
class _ConfigJob:
    """One configuration. It holds the run's live session (the loaded encoder), so it runs
    only in this process (`IntermediateFinetuneExperiment.in_process`)."""

    session: FinetuneSession
    conf: Configuration


def run_configuration(job: _ConfigJob) -> JobOutput:
    return job.session.run(job.conf)


def _job_name(configuration: str) -> str:
    """A configuration's journal file name (`pos>panx` -> `pos-then-panx`)."""
    return configuration.replace(">", "-then-").replace("+", "-and-")
