"""The paper-length runs on a lent GPU machine, in one call: every (seed, variant) of the default
recipe plus a recipe search for the CPU quick recipe, as concurrent processes on one GPU.

    python -m benchmarks.paper_gpu --out DIR [--seeds 0 1 2] [--deadline-s 540] [--search] [--resume]

The machine has torch and the data stack but no DVC, so the project's own stage commands run
directly (``python -m pipeline plain-run`` for seed 0, the whole default pipeline, timed: the GPU figure of
docs/performance.md; ``python -m pipeline train`` / ``logits`` for the other seeds,
which share seed 0's prepared data). Each project is a plain copy under build/paper/ with
``train.seed`` set; build/search/ holds the recipe search (train only: each epoch's history row
has the exits' validation accuracy and fitted temperature, which is all the search compares).

A deadline guards the call: search processes are stopped first when the paper runs would
otherwise not finish in time, and at the deadline everything left is stopped. What comes back,
in DIR (at most 8 files of 16 MiB): one tarball per (seed, variant) (logits, snapshots, history,
timings, seed 0's models and reports, any unfinished run's checkpoint) and logs.tgz (the logs and
the search histories as one CSV, search_histories.csv).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from benchmarks import ROOT
from pipeline.core import registry as R
from pipeline.orchestration.processes import terminate_group
from pipeline.tools.scratch import make_scratch_project, scratch_env

VARIANTS = ("one_branch", "two_branch")
#: The recipe search for configs/quick.yaml (joint-only unless stated). The history of each epoch
#: gives the trajectory, so one run per recipe covers every epoch count up to ``joint_epochs``.
SEARCH = {
    "b512_lr1e-3": {"batch_size": 512, "lr": 1e-3},
    "b256_lr1e-3": {"batch_size": 256, "lr": 1e-3},
    "b128_lr1e-3": {"batch_size": 128, "lr": 1e-3},
    "b256_lr2e-3": {"batch_size": 256, "lr": 2e-3},
    "b128_lr5e-4": {"batch_size": 128, "lr": 5e-4},
    "b128_lr2e-3": {"batch_size": 128, "lr": 2e-3},
}
SEARCH_EPOCHS = 30
EPOCH_LINE = re.compile(r"^(\S+) epoch (\d+)/(\d+) .*\((\d+\.\d+) s, eta")


def log(text: str) -> None:
    print(f"[paper_gpu {time.strftime('%H:%M:%S')}] {text}", flush=True)


def start(cmd: list[str], cwd: Path, logfile: Path) -> subprocess.Popen[bytes]:
    handle = open(logfile, "ab")  # noqa: SIM115 - closed with the process at exit
    return subprocess.Popen(cmd, cwd=cwd, env=scratch_env(cwd), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        terminate_group(proc.pid, 15, alive=lambda: proc.poll() is None)


def progress(logfile: Path) -> tuple[int, int, float] | None:
    """(epoch, of, seconds of the last epoch) from the last epoch line of a train log."""
    if not logfile.is_file():
        return None
    last = None
    for line in logfile.read_text(errors="replace").splitlines():
        m = EPOCH_LINE.match(line)
        if m:
            last = (int(m.group(2)), int(m.group(3)), float(m.group(4)))
    return last


def history_rows(project: Path, variant: str, seed: int = 0) -> list[dict[str, str]]:
    """The history of a (maybe unfinished) training: the CSV when it finished, else the checkpoint's."""
    done = project / R.training_csv(variant, seed)
    if done.is_file():
        return list(csv.DictReader(io.StringIO(done.read_text())))
    ckpt = project / R.checkpoint_path(variant, seed)
    if not ckpt.is_file():
        return []
    import torch

    return [{k: str(v) for k, v in row.items()} for row in torch.load(ckpt, weights_only=True)["history"]]


