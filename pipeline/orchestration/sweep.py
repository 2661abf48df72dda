"""Sweep uplink rates x branch placements as named DVC experiments; one comparison CSV and figure.

``python -m pipeline sweep --uplink 5 10 18.8 --branches relu1 relu2 [--variant one_branch]
[--p-tar 0.85] [--t-tar 50 100] [--prefix sweep] [--wait S]``  (``make sweep UPLINK="5 10 18.8" BRANCHES="relu1 relu2"``)

Each point is ``dvc exp run -n <prefix>-u<rate>-<placement> -S network.uplink_mbps=<rate>
-S variants.<variant>.branches=[...]``, one after the other in the workspace (a Prefect task each,
under the workspace lock of pipeline.orchestration.lock), so DVC re-runs only what the point changes: a new
uplink rate re-runs evaluate, trajectory, plots and report; a new placement retrains that variant. After each
point its missed-deadline probabilities are read from ``reports/metrics/<variant>/``. The sweep
ends with ``reports/sweeps/<prefix>/comparison.csv`` and ``missed_deadline_vs_uplink.png``
(missed-deadline probability vs uplink rate, conventional vs calibrated, one panel per deadline),
and puts params.yaml back as it was (the workspace outputs are then those of the last point; the
points themselves are in ``dvc exp show``). A placement with several branches is written
``relu1+relu2``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.orchestration.dvc_commands import run_dvc
from pipeline.orchestration.settings import check_params, exp_set_args, experiment_settings, with_settings
from pipeline.orchestration.lock import workspace_lock
from pipeline.orchestration.project import resolve_root


def point_name(prefix: str, uplink: float, branches: list[str]) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}-u{uplink:g}-{'+'.join(branches)}")


def point_rows(root: Path, name: str, uplink_mbps: float, variant: str, placement: list[str],
               p_tar: list[float], t_tar_ms: list[float]) -> list[dict[str, Any]]:
    """The comparison rows of one point: the missed-deadline rows of ``variant`` in ``root``'s
    ``reports/metrics/<variant>/`` (also used by the work-pool sweep, pipeline.orchestration.workpool)."""
    path = Path(root)
    deadline = pd.read_parquet(path / "reports" / "metrics" / variant / "deadline.parquet")
    offload = pd.read_parquet(path / "reports" / "metrics" / variant / "offload.parquet")
    rows = []
    for calibration in ("conventional", "calibrated"):
        for p in p_tar:
            d = deadline[(deadline["calibration"] == calibration) & np.isclose(deadline["p_tar"], p, atol=1e-6)]
            o = offload[(offload["calibration"] == calibration) & np.isclose(offload["p_tar"], p, atol=1e-6)]
            for t in t_tar_ms:
                hit = d[np.isclose(d["t_tar_ms"], t)]
                rows.append({
                    "experiment": name, "variant": variant,
                    "branches": "+".join(placement),
                    "uplink_mbps": float(uplink_mbps), "calibration": calibration, "p_tar": p,
                    "t_tar_ms": t,
                    "missed_deadline": float(hit["missed_deadline"].iloc[0]) if not hit.empty else np.nan,
                    "p_device": float(o["p_device"].iloc[0]) if not o.empty else np.nan,
                    "acc_total": float(o["acc_total"].iloc[0]) if not o.empty else np.nan,
                })
    return rows


@task(name="sweep-point", task_run_name="{name}", cache_policy=NO_CACHE)
def sweep_point(root: str, name: str, flat: dict[str, Any], variant: str, placement: list[str],
                p_tar: list[float], t_tar_ms: list[float]) -> list[dict[str, Any]]:
    """One `dvc exp run -n <name> -S ...`; the missed-deadline rows of ``variant`` it produced."""
    path = Path(root)
    run_dvc(path, ["exp", "run", "-n", name, *exp_set_args(flat)], f"dvc exp run -n {name}", get_run_logger())
    return point_rows(path, name, flat["network.uplink_mbps"], variant, placement, p_tar, t_tar_ms)


def comparison_figure(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deadlines = sorted(df["t_tar_ms"].unique())
    fig, axes = plt.subplots(1, len(deadlines), figsize=(4.5 * len(deadlines), 3.6), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], deadlines, strict=True):
        sub = df[df["t_tar_ms"] == t]
        for (branches, calibration, p), g in sub.groupby(["branches", "calibration", "p_tar"]):
            g = g.sort_values("uplink_mbps")
            ax.plot(g["uplink_mbps"], g["missed_deadline"], marker="o",
                    linestyle="-" if calibration == "calibrated" else "--",
                    label=f"{calibration}, {branches}, p_tar={p:g}")
        ax.set_title(f"deadline {t:g} ms")
        ax.set_xlabel("uplink rate (Mbps)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("missed-deadline probability")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(root: Path, prefix: str, df: pd.DataFrame, extra_markdown: str = "") -> Path:
    """``reports/sweeps/<prefix>/comparison.csv`` and ``missed_deadline_vs_uplink.png`` of ``df``
    (rows of point_rows), the markdown artifact ``benchmark-sweep``; the folder."""
    out = Path(root) / "reports" / "sweeps" / prefix
    out.mkdir(parents=True, exist_ok=True)
    (Path(root) / "reports" / "sweeps" / ".gitignore").write_text("*\n")
    df.to_csv(out / "comparison.csv", index=False)
    table = "(no point finished)"
    if not df.empty:
        comparison_figure(df, out / "missed_deadline_vs_uplink.png")
        table = df.pivot_table(index=["branches", "uplink_mbps", "p_tar", "t_tar_ms"], columns="calibration",
                               values="missed_deadline").reset_index().to_markdown(index=False)
    create_markdown_artifact(key="benchmark-sweep",
                             markdown=f"# Sweep {prefix}\n\n{table}\n\n{extra_markdown}"
                                      f"CSV: `{out / 'comparison.csv'}`\n\nFigure: `{out / 'missed_deadline_vs_uplink.png'}`\n")
    print(f"sweep {prefix}: {out / 'comparison.csv'}, {out / 'missed_deadline_vs_uplink.png'}")
    return out


@flow(name="benchmark-sweep", log_prints=True)
def sweep(uplink_mbps: list[float], branch_placements: list[list[str]] | None = None,
          variant: str = "one_branch", p_tar: list[float] | None = None, t_tar_ms: list[float] | None = None,
          prefix: str = "sweep", wait_s: float = 0.0, root: str | None = None, recipe: str | None = None) -> str:
    """Named DVC experiments over uplink rates x branch placements of ``variant``; the CSV's path.
    ``recipe``: every point trains with that recipe of configs/recipes/ (its settings first, the
    point's uplink and placement over them)."""
    path = resolve_root(root)
    params_file = path / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    p_tar = [float(p) for p in (p_tar or [0.85])]
    t_tar_ms = [float(t) for t in (t_tar_ms or [50.0, 100.0])]
    placements = [list(b) for b in branch_placements] if branch_placements else [None]
    base: dict[str, Any] = {}
    if recipe:
        from pipeline.tools.recipes import recipe_settings

        base = recipe_settings(recipe)
    points = []
    for branches in placements:
        for rate in uplink_mbps:
            flat = experiment_settings(uplink_mbps=rate, branches={variant: branches} if branches else None,
                                       params=with_settings(params, base))
            flat = {**base, **flat}
            check_params(with_settings(params, flat), f"sweep point {' '.join(exp_set_args(flat))}")
            placement = list(branches or with_settings(params, base)["variants"][variant]["branches"])
            points.append((point_name(prefix, rate, placement), flat, placement))
    rows: list[dict[str, Any]] = []
    with workspace_lock(path, f"flow benchmark-sweep {prefix}", wait_s):
        try:
            for name, flat, placement in points:
                rows += sweep_point(str(path), name, flat, variant, placement, p_tar, t_tar_ms)
        finally:
            params_file.write_text(original)
    out = write_comparison(path, prefix, pd.DataFrame(rows))
    return str(out / "comparison.csv")


def main(argv: list[str] | None = None, prog: str = "python -m pipeline sweep") -> None:
    from pipeline.orchestration.cli import run_flow

    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--uplink", type=float, nargs="+", required=True, help="uplink rates in Mbps")
    ap.add_argument("--branches", nargs="*", default=[], help="placements, e.g. relu1 relu2 relu1+relu2")
    ap.add_argument("--variant", default="one_branch")
    ap.add_argument("--p-tar", type=float, nargs="+", default=[0.85])
    ap.add_argument("--t-tar", type=float, nargs="+", default=[50.0, 100.0], help="deadlines in ms")
    ap.add_argument("--prefix", default="sweep")
    ap.add_argument("--recipe", default=None, help="a recipe of configs/recipes/ for every point")
    ap.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for a run already in progress in the workspace (default: fail at once)")
    ap.add_argument("--root", default=None)
    ap.add_argument("--verbose", action="store_true", help="Prefect's console output unfiltered (tracebacks)")
    args = ap.parse_args(argv)
    if args.recipe:
        from pipeline.tools.recipes import RecipeError, recipe_overlay

        try:
            recipe_overlay(args.recipe)
        except RecipeError as e:
            raise SystemExit(f"{prog}: {e}") from None
    run_flow(lambda: sweep(uplink_mbps=args.uplink, branch_placements=[b.split("+") for b in args.branches] or None,
                           variant=args.variant, p_tar=args.p_tar, t_tar_ms=args.t_tar, prefix=args.prefix,
                           wait_s=args.wait, root=args.root, recipe=args.recipe, return_state=True),
             prog, args.root, args.verbose)
