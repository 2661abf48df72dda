"""Run the pipeline in a scratch copy of the project (smoke runs and integration tests).

``python -m pipeline scratch --overlay configs/smoke.yaml --dest build/smoke [--archive ZIP] [--flow]``
copies dvc.yaml, params.yaml (with the overlay merged in), pipeline/ and src/ into DEST (replacing
an earlier copy), makes it a git + DVC repository, and runs ``dvc repro`` there; with ``--flow``
(``make smoke``) the benchmark flow instead (``python -m pipeline flows run --root DEST``), which
logs to this project's Prefect database (``$PREFECT_HOME``, else ``.prefect/``; or the server of
``make ui`` if it runs) and to this project's MLflow store (flow_env): the smoke runs show in the
UIs ``make ui`` starts and stay there when DEST is replaced. The archive comes from --archive, else
from $CIFAR10_ARCHIVE or the params, as for a normal run; it is checked (pipeline.core.archive) before
DEST is touched, so a missing or corrupt archive leaves the previous run in place. The flow's full
log goes beside DEST (``<DEST>.logs/``), so the log of a failed run outlives the next copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pipeline.core.archive import check_configured_archive
from pipeline.orchestration.project import LOG_DIR_ENV, PROJECT_ROOT, QUIET_ENV, prefect_home, project_tracking_uri
from pipeline.core.io import SOURCE_FILE, StageError, git_commit
from pipeline.core.overlay import load_overlay, merge

ROOT = PROJECT_ROOT
COPIED = ("dvc.yaml", "pipeline", "src")


def scratch_env(dest: Path) -> dict[str, str]:
    """Environment for commands in the scratch project: its own code first, no telemetry."""
    env = dict(os.environ, **QUIET_ENV)
    # its own code first; what PYTHONPATH held before stays after it (e.g. wheels carried to a GPU box)
    env["PYTHONPATH"] = os.pathsep.join([str(dest / "src"), str(dest), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def flow_env(dest: Path) -> dict[str, str]:
    """scratch_env for the flow in a scratch project, tracked where this project is: MLflow at
    project_tracking_uri() (``make ui``'s store unless $MLFLOW_TRACKING_URI says otherwise) and
    Prefect's state in this project's $PREFECT_HOME."""
    env = scratch_env(dest)
    env["MLFLOW_TRACKING_URI"] = project_tracking_uri()
    env["PREFECT_HOME"] = str(prefect_home())
    env[LOG_DIR_ENV] = str(log_dir(dest))
    return env


def log_dir(dest: Path) -> Path:
    """Where the runs in ``dest`` log: beside it (``build/smoke.logs/``), not inside the folder the
    next run replaces."""
    dest = Path(dest).resolve()
    return dest.parent / f"{dest.name}.logs"


def make_scratch_project(dest: Path, overrides: dict | None = None, vcs: bool = True) -> Path:
    """Copy the project into ``dest`` (replacing it), apply ``overrides`` to params.yaml, and (with
    ``vcs``) make it a git + DVC repository; without, a plain copy for ``python -m pipeline plain-run``."""
    dest = dest.resolve()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides or {}), sort_keys=False))
    (dest / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    # the report shows the project's commit, not the scratch repository's
    # (and the interpreter that made the copy: dvc.yaml's bare `python` outside the venv re-runs the
    # stage with it, pipeline/core/interpreter.py)
    (dest / SOURCE_FILE).write_text(json.dumps({"project": str(ROOT), "commit": git_commit(ROOT),
                                                "python": sys.executable}) + "\n")
    if not vcs:
        return dest
    init_repository(dest)
    run = lambda *cmd: subprocess.run(cmd, cwd=dest, env=scratch_env(dest), check=True, capture_output=True)  # noqa: E731
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "scratch project")
    return dest


def init_repository(dest: Path) -> None:
    """Make ``dest`` a git + DVC repository (nothing committed) with the Makefile of DVC's
    comparisons (``make exps``, ``make plots``): build/smoke, build/paper."""
    (dest / "Makefile").write_text(scratch_makefile())
    env = scratch_env(dest)
    run = lambda *cmd: subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "scratch@localhost")
    run("git", "config", "user.name", "scratch")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "config", "core.site_cache_dir", str(dest / ".dvc" / "site_cache"))
    with (dest / ".dvc" / ".gitignore").open("a") as ignore:  # DVC's local state, not the project's
        ignore.write("/site_cache\n")


#: The scratch project's Makefile: DVC's comparisons with the venv's tools, activated or not.
SCRATCH_MAKEFILE = """\
# Made by pipeline.tools.scratch: DVC's comparisons in this scratch copy of {root}
# (whose Makefile has the other targets). DVC runs here with {bindir}, activated or not.
SHELL := /bin/bash
export PATH := {bindir}:$(PATH)
.PHONY: help exps plots

help:
\t@echo "make exps    the experiments, only the params and metrics that differ (dvc exp show {exp_show_flags})"
\t@echo "make plots   the curves of the workspace and every experiment: build/dvc_plots/index.html (EXPS='a b')"

exps:
\tdvc exp show {exp_show_flags}

plots:
\t@mkdir -p build
\tdvc plots diff $(if $(EXPS),$(EXPS),$$(dvc exp list --name-only 2>/dev/null)) \\
\t\t--html-template pipeline/templates/dvc_plots.html -o build/dvc_plots
"""
#: ``dvc exp show`` that fits a terminal: no column that is the same in every row (about 70 params
#: and the code deps), no timestamps; the Makefiles' ``make exps``.
EXP_SHOW_FLAGS = "--only-changed --drop 'Created|State|Executor|^(src|pipeline|data)/' --precision 3"


def scratch_makefile() -> str:
    return SCRATCH_MAKEFILE.format(root=ROOT, bindir=Path(sys.executable).parent, exp_show_flags=EXP_SHOW_FLAGS)


def commit_first_run(dest: Path) -> bool:
    """After the first successful run: commit dvc.lock, reports/headline.json and reports/plots/ as
    "first run", so that ``dvc exp show``, ``dvc metrics diff <baseline> <exp>`` and ``dvc plots
    diff`` find the baseline's results from then on (the first commit has none). False if there
    was nothing to commit."""
    env = scratch_env(dest)
    subprocess.run(["git", "add", "-A"], cwd=dest, env=env, check=True, capture_output=True)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=dest, env=env)
    if staged.returncode == 0:
        return False
    subprocess.run(["git", "commit", "-q", "-m", "first run"], cwd=dest, env=env, check=True, capture_output=True)
    return True


def dvc_repro(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dvc repro` in the scratch project, output captured."""
    return subprocess.run([sys.executable, "-m", "dvc", "repro", *args], cwd=dest, env=scratch_env(dest),
                          text=True, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline scratch", description=__doc__.splitlines()[0])
    ap.add_argument("--overlay", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--archive", default=None, help="CIFAR-10 archive (else $CIFAR10_ARCHIVE or params)")
    ap.add_argument("--flow", action="store_true",
                    help="run the Prefect benchmark flow (stages as tasks, MLflow runs) instead of dvc repro")
    args = ap.parse_args(argv)
    overlay = load_overlay(args.overlay)
    if args.archive:
        overlay = merge(overlay, {"data": {"archive": str(Path(args.archive).resolve())}})
    elif os.environ.get("CIFAR10_ARCHIVE"):
        os.environ["CIFAR10_ARCHIVE"] = str(Path(os.environ["CIFAR10_ARCHIVE"]).resolve())
    archive = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overlay).get("data", {}).get("archive") or ""
    try:  # before anything is replaced: a bad archive leaves the previous run (and its reports) in place
        print(f"archive {check_configured_archive(str(archive))}", flush=True)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        print(f"{Path(args.dest)}: left as it was", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    replaced = Path(args.dest).exists()
    dest = make_scratch_project(Path(args.dest), overlay)
    if replaced:
        print(f"{dest}: replaced by a fresh copy" + (f"; the runs of earlier smoke flows stay in MLflow "
              f"({project_tracking_uri()}) and Prefect ({prefect_home()})" if args.flow else ""), flush=True)
    start = time.perf_counter()
    if args.flow:
        cmd = [sys.executable, "-m", "pipeline", "flows", "run", "--root", str(dest)]
        proc = subprocess.run(cmd, cwd=dest, env=flow_env(dest))
    else:
        cmd = [sys.executable, "-m", "dvc", "repro"]
        proc = subprocess.run(cmd, cwd=dest, env=scratch_env(dest))
    what = "benchmark flow" if args.flow else "dvc repro"
    if proc.returncode == 0 and commit_first_run(dest):
        print(f"{dest}: the results committed as \"first run\": compare experiments there with `make exps`, "
              f"`make plots`, `dvc metrics diff`", flush=True)
    if args.flow:
        from pipeline.orchestration.services import links

        for line in links():  # the runs just logged, in the views that show them (`make ui` serves them)
            print(line, flush=True)
    print(f"{what} in {dest}: exit {proc.returncode} after {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    raise SystemExit(proc.returncode)