def pack(tar_path: Path, project: Path, members: list[str]) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in members:
            if (project / name).exists():
                tar.add(project / name, arcname=name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--deadline-s", type=float, default=540.0, help="stop everything this long after start")
    ap.add_argument("--search", action="store_true", help="also run the quick-recipe search")
    ap.add_argument("--search-epochs", type=int, default=SEARCH_EPOCHS)
    ap.add_argument("--resume", action="store_true", help="go on with the projects of an earlier call")
    ap.add_argument("--build", type=Path, default=ROOT / "build")
    ap.add_argument("--overlay", default=None, help="extra params overlay (YAML) for every project (tests)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.deadline_s
    out, logs = args.out.resolve(), (args.out / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    extra = {}
    if args.overlay:
        from pipeline.core.overlay import load_overlay

        extra = load_overlay(args.overlay)

    def overlay(train: dict) -> dict:
        from pipeline.core.overlay import merge

        return merge(extra, {"train": train})

    seeds = args.seeds
    if args.resume:  # the projects of an earlier call on this machine: training resumes from checkpoints
        paper = {s: (args.build / "paper" / f"seed{s}").resolve() for s in seeds}
        args.search = False
    else:
        paper = {s: make_scratch_project(args.build / "paper" / f"seed{s}", overlay({"seeds": [s]}), vcs=False)
                 for s in seeds}
    # Seed 0 (the first seed): the whole default pipeline, timed, from the archive to the report.
    first = seeds[0]
    full_cmd = [sys.executable, "-m", "pipeline", "plain-run", "--parallel", "train", "logits"]
    procs: dict[str, subprocess.Popen[bytes]] = {"full": start(full_cmd, paper[first], logs / f"seed{first}.log")}
    log(f"seed {first}: {' '.join(full_cmd[1:])} in {paper[first]}")
    prepared = paper[first] / "data" / "prepared"
    while not (prepared / "meta.json").is_file() and procs["full"].poll() is None:
        time.sleep(1)
    if not (prepared / "meta.json").is_file():
        log("prepare failed: see the seed log")
        return 1
    log(f"prepared data ready after {time.monotonic() - t0:.0f} s")

    search: dict[str, Path] = {}
    for s in seeds[1:]:
        shutil.copytree(prepared, paper[s] / "data" / "prepared", dirs_exist_ok=True)
        for v in VARIANTS:
            chain = f"{sys.executable} -m pipeline train {v} {s} && {sys.executable} -m pipeline logits {v} {s}"
            procs[f"seed{s}/{v}"] = start(["sh", "-c", chain], paper[s], logs / f"seed{s}_{v}.log")
    if args.search:
        for name, train in SEARCH.items():
            project = make_scratch_project(args.build / "search" / name, overlay(
                {**train, "seeds": [0], "trunk_epochs": 0, "joint_epochs": args.search_epochs, "snapshot_epochs": []}),
                vcs=False)
            shutil.copytree(prepared, project / "data" / "prepared")
            search[name] = project
            for v in VARIANTS:
                procs[f"search/{name}/{v}"] = start([sys.executable, "-m", "pipeline", "train", v, "0"], project,
                                                    logs / f"search_{name}_{v}.log")
    log(f"{len(procs)} processes running")

    paper_logs = [logs / f"seed{first}.log"] + [logs / f"seed{s}_{v}.log" for s in seeds[1:] for v in VARIANTS]
    search_stopped = False
    last_report = 0.0
    while any(p.poll() is None for p in procs.values()):
        now = time.monotonic()
        if now >= deadline:
            log("deadline reached: stopping what is left")
            break
        states = [progress(f) for f in paper_logs]
        finish = [now + (of - ep) * sec for st in states if st for ep, of, sec in [st]]
        paper_running = [k for k in procs if not k.startswith("search/") and procs[k].poll() is None]
        if args.search and not search_stopped and finish and max(finish) > deadline - 60 and now - t0 > 90:
            log(f"paper runs would end {max(finish) - t0:.0f} s after start: stopping the search")
            for k, p in procs.items():
                if k.startswith("search/"):
                    stop(p)
            search_stopped = True
        if not paper_running and args.search and not search_stopped and now > deadline - 45:
            break
        if now - last_report > 30:
            last_report = now
            log("paper " + ", ".join(f"{f.stem} {st[0]}/{st[1]} ({st[2]:.1f} s/epoch)" if st else f"{f.stem} -"
                                     for f, st in zip(paper_logs, states)))
        time.sleep(2)
    for k, p in procs.items():
        stop(p)
        log(f"{k}: exit {p.returncode}")

    # What comes back: one tarball per (seed, variant), the search histories, the logs.
    for s in seeds:
        for v in VARIANTS:
            ckpt = R.checkpoint_path(v, s)
            members = ["params.yaml", str(R.training_csv(v, s)), str(R.timing_path(R.stage_instance("train", v, s))),
                       str(R.timing_path(R.stage_instance("logits", v, s))), str(R.logits_path(v, s)), str(R.snapshots_dir(v, s)),
                       str(ckpt), str(ckpt.with_name(ckpt.stem + "_snapshots"))]
            if s == first:
                members += [str(R.model_path(v, s)), str(R.profile_path(v)), str(R.profile_layers_path(v))]
            if s == first and v == VARIANTS[0]:
                members += ["data/prepared/meta.json", "data/calibration", "reports/calibration", "reports/metrics",
                            "reports/metrics.json", "reports/figures", "reports/index.html", "reports/timings"]
            pack(out / f"seed{s}_{v}.tgz", paper[s], members)
    rows = []
    for name, project in search.items():
        for v in VARIANTS:
            rows += [{"recipe": name, "variant": v, **row} for row in history_rows(project, v)]
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        with open(logs / "search_histories.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    shutil.rmtree(logs)
    log(f"done after {time.monotonic() - t0:.0f} s; " + ", ".join(
        f"{f.name} {f.stat().st_size / 2**20:.1f} MiB" for f in sorted(out.iterdir())))
    return 0 if all(p.returncode == 0 for k, p in procs.items() if not k.startswith("search/")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
