"""The accuracy-regime study in one call on a lent GPU: the recipe search, the rule, the chosen
recipe's seeds, as concurrent processes on one GPU (configs/recipes/search.yaml; issue 21/23).

    python -m benchmarks.recipe_gpu --out DIR [--deadline-s 540] [--tiny]

1. ``prepare`` once (stages validate, prepare of the base project), the prepared splits copied
   into every project (plain copies for ``python -m pipeline plain-run``: the GPU machine has no DVC).
2. Search: every candidate of search.yaml trains variant one_branch, seed 0, all concurrently
   (``python -m pipeline train``, so each run's history is the stage's own CSV).
3. The rule (:func:`eeoffload.recipe_search.choose_recipe`), with each candidate's confirmation
   cost estimated from its own measured seconds per epoch: a candidate whose seeds would not end
   before the deadline is not eligible.
4. Confirmation: the chosen option, ``rule.confirm_seeds`` seeds x both variants, train + logits
   as concurrent chains, then the latency profile of each variant (after the trainings: a GPU busy
   training would inflate the cloud's times).
5. What comes back, in DIR (at most 8 files of 16 MiB): ``search.tgz`` (every candidate's history,
   the options table, the choice, the logs), ``runs_<variant>.tar`` (one ``seed<s>_<variant>.tgz``
   per run, as ``python -m pipeline paper import`` reads them), ``chosen.yaml`` (the chosen recipe as an
   overlay). Runs cut by the deadline keep their checkpoint in their tarball.

``--tiny`` is the CPU dry run (tests/test_recipe_gpu.py): tiny splits, 2 epochs, 2 seeds, the whole
path including the import back into a bundle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks import ROOT
from benchmarks.paper_gpu import history_rows, pack, progress, start, stop
from eeoffload.recipe_search import choose_recipe, run_options
from pipeline.core import registry as R
from pipeline.core.overlay import merge
from pipeline.tools.scratch import make_scratch_project, scratch_env

SEARCH_FILE = ROOT / "configs" / "recipes" / "search.yaml"
VARIANTS = ("one_branch", "two_branch")
SEARCH_SHARE = 0.5  # the search's share of the call; the confirmation gets the rest
END_RESERVE_S = 45.0
FILL_MIN_S = 100.0  # time left after the confirmation that starts the precision study  # logits, profile and packing after the confirmation's trainings
MAX_FILE = 15.5 * 2**20  # what comes back: 16 MiB a file
TINY = {"data": {"n_train": 256, "n_val": 96, "n_test": 192}, "latency": {"warmup": 1, "repeats": 3},
        "evaluate": {"batch_size": 64, "resamples": 5},
        "train": {"snapshot_epochs": [1, 2]}}


def log(text: str) -> None:
    print(f"[recipe_gpu {time.strftime('%H:%M:%S')}] {text}", flush=True)


def load_search(path: Path = SEARCH_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def candidate_overlay(search: dict, name: str, epochs: int, extra: dict) -> dict:
    """The params overlay of one candidate: search.yaml's base, the candidate, ``epochs`` epochs."""
    cand = {k: v for k, v in search["candidates"][name].items() if k != "deviation"}
    return merge(merge(merge(search["base"], cand), {"train": {"joint_epochs": epochs}}), extra)


def confirm_overlay(search: dict, name: str, early_stopping: bool, seeds: list[int], epochs: int,
                    extra: dict) -> dict:
    over = candidate_overlay(search, name, epochs, {})
    over = merge(over, {"train": {"seeds": seeds,
                                  "early_stopping_patience": search["rule"]["patience"] if early_stopping else 0}})
    return merge(over, extra)


def _numeric(table: pd.DataFrame) -> pd.DataFrame:
    """A history read as strings (CSV or checkpoint) with its numeric columns as numbers."""
    for column in table.columns:
        try:
            table[column] = pd.to_numeric(table[column])
        except (ValueError, TypeError):
            pass
    return table


