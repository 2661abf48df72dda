"""Long CPU trainings as a resumable queue: the precision study and the 32x32 recipe search when no
GPU is lent (issues 21 and 23).

    python -m benchmarks.cpu_queue precision [--seeds 0 1 2]     # quick recipe, fp32 vs bf16, one_branch
    python -m benchmarks.cpu_queue search [--precision bf16]     # configs/recipes/search.yaml, balexnet32 only
    python -m benchmarks.cpu_queue precision-table               # the fp32/bf16 rule on the finished runs
    python -m benchmarks.cpu_queue search-table [--out results/search]   # the search's rule on the runs so far
    python -m benchmarks.cpu_queue confirm [--option NAME]      # the chosen option, 3 seeds x both variants
    python -m benchmarks.cpu_queue confirm-pack [--out DIR]      # packed for python -m pipeline paper import
    ... [--save-branch cpu-runs]                                 # also keep the progress in git

Each job is one project under build/cpu/<queue>/<job>/ (a plain copy: ``pipeline.tools.scratch`` without
DVC) trained by the stage commands, one job at a time with every core. A project that exists is
reused, so a second call resumes each job from its epoch checkpoint (the train stage's own
resume). With ``--save-branch`` the queue's histories and checkpoints are committed, every
``--save-every`` minutes, as the single commit of a side branch (amended, so the branch holds one
copy): the next session, maybe on another machine, checks that branch's build/cpu/ out and goes on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import ROOT
from benchmarks.recipe_gpu import candidate_overlay, load_search
from pipeline.core.overlay import load_overlay, merge
from pipeline.tools.scratch import make_scratch_project, scratch_env

BUILD = ROOT / "build" / "cpu"


def log(text: str) -> None:
    print(f"[cpu_queue {time.strftime('%H:%M:%S')}] {text}", flush=True)


def precision_jobs(seeds: list[int]) -> list[tuple[str, dict, list[str]]]:
    """The quick recipe (configs/quick.yaml), variant one_branch, each seed in fp32 then in bf16
    (alternating, so a cut queue stays balanced): train, then logits."""
    quick = load_overlay(ROOT / "configs" / "quick.yaml")
    jobs = []
    for s in seeds:
        for precision in ("fp32", "bf16"):
            over = merge(quick, {"train": {"seeds": [s], "precision": precision}})
            jobs.append((f"{precision}_seed{s}", over, [f"train one_branch {s}", f"logits one_branch {s}"]))
    return jobs


def search_jobs(precision: str) -> list[tuple[str, dict, list[str]]]:
    """The balexnet32 candidates of configs/recipes/search.yaml (one_branch, seed 0, the search's
    epochs), in ``precision``; the alexnet224 ones need a GPU."""
    search = load_search()
    epochs = int(search["rule"]["epochs"])
    jobs = []
    for name in search["candidates"]:
        over = candidate_overlay(search, name, epochs, {"train": {"seeds": [0], "precision": precision,
                                                                  "num_threads": 0}})
        if over.get("model", {}).get("arch", "balexnet32") != "balexnet32":
            continue
        jobs.append((name, over, ["train one_branch 0"]))
    return jobs


def save_progress(branch: str, queue: str, build: Path = BUILD) -> None:
    """Commit build/cpu/ (every queue's histories, checkpoints, logs, finished outputs; not the
    prepared data) as the one commit of ``branch``, made from a temporary index: main's index and work
    tree are left as they are."""
    env = dict(os.environ, GIT_INDEX_FILE=str(ROOT / ".git" / "cpu_queue.index"))
    git = lambda *a, **k: subprocess.run(["git", *a], cwd=ROOT, env=env, text=True, capture_output=True, **k)  # noqa: E731
    git("read-tree", "main")  # main's tree plus the progress: the branch checks out whole
    # every queue's progress (the branch holds one commit: a queue saved alone would drop the others')
    files = [str(p.relative_to(ROOT)) for p in sorted(build.rglob("*"))
             if p.is_file() and not any(part.endswith("prepared") or part == "__pycache__" for part in p.parts)
             and len(p.parts) > len(build.parts) + 2
             and p.parts[len(build.parts) + 2] in ("data", "reports", "params.yaml", "queue.log")]
    if not files:
        return
    git("update-index", "--add", "--", *files)
    tree = git("write-tree").stdout.strip()
    parent = git("rev-parse", "-q", "--verify", "main").stdout.strip()
    commit = git("commit-tree", tree, "-p", parent, "-m", f"cpu_queue {queue}: progress at {time.strftime('%Y-%m-%d %H:%M')}"
                 ).stdout.strip()
    if commit:
        git("update-ref", f"refs/heads/{branch}", commit)
        log(f"progress saved to branch {branch} ({len(files)} files)")


def precision_table(root: Path) -> int:
    """The equivalence table (eeoffload.equivalence) of the finished precision runs under ``root``,
    printed as markdown and written to ``root``/equivalence.csv and runs.csv."""
    import pandas as pd

    from eeoffload.calibration import exit_logits_from_frame
    from eeoffload.equivalence import equivalence_table, run_summary
    from pipeline.core.io import read_params
    from pipeline.core.params import evaluate_params

    p_tar = evaluate_params(read_params(ROOT / "params.yaml")).p_tar
    rows = []
    for logits in sorted(root.glob("*_seed*/data/logits/one_branch/seed*.parquet")):
        precision, seed = logits.parts[len(root.parts)].split("_seed")
        frame = pd.read_parquet(logits)
        summary = run_summary(exit_logits_from_frame(frame, "val"), exit_logits_from_frame(frame, "test"), p_tar)
        rows.append({"precision": precision, "seed": int(seed), **summary})
    if not rows:
        log(f"no finished run under {root}")
        return 1
    runs = pd.DataFrame(rows).sort_values(["precision", "seed"])
    table = equivalence_table(runs)
    runs.to_csv(root / "runs.csv", index=False)
    table.to_csv(root / "equivalence.csv", index=False)
    print(runs.round(4).to_markdown(index=False))
    print()
    shown = table.assign(reference=table["reference"].map(lambda v: ", ".join(f"{x:.4f}" for x in v)),
                         candidate=table["candidate"].map(lambda v: ", ".join(f"{x:.4f}" for x in v)))
    print(shown.round(4).to_markdown(index=False))
    verdict = table["accepted"].dropna()
    print(f"\nbf16 accepted on every quantity: {bool(len(verdict) == len(table) and verdict.all())} "
          f"({int(verdict.sum())} of {len(table)} quantities accepted, {len(table) - len(verdict)} undecided)")
    return 0


def search_table(root: Path, out: Path | None) -> int:
    """The search's options (:func:`eeoffload.recipe_search.run_options`) of every balexnet32
    candidate under ``root`` (finished or not: a running one's history is its checkpoint's), and the
    rule's choice among the finished ones, labelled provisional until every candidate finished. With
    ``out``: ``cpu_search_options.csv`` and ``cpu_search_histories.csv`` there."""
    import pandas as pd

    from benchmarks.cpu_confirm import search_state

    table, histories, choice, status = search_state(root)
    shown = [c for c in ("option", "deviation", "finished", "epochs_run", "epoch", "val_acc_final",
                         "min_side_temperature") if c in table.columns]
    print(table[shown].round(4).to_markdown(index=False))
    if choice is None:
        print("\nno choice: no candidate run finished")
    else:
        print(f"\nchoice ({status}): {choice.option}: {choice.reason}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "cpu_search_options.csv", index=False)
        if histories:
            pd.concat(histories, ignore_index=True).to_csv(out / "cpu_search_histories.csv", index=False)
        log(f"wrote {out}/cpu_search_options.csv, cpu_search_histories.csv")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("queue", choices=("precision", "search", "precision-table", "search-table", "confirm",
                                      "confirm-pack"))
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="precision, confirm: the training seeds (default 0 1 2); confirm-pack: the seeds to pack "
                    "(default all of the confirmation project's)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                    help="search: default bf16; confirm: default fp32 (the precision study did not accept bf16)")
    ap.add_argument("--option", default=None, help="confirm: this option of the search table, not the rule's choice")
    ap.add_argument("--search-csv", type=Path, default=None,
                    help="confirm, confirm-pack: the search table to choose from (a search-table output, e.g. "
                    "results/search/cpu_search_options.csv) instead of the runs under --build/search")
    ap.add_argument("--only", nargs="*", default=None, help="these jobs only, in this order")
    ap.add_argument("--save-branch", default=None)
    ap.add_argument("--save-every", type=float, default=15.0, help="minutes")
    ap.add_argument("--overlay", default=None, help="extra params overlay for every job (tests)")
    ap.add_argument("--build", type=Path, default=BUILD, help="where the projects live")
    ap.add_argument("--out", type=Path, default=None, help="search-table: write its CSVs there; confirm-pack: "
                    "the folder to pack into (default build/cpu/confirm-out)")
    args = ap.parse_args(argv)
    build = args.build.resolve()
    if args.queue in ("confirm", "confirm-pack"):
        from benchmarks.cpu_confirm import confirm_jobs, pack_confirmation, shipped_search_state

        try:
            state = shipped_search_state(args.search_csv.resolve()) if args.search_csv else None
            if args.queue == "confirm-pack":
                out = pack_confirmation(build, (args.out or build / "confirm-out").resolve(), args.option, state, args.seeds)
                log(f"packed into {out}: python -m pipeline paper import {out} --bundle results/<recipe>")
                return 0
            _, jobs = confirm_jobs(build / "search", args.option, args.seeds or [0, 1, 2], args.precision or "fp32", state)
        except ValueError as e:
            print(f"cpu_queue {args.queue}: {e}", file=sys.stderr)
            return 2
    if args.queue == "search-table":
        return search_table(build / "search", args.out)
    if args.queue == "precision-table":
        return precision_table(build / "precision")
    if args.queue == "precision":
        jobs = precision_jobs(args.seeds or [0, 1, 2])
    elif args.queue == "search":
        jobs = search_jobs(args.precision or "bf16")
    if args.only is not None:
        by_name = {name: (name, over, cmds) for name, over, cmds in jobs}
        jobs = [by_name[n] for n in args.only]
    extra = load_overlay(args.overlay) if args.overlay else {}
    root = build / args.queue
    root.mkdir(parents=True, exist_ok=True)
    prepared = root / "_prepared"
    last_save = time.monotonic()
    for name, over, cmds in jobs:
        project = root / name
        if not (project / "params.yaml").is_file():
            make_scratch_project(project, merge(over, extra), vcs=False)
        if not (prepared / "meta.json").is_file():  # the first job prepares the data for all
            rc = subprocess.run([sys.executable, "-m", "pipeline", "prepare"], cwd=project, env=scratch_env(project)).returncode
            if rc != 0:
                return rc
            shutil.copytree(project / "data" / "prepared", prepared, dirs_exist_ok=True)
        if not (project / "data" / "prepared" / "meta.json").is_file():
            shutil.copytree(prepared, project / "data" / "prepared", dirs_exist_ok=True)
        for cmd in cmds:
            done = project / "queue.log"
            if done.is_file() and f"done: {cmd}\n" in done.read_text():
                continue
            log(f"{name}: python -m pipeline {cmd}")
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "pipeline", *cmd.split()], cwd=project,
                                    env=scratch_env(project))
            while proc.poll() is None:
                time.sleep(5)
                if args.save_branch and time.monotonic() - last_save > 60 * args.save_every:
                    save_progress(args.save_branch, args.queue, build)
                    last_save = time.monotonic()
            if proc.returncode != 0:
                log(f"{name}: {cmd} failed (exit {proc.returncode})")
                return proc.returncode
            with open(done, "a") as f:
                f.write(f"done: {cmd}\n")
            log(f"{name}: {cmd} done in {(time.monotonic() - start) / 60:.1f} min")
    if args.save_branch:
        save_progress(args.save_branch, args.queue, build)
    log(f"queue {args.queue}: every job done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
