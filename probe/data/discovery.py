"""Which languages (and splits) a task has in a data directory, or on the hub.

Languages of a local run come from the files (`discover_languages`): a task's `languages` is
its known catalogue (documentation, family lookup, the hub's list), never a gate on what a
data directory holds. `--langs all` is every language found with the evaluation split; codes
given beside `all` (`all,th`) are added to it, each checked like a code given alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from probe.data.tasks import Task
from probe.data.ud import parse_picks, ud_index
from probe.errors import ProbeError


def discover_languages(
    task: Task, data_dir: Path, treebanks: Sequence[str] = ()
) -> dict[str, frozenset[str]]:
    """{language: its splits} for every language whose files follow the task's layout under
    data_dir (UD tasks: the languages with an admitted treebank, `--treebank` picks first)."""
    if task.treebanks is not None:
        index = ud_index(data_dir)
        found = task.treebanks.languages(index)
        for lang, names in parse_picks(treebanks).items():
            chosen = task.treebanks.select(index, lang, {lang: names})
            found[lang] = frozenset(s for tb in chosen for s in tb.files)
        return dict(sorted(found.items()))
    data_dir = task.where(data_dir) or data_dir
    candidates = sorted({lang for pattern in task.patterns for lang in pattern.found(data_dir)})
    out = {}
    for lang in candidates:
        have = frozenset(
            s for s in task.known_splits
            if all(p.is_file() for p in task.files(data_dir, lang, s))
        )  # fmt: skip
        if have:
            out[lang] = have
    return out


def languages_for(
    task: Task, data_dir: Path | None, treebanks: Sequence[str] = ()
) -> tuple[str, ...]:
    """`--langs all`: the catalogue for the hub (data_dir None), else every language found
    locally with the task's evaluation split."""
    data_dir = task.where(data_dir)
    if data_dir is None:
        from probe.data.hub_tasks import hub_languages

        return hub_languages(task)
    found = discover_languages(task, data_dir, treebanks)
    return tuple(lang for lang, splits in found.items() if task.eval_split in splits)


def check_language(
    task: Task, lang: str, data_dir: Path | None, treebanks: Sequence[str] = ()
) -> None:
    """A language is usable if its files exist locally (or, for the hub, it is catalogued);
    otherwise one line that lists what was found."""
    data_dir = task.where(data_dir)
    if data_dir is None:
        from probe.data.hub_tasks import hub_languages

        hub = hub_languages(task, named=True)
        if lang not in hub:
            raise ProbeError(
                f"task {task.name!r} has no language {lang!r} on the hub; its languages: "
                f"{', '.join(hub)}"
            )
        return
    found = discover_languages(task, data_dir, treebanks)
    if lang not in found and task.treebanks is not None and ud_index(data_dir).of_language(lang):
        task.treebanks.select(ud_index(data_dir), lang, {})  # why none of them is read
    if lang not in found:
        where = (
            task.treebanks.describe()
            if task.treebanks
            else " or ".join(p.text for p in task.patterns)
        )
        raise ProbeError(
            f"task {task.name!r} has no files for language {lang!r} under {data_dir} "
            f"(layout {where}); found: {', '.join(found) or 'none'}"
        )


def expand_languages(
    task: Task, langs: Sequence[str], data_dir: Path | None, treebanks: Sequence[str] = ()
) -> tuple[str, ...]:
    """Resolve comma lists and `all` against the local files (or the hub's catalogue);
    `all` with codes beside it is the union, in that order (`th,all`: th first)."""
    wanted: list[str] = []
    for item in langs:
        wanted.extend(x.strip() for x in item.split(",") if x.strip())
    picked = parse_picks(treebanks)
    chosen_list: list[str] = []
    for lang in wanted:
        if lang == "all":
            found = languages_for(task, data_dir, treebanks)
            if not found:
                raise ProbeError(f"no data for task {task.name!r} under {data_dir}")
            chosen_list.extend(found)
        else:
            check_language(task, lang, data_dir, treebanks)
            chosen_list.append(lang)
    chosen = tuple(dict.fromkeys(chosen_list))
    stray = sorted(set(picked) - set(chosen))
    if stray:
        raise ProbeError(
            f"--treebank picks {', '.join(stray)}, which the languages of this run "
            f"({', '.join(chosen)}) do not include"
        )
    return chosen
