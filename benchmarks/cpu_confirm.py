"""The CPU confirmation of the recipe search (issue 21, when no GPU is lent): the rule's chosen option
at full length, every seed x both variants, as a resumable queue, then packed the way the GPU call
packs it so that ``python -m pipeline paper import`` makes it a bundle.

    python -m benchmarks.cpu_queue confirm [--option NAME] [--seeds 0 1 2] [--precision fp32] [--save-branch cpu-runs]
    python -m benchmarks.cpu_queue confirm-pack --out build/cpu/confirm-out [--option NAME]
    (either with --search-csv results/search/cpu_search_options.csv: the shipped search table,
    where build/cpu/search no longer holds the runs)
    python -m pipeline paper import build/cpu/confirm-out --bundle results/<recipe> --commit <sha>

Without ``--option`` the confirmation takes the rule's choice over the finished search
(:func:`search_state`), and refuses while the search is unfinished (the choice is provisional);
``--option`` names an option of the search table explicitly (``<candidate>`` or
``<candidate>+es``). The runs go seed by seed (both variants of seed 0 first), so a queue cut by a
session's end leaves whole seeds; each ``train`` resumes from its epoch checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.recipe_gpu import VARIANTS, _numeric, _pack_logs, _pack_runs, confirm_overlay, load_search
from pipeline.profile import _cpu_name

#: Where the confirmation projects live, under the queue's build folder: confirm/<recipe>/.
QUEUE = "confirm"


def recipe_name(option: str) -> str:
    """A file-name-safe recipe name for an option: ``b32_none_sgd+es`` -> ``b32_none_sgd_es``."""
    return option.replace("+es", "_es")


def search_state(root: Path) -> tuple[pd.DataFrame, list[pd.DataFrame], object | None, str]:
    """The search's options of every balexnet32 candidate under ``root`` (build/cpu/search), their
    histories, the rule's choice among the finished ones (None if none finished) and its status
    (``final`` when every candidate finished, else ``PROVISIONAL: k of n candidates finished``)."""
    from benchmarks.cpu_queue import search_jobs
    from benchmarks.paper_gpu import history_rows
    from eeoffload.recipe_search import choose_recipe, run_options

    search = load_search()
    rule = search["rule"]
    names = [name for name, _, _ in search_jobs("bf16")]
    histories, options = [], []
    for name in names:
        hist = _numeric(pd.DataFrame(history_rows(root / name, "one_branch"))) if (root / name).is_dir() \
            else pd.DataFrame()
        if not hist.empty:
            histories.append(hist.assign(candidate=name))
        options += run_options(name, hist, int(rule["patience"]), int(rule["epochs"]),
                               search["candidates"][name].get("deviation", ""))
    table = pd.DataFrame(options)
    n_done = int(table.loc[~table["option"].str.endswith("+es"), "finished"].sum())
    status = "final" if n_done == len(names) else f"PROVISIONAL: {n_done} of {len(names)} candidates finished"
    try:
        choice = choose_recipe(table, float(rule["min_side_temperature"]), float(rule["target_accuracy"]))
    except ValueError:
        choice = None
    return table, histories, choice, status


def shipped_search_state(options_csv: Path) -> tuple[pd.DataFrame, list[pd.DataFrame], object | None, str]:
    """:func:`search_state` from a shipped search table (``search-table --out``'s
    cpu_search_options.csv, with cpu_search_histories.csv beside it when there), for a machine whose
    build/cpu/search no longer holds the runs. The status says which table it is."""
    from eeoffload.recipe_search import choose_recipe

    if not options_csv.is_file():
        raise ValueError(f"--search-csv {options_csv}: no such file (a search-table output: "
                         "results/search/cpu_search_options.csv)")
    table = pd.read_csv(options_csv)
    histories_csv = options_csv.with_name("cpu_search_histories.csv")
    histories = [pd.read_csv(histories_csv)] if histories_csv.is_file() else []
    rule = load_search()["rule"]
    base = table[~table["option"].str.endswith("+es")]
    n_done, n_all = int(base["finished"].sum()), len(base)
    status = (f"shipped table {options_csv}: " + ("final" if n_done == n_all
                                                    else f"PROVISIONAL: {n_done} of {n_all} candidates finished"))
    try:
        choice = choose_recipe(table, float(rule["min_side_temperature"]), float(rule["target_accuracy"]))
    except ValueError:
        choice = None
    return table, histories, choice, status


def chosen_option(search_root: Path, option: str | None, state: tuple | None = None) -> tuple[str, str, bool, str]:
    """(option, candidate, early stopping, reason): ``option`` from the table, or the rule's final
    choice; ValueError with one line when there is none to take. ``state``: :func:`search_state`'s
    result if the caller has it (else read here)."""
    table, _, choice, status = state or search_state(search_root)
    if option is None:
        if choice is None:
            raise ValueError(f"{search_root}: no search candidate finished: nothing to confirm")
        if not status.endswith("final"):
            raise ValueError(f"the search's choice is {status} ({choice.option}); finish the search "
                             "(python -m benchmarks.cpu_queue search) or name an option with --option")
        return choice.option, choice.candidate, choice.early_stopping, choice.reason
    rows = table[table["option"] == option]
    if rows.empty:
        raise ValueError(f"--option {option!r} is not an option of the search; allowed: "
                         f"{', '.join(table['option'])}")
    row = rows.iloc[0]
    return option, str(row["candidate"]), option.endswith("+es"), f"named with --option (search {status})"


def confirm_jobs(search_root: Path, option: str | None, seeds: list[int], precision: str,
                 state: tuple | None = None) -> tuple[str, list[tuple[str, dict, list[str]]]]:
    """The recipe name and the one job of the confirmation: its project's overlay and its commands
    (seed-major train + logits, then each variant's latency profile). ``state``: the search's
    state when not read from ``search_root`` (:func:`shipped_search_state`)."""
    option, candidate, early_stopping, _ = chosen_option(search_root, option, state)
    search = load_search()
    over = confirm_overlay(search, candidate, early_stopping, seeds, int(search["rule"]["epochs"]),
                           {"train": {"precision": precision, "num_threads": 0}})
    cmds = [f"{stage} {v} {s}" for s in seeds for v in VARIANTS for stage in ("train", "logits")]
    cmds += [f"profile {v}" for v in VARIANTS]
    return recipe_name(option), [(recipe_name(option), over, cmds)]


def pack_confirmation(build: Path, out: Path, option: str | None, state: tuple | None = None,
                      seeds: list[int] | None = None) -> Path:
    """``out`` as the GPU call leaves its $OUT: runs_<variant>.tar, chosen.yaml, search.tgz and
    recipe_cpu.log (the machine), for ``python -m pipeline paper import``. ``state``: as in
    :func:`confirm_jobs`; ``seeds``: these of the project's seeds only (default all; the others
    are added to the bundle later with ``paper import --add``)."""
    search_root = build / "search"
    state = state or search_state(search_root)
    option, candidate, early_stopping, reason = chosen_option(search_root, option, state)
    project = build / QUEUE / recipe_name(option)
    if not (project / "params.yaml").is_file():
        raise ValueError(f"{project}: no confirmation project (run: python -m benchmarks.cpu_queue confirm)")
    params = yaml.safe_load((project / "params.yaml").read_text())
    planned = [int(s) for s in params["train"]["seeds"]]
    if seeds is not None and not set(seeds) <= set(planned):
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: the confirmation project has seeds "
                         f"{' '.join(map(str, planned))} only")
    seeds = planned if seeds is None else [s for s in planned if s in seeds]
    if out.exists() and any(out.iterdir()) and not (out / "recipe_cpu.log").is_file():
        raise ValueError(f"--out {out}: a non-empty folder that is no earlier confirm-pack output; "
                         "name an empty or new folder")
    staged = out.with_name(f".{out.name}.new")  # written whole beside out, then swapped in
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for v in VARIANTS:
        _pack_runs(staged / f"runs_{v}.tar", project, v, seeds)
    recipe = {k: v for k, v in params.items() if k in ("model", "variants", "train")}
    (staged / "chosen.yaml").write_text(f"# chosen by the rule of configs/recipes/search.yaml: {option}\n# {reason}\n"
                                        + yaml.safe_dump(recipe, sort_keys=False))
    table, histories, _, status = state
    logs = staged / "logs"
    logs.mkdir()
    if histories:
        pd.concat(histories, ignore_index=True).to_csv(logs / "search_histories.csv", index=False)
    table.to_csv(logs / "search_options.csv", index=False)
    (logs / "choice.json").write_text(json.dumps({"option": option, "candidate": candidate,
                                                  "early_stopping": early_stopping, "reason": reason,
                                                  "search": status}, indent=2) + "\n")
    _pack_logs(staged, logs, "search.tgz")
    (staged / "recipe_cpu.log").write_text(f"{_cpu_name()}, {os.cpu_count()} cores (CPU confirmation, benchmarks/cpu_confirm.py)\n"
                                           f"{platform.python_version()} {platform.platform()}\n"
                                           f"[cpu_confirm {time.strftime('%H:%M:%S')}] done after packing {option}\n")
    if out.exists():
        shutil.rmtree(out)
    staged.rename(out)
    return out