def seconds_per_epoch(logfile: Path) -> float | None:
    st = progress(logfile)
    return st[2] if st else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deadline-s", type=float, default=540.0)
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: tiny splits, 2 epochs, 2 seeds")
    ap.add_argument("--search-file", type=Path, default=SEARCH_FILE)
    ap.add_argument("--only", nargs="*", default=None, help="these candidates only (tests)")
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "recipes")
    ap.add_argument("--no-fill", action="store_true", help="no precision study in the time left at the end")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.deadline_s
    search = load_search(args.search_file)
    rule = search["rule"]
    epochs = 2 if args.tiny else int(rule["epochs"])
    seeds = list(range(2 if args.tiny else int(rule["confirm_seeds"])))
    extra = TINY if args.tiny else {}
    names = [n for n in search["candidates"] if args.only is None or n in args.only]
    out, logs = args.out.resolve(), (args.out / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    build = args.build.resolve()

    # 1. prepare once
    base = make_scratch_project(build / "base", merge(merge(search["base"], {"train": {"seeds": [0]}}), extra),
                                vcs=False)
    rc = subprocess.run([sys.executable, "-m", "pipeline", "plain-run", "--only", "validate", "prepare"], cwd=base,
                        env=scratch_env(base), stdout=open(logs / "prepare.log", "wb"), stderr=subprocess.STDOUT).returncode
    prepared = base / "data" / "prepared"
    if rc != 0 or not (prepared / "meta.json").is_file():
        log(f"prepare failed (exit {rc}): see logs/prepare.log")
        _pack_logs(out, logs)
        return 1
    log(f"prepared data ready after {time.monotonic() - t0:.0f} s")

    # 2. search
    procs: dict[str, subprocess.Popen[bytes]] = {}
    projects: dict[str, Path] = {}
    for name in names:
        project = make_scratch_project(build / "search" / name, merge(candidate_overlay(search, name, epochs, extra),
                                                                      {"train": {"seeds": [0]}}), vcs=False)
        shutil.copytree(prepared, project / "data" / "prepared")
        projects[name] = project
        procs[name] = start([sys.executable, "-m", "pipeline", "train", "one_branch", "0"], project,
                            logs / f"search_{name}.log")
    n_search = len(procs)
    log(f"search: {n_search} candidates x {epochs} epochs running")
    search_deadline = t0 + SEARCH_SHARE * args.deadline_s
    last = 0.0
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < search_deadline:
        if time.monotonic() - last > 30:
            last = time.monotonic()
            log("search " + ", ".join(f"{n} {st[0]}/{st[1]} ({st[2]:.1f} s/ep)" if (st := progress(
                logs / f"search_{n}.log")) else f"{n} -" for n in names))
        time.sleep(2)
    speeds = {n: seconds_per_epoch(logs / f"search_{n}.log") for n in names}
    for name, p in procs.items():
        if p.poll() is None:
            log(f"search deadline: stopping {name}")
        stop(p)
    histories, options = [], []
    for name in names:
        rows = history_rows(projects[name], "one_branch")
        hist = _numeric(pd.DataFrame(rows))
        if not hist.empty:
            histories.append(hist.assign(candidate=name))
        options += run_options(name, hist, int(rule["patience"]), epochs,
                               search["candidates"][name].get("deviation", ""))
    table = pd.DataFrame(options)
    # confirmation cost: its runs share the GPU as the search's did (GPU-bound sharing: time per
    # epoch scales with the number of concurrent runs), all epochs, plus the end reserve
    left = deadline - time.monotonic() - END_RESERVE_S
    n_confirm = len(seeds) * len(VARIANTS)
    estimate = {n: (s * epochs * n_confirm / n_search if s else float("inf")) for n, s in speeds.items()}
    feasible = {n: estimate[n] <= left for n in names}
    table["confirm_estimate_s"] = [estimate.get(c, float("inf")) for c in table["candidate"]]
    table["feasible"] = [feasible.get(c, False) for c in table["candidate"]]
    try:
        choice = choose_recipe(table, float(rule["min_side_temperature"]), float(rule["target_accuracy"]), feasible)
    except ValueError as e:
        log(f"no choice: {e}")
        _pack_search(out, logs, histories, table, None)
        return 1
    log(f"chosen: {choice.option}: {choice.reason}; {left:.0f} s left for the confirmation "
        f"(estimate {estimate[choice.candidate]:.0f} s)")
    print(table.drop(columns=[c for c in table.columns if c.startswith("val_") and c != "val_acc_final"])
          .to_string(index=False), flush=True)

    # 4. confirmation
    over = confirm_overlay(search, choice.candidate, choice.early_stopping, seeds, epochs, extra)
    (out / "chosen.yaml").write_text(f"# chosen by the rule of configs/recipes/search.yaml: {choice.option}\n"
                                     f"# {choice.reason}\n" + yaml.safe_dump(
                                         {k: v for k, v in over.items() if k != "data" and k != "latency"},
                                         sort_keys=False))
    project = make_scratch_project(build / "confirm", over, vcs=False)
    shutil.copytree(prepared, project / "data" / "prepared")
    chains: dict[str, subprocess.Popen[bytes]] = {}
    for s in seeds:
        for v in VARIANTS:
            chain = f"{sys.executable} -m pipeline train {v} {s} && {sys.executable} -m pipeline logits {v} {s}"
            chains[f"seed{s}_{v}"] = start(["sh", "-c", chain], project, logs / f"seed{s}_{v}.log")
    log(f"confirmation: {len(chains)} runs of {choice.option}")
    last = 0.0
    while any(p.poll() is None for p in chains.values()) and time.monotonic() < deadline - 25:
        if time.monotonic() - last > 30:
            last = time.monotonic()
            log("confirm " + ", ".join(f"{k} {st[0]}/{st[1]}" if (st := progress(logs / f"{k}.log")) else f"{k} -"
                                       for k in chains))
        time.sleep(2)
    for k, p in chains.items():
        stop(p)
        log(f"{k}: exit {p.returncode}")
    profiles = {}
    for v in VARIANTS:
        if time.monotonic() < deadline - 15:
            profiles[v] = subprocess.run([sys.executable, "-m", "pipeline", "profile", v], cwd=project,
                                         env=scratch_env(project), stdout=open(logs / f"profile_{v}.log", "wb"),
                                         stderr=subprocess.STDOUT, timeout=max(5.0, deadline - time.monotonic() - 10)
                                         ).returncode
    log(f"profiles: {profiles}")
    if not args.no_fill and deadline - time.monotonic() > FILL_MIN_S:
        _fill_precision_study(build, prepared, out, logs, deadline, extra, tiny=args.tiny)

    # 5. pack
    for v in VARIANTS:
        _pack_runs(out / f"runs_{v}.tar", project, v, seeds)
    _pack_search(out, logs, histories, table, choice)
    log(f"done after {time.monotonic() - t0:.0f} s; " + ", ".join(
        f"{f.name} {f.stat().st_size / 2**20:.1f} MiB" for f in sorted(out.iterdir()) if f.is_file()))
    ok = all(p.returncode == 0 for p in chains.values()) and all(rc == 0 for rc in profiles.values())
    return 0 if ok and len(profiles) == len(VARIANTS) else 1


def _fill_precision_study(build: Path, prepared: Path, out: Path, logs: Path, deadline: float, extra: dict,
                          tiny: bool) -> None:
    """With time left after the confirmation: the fp32/bf16 equivalence study of the training-precision
    issue (the quick recipe, configs/quick.yaml, variant one_branch, seeds 0-2 in fp32 and in bf16),
    train + logits; whatever finished before the deadline is packed into precision.tgz."""
    from pipeline.core.overlay import load_overlay

    quick = load_overlay(ROOT / "configs" / "quick.yaml")
    seeds = [0, 1] if tiny else [0, 1, 2]
    chains: dict[str, subprocess.Popen[bytes]] = {}
    projects = {}
    for precision in ("fp32", "bf16"):
        over = merge(merge(quick, {"train": {"seeds": seeds, "precision": precision, "num_threads": 1}}), extra)
        if tiny:
            over = merge(over, {"train": {"joint_epochs": 2, "snapshot_epochs": []}})
        project = make_scratch_project(build / f"precision_{precision}", over, vcs=False)
        shutil.copytree(prepared, project / "data" / "prepared")
        projects[precision] = project
        for s in seeds:
            chain = (f"{sys.executable} -m pipeline train one_branch {s} && "
                     f"{sys.executable} -m pipeline logits one_branch {s}")
            chains[f"{precision}_seed{s}"] = start(["sh", "-c", chain], project, logs / f"precision_{precision}_seed{s}.log")
    log(f"precision study: {len(chains)} runs (quick recipe, one_branch, fp32 and bf16)")
    while any(p.poll() is None for p in chains.values()) and time.monotonic() < deadline - 12:
        time.sleep(2)
    for k, p in chains.items():
        stop(p)
        log(f"precision {k}: exit {p.returncode}")
    with tarfile.open(out / "precision.tgz", "w:gz") as tar:
        for precision, project in projects.items():
            for rel in ["params.yaml", "data/logits", "reports/training", "reports/timings"]:
                if (project / rel).exists():
                    tar.add(project / rel, arcname=f"{precision}/{rel}")


def _run_members(project: Path, v: str, s: int, first: int, with_snapshots: bool) -> list[str]:
    ckpt = R.checkpoint_path(v, s)
    members = ["params.yaml", str(R.training_csv(v, s)), str(R.timing_path(R.stage_instance("train", v, s))),
               str(R.timing_path(R.stage_instance("logits", v, s))), str(R.logits_path(v, s)), str(ckpt)]
    if s == first:
        members += [str(R.profile_path(v)), str(R.profile_layers_path(v))]
        if with_snapshots:
            members += [str(R.snapshots_dir(v, s)), str(ckpt.with_name(ckpt.stem + "_snapshots"))]
        model = project / R.model_path(v, s)
        if model.is_file() and model.stat().st_size < 8 * 2**20:  # the weights of seed 0, if small
            members.append(str(R.model_path(v, s)))
    return members


def _pack_runs(tar_path: Path, project: Path, v: str, seeds: list[int]) -> None:
    """One tar of ``seed<s>_<v>.tgz`` members; seed 0's snapshots dropped if it would not come back."""
    for with_snapshots in (True, False):
        with tarfile.open(tar_path, "w") as outer:
            for s in seeds:
                tmp = tar_path.with_suffix(f".seed{s}.tgz")
                pack(tmp, project, _run_members(project, v, s, seeds[0], with_snapshots))
                outer.add(tmp, arcname=f"seed{s}_{v}.tgz")
                tmp.unlink()
        if tar_path.stat().st_size <= MAX_FILE:
            return
        log(f"{tar_path.name}: {tar_path.stat().st_size / 2**20:.1f} MiB with snapshots: packed without them")


def _pack_search(out: Path, logs: Path, histories: list[pd.DataFrame], table: pd.DataFrame, choice) -> None:
    if histories:
        pd.concat(histories, ignore_index=True).to_csv(logs / "search_histories.csv", index=False)
    table.to_csv(logs / "search_options.csv", index=False)
    if choice is not None:
        (logs / "choice.json").write_text(json.dumps(choice.__dict__, indent=2) + "\n")
    _pack_logs(out, logs, "search.tgz")


def _pack_logs(out: Path, logs: Path, name: str = "logs.tgz") -> None:
    with tarfile.open(out / name, "w:gz") as tar:
        tar.add(logs, arcname="logs")
    shutil.rmtree(logs)


if __name__ == "__main__":
    raise SystemExit(main())
