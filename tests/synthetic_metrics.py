"""A complete, small, fake set of the files that the plots and report stages read.

``write_synthetic_inputs(root)`` writes, under ``root``, for each variant (default ``one_branch``
with a branch after relu1 and ``two_branch`` after relu1 and relu2, as in params.yaml):

* reports/metrics/<v>/offload.parquet, reports/metrics/<v>/deadline.parquet, reports/metrics.json
* reports/metrics/<v>/latency.json
* reports/calibration/<v>/seed0_exits.parquet, reports/calibration/<v>/seed0_reliability.parquet
* reports/training/<v>/seed0.csv (one training seed: ``train.seeds: [0]``)
* data/profile/<v>.json, data/profile/<v>_layers.parquet
* reports/timings/<stage>[@<v>].json for the stages before plots

The curves are shaped like the paper's (conventional overconfident, calibrated on target), with
every claim of :mod:`eeoffload.claims` holding, so a test can check verdicts; ``shape`` lets a test
make them fail instead. Schemas follow docs/interfaces.md. Deterministic; a few hundred rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from eeoffload.latency import LatencyProfile

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_VARIANTS: dict[str, list[str]] = {"one_branch": ["relu1"], "two_branch": ["relu1", "relu2"]}
DEADLINE_P_TAR = (0.75, 0.825, 0.85)
#: The figures stage plots draws for DEFAULT_VARIANTS, in order.
PAPER_FIGURES = ["fig2_p_device", "fig3a_acc_vs_conf", "fig3b_acc_device", "fig3c_acc_total", "fig4_outage",
                 "fig5_missed_deadline_one_branch", "fig6_missed_deadline_two_branch", "fig7_outage_branches"]
EXTRA_FIGURES = [f"{k}_{v}" for v in DEFAULT_VARIANTS for k in ("reliability", "latency", "training")] \
    + ["trajectory"]

# Trunk layers, output elements per sample (B-AlexNet on 32x32 CIFAR-10).
TRUNK = [
    ("conv1", 32768), ("relu1", 32768), ("pool1", 8192), ("lrn1", 8192), ("conv2", 16384), ("relu2", 16384),
    ("pool2", 4096), ("lrn2", 4096), ("conv3", 6144), ("relu3", 6144), ("conv4", 6144), ("relu4", 6144),
    ("conv5", 4096), ("relu5", 4096), ("pool5", 1024), ("flatten", 1024), ("fc1", 256), ("relu6", 256),
    ("fc2", 128), ("relu7", 128), ("fc3", 10),
]
BRANCH = [("pool", 8192), ("lrn", 8192), ("conv", 8192), ("relu", 8192), ("pool2", 2048), ("flatten", 2048),
          ("fc", 10)]


def _grid(start: float, stop: float, step: float) -> np.ndarray:
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 6)


def offload_frame(n_branches: int, p_step: float = 0.005, shape: str = "paper") -> pd.DataFrame:
    """offload.parquet rows; ``shape='paper'`` makes every claim hold, ``'inverted'`` swaps the roles."""
    p = _grid(0.5, 0.99, p_step)
    rows = []
    for cal in ("conventional", "calibrated"):
        good = (cal == "calibrated") == (shape == "paper")
        p_dev_conv = np.clip(0.95 * (1.0 - p) ** 0.6 + 0.05, 0, 1)
        p_dev = p_dev_conv * (0.7 if good else 1.0)
        p_dev = np.where(p > 0.985, 0.0, p_dev)  # no sample that confident: nothing on the device
        conf = np.minimum(p + (0.015 if good else 0.03), 1.0)
        acc = np.minimum(p + 0.02, 1.0) if good else p - 0.05
        acc_total = 0.80 + 0.05 * p + (0.01 if good else 0.0)
        if good:
            outage = np.where(p < 0.88, 0.0, np.clip((p - 0.88) / 0.11, 0, 1) * (0.05 if n_branches > 1 else 0.6))
        else:
            lo = 0.8 if n_branches == 1 else 0.7
            outage = np.clip((p - lo) / 0.19, 0, 1)
        res = np.clip(outage + 0.01, 0, 1)
        for i, pt in enumerate(p):
            on = p_dev[i] > 0
            rows.append({
                "calibration": cal, "p_tar": float(pt), "p_device": float(p_dev[i]),
                "conf_device": float(conf[i]) if on else np.nan, "acc_device": float(acc[i]) if on else np.nan,
                # No device-classified sample: no batch counts, outage undefined (NaN), as evaluate writes.
                "acc_total": float(acc_total[i]), "outage": float(outage[i]) if on else np.nan,
                "n_batches": 13 if on else 0,
                "outage_resampled": float(res[i]) if on else np.nan,
                "outage_low": float(max(res[i] - 0.05, 0.0)) if on else np.nan,
                "outage_high": float(min(res[i] + 0.05, 1.0)) if on else np.nan,
            })
    df = pd.DataFrame(rows)
    df["n_batches"] = df["n_batches"].astype("int64")
    return with_intervals(df)


#: Half-width of the synthetic population intervals: narrow (many samples), so that the paper-shaped
#: differences lie outside them and every claim can hold.
NOISE = 0.004


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """The count and population-interval columns that evaluate writes (eeoffload.evaluation
    OFFLOAD_COLUMNS / DEADLINE_COLUMNS), synthetic: value -+ NOISE clipped to [0, 1], 7000 samples,
    13 batches."""
    df = df.copy()

    def band(col: str, lo: str, hi: str) -> None:
        df[lo] = (df[col] - NOISE).clip(0.0, 1.0)
        df[hi] = (df[col] + NOISE).clip(0.0, 1.0)

    if "outage" in df.columns:
        df["n_samples"] = np.int64(7000)
        df["n_device"] = (df["p_device"] * 7000).round().astype("int64")
        band("p_device", "p_device_lo", "p_device_hi")
        band("acc_device", "acc_device_lo", "acc_device_hi")
        band("acc_total", "acc_total_lo", "acc_total_hi")
        df["n_batches_empty"] = (13 - df["n_batches"]).astype("int64")
        df["n_outage_batches"] = (df["outage"].fillna(0) * df["n_batches"]).round().astype("int64")
        band("outage", "outage_lo", "outage_hi")
    else:
        df["n_batches"] = np.int64(13)
        df["n_missed_batches"] = (df["missed_deadline"] * 13).round().astype("int64")
        band("missed_deadline", "missed_lo", "missed_hi")
    return df


def _missed(t: np.ndarray, t0: float, t1: float, floor: float) -> np.ndarray:
    """1 below t0, falling linearly to ``floor`` at t1, flat after."""
    frac = np.clip((t - t0) / (t1 - t0), 0, 1)
    return np.round(1.0 - (1.0 - floor) * frac, 6)


def deadline_frame(n_branches: int, t_step: float = 2.5, shape: str = "paper",
                   p_tars: Sequence[float] = DEADLINE_P_TAR) -> pd.DataFrame:
    t = _grid(0.0, 150.0, t_step)
    # (t0, t1, floor) per p_tar, calibration; two branches: conventional floor higher.
    conv_extra = 0.1 if n_branches > 1 else 0.0
    spec = {
        0.75: {"conventional": (15, 60, 0.05), "calibrated": (25, 80, 0.05)},
        0.825: {"conventional": (20, 70, 0.5 + conv_extra), "calibrated": (30, 90, 0.1)},
        0.85: {"conventional": (20, 70, 0.8 + conv_extra), "calibrated": (35, 100, 0.08)},
    }
    rows = []
    for pt in p_tars:
        s = spec.get(round(pt, 3), {"conventional": (20, 70, 0.5), "calibrated": (30, 90, 0.2)})
        for cal in ("conventional", "calibrated"):
            use = cal if shape == "paper" else ("calibrated" if cal == "conventional" else "conventional")
            t0, t1, floor = s[use]
            for ti, m in zip(t, _missed(t, t0, t1, floor), strict=True):
                rows.append({"calibration": cal, "p_tar": float(pt), "t_tar_ms": float(ti),
                             "missed_deadline": float(m)})
    return with_intervals(pd.DataFrame(rows))


def exits_frame(n_exits: int) -> pd.DataFrame:
    rows = []
    for e in range(1, n_exits + 1):
        acc = 0.62 + 0.18 * (e - 1) / max(n_exits - 1, 1)
        for cal, t, ece in (("conventional", 1.0, 0.08 - 0.01 * e), ("calibrated", 1.4 + 0.1 * e, 0.015)):
            rows.append({"exit": e, "calibration": cal, "method": "none" if cal == "conventional" else "temperature",
                         "temperature": t, "accuracy": acc, "ece": ece,
                         "mce": ece * 3, "nll": 1.2 - 0.3 * e / n_exits - (0.05 if cal == "calibrated" else 0),
                         "brier": 0.5 - 0.1 * e / n_exits})
    df = pd.DataFrame(rows)
    df["exit"] = df["exit"].astype("int64")
    return df


def reliability_frame(n_exits: int, n_bins: int = 15) -> pd.DataFrame:
    rows = []
    for e in range(1, n_exits + 1):
        for cal, gap in (("conventional", 0.08), ("calibrated", 0.01)):
            for b in range(n_bins):
                lo, hi = b / n_bins, (b + 1) / n_bins
                count = 0 if hi <= 0.1 else int(50 + 30 * b)
                conf = np.nan if count == 0 else (lo + hi) / 2
                acc = np.nan if count == 0 else max(conf - gap, 0.0)
                rows.append({"exit": e, "calibration": cal, "bin": b, "bin_lower": lo, "bin_upper": hi,
                             "count": count, "confidence": conf, "accuracy": acc})
    df = pd.DataFrame(rows)
    for c in ("exit", "bin", "count"):
        df[c] = df[c].astype("int64")
    return df


def training_frame(n_exits: int, trunk_epochs: int = 3, joint_epochs: int = 4) -> pd.DataFrame:
    rows = []
    for ep in range(1, trunk_epochs + joint_epochs + 1):
        phase = "trunk" if ep <= trunk_epochs else "joint"
        row = {"epoch": ep, "phase": phase, "train_loss": 2.0 / ep, "val_loss": 2.1 / ep + 0.05}
        for e in range(1, n_exits + 1):
            trained = e == n_exits or phase == "joint"
            row[f"val_acc_exit{e}"] = (0.5 + 0.3 * (1 - 1 / ep) * e / n_exits) if trained else 0.1
        rows.append(row)
    return pd.DataFrame(rows)


def profile_files(branches: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    names = [n for n, _ in TRUNK]
    cut = max(names.index(b) for b in branches)
    rows = []
    for i, (name, elems) in enumerate(TRUNK):
        rows.append({"layer": name, "part": "trunk", "location": "edge" if i <= cut else "cloud",
                     "ms": round(0.05 + 0.02 * (i % 5), 4) if i <= cut else round(0.004 + 0.001 * (i % 3), 4),
                     "output_elements": elems})
        for k, b in enumerate(branches, start=1):
            if b == name:
                for bn, be in BRANCH:
                    rows.append({"layer": bn, "part": f"branch{k}", "location": "edge", "ms": 0.03,
                                 "output_elements": be})
    layers = pd.DataFrame(rows)
    layers["output_elements"] = layers["output_elements"].astype("int64")
    edge = layers[layers["location"] == "edge"]
    trunk = layers[layers["part"] == "trunk"].reset_index(drop=True)
    device_ms = {}
    for k, b in enumerate(branches, start=1):
        to_branch = float(trunk["ms"].iloc[: names.index(b) + 1].sum())
        device_ms[str(k)] = round(to_branch + float(layers[layers["part"] == f"branch{k}"]["ms"].sum()), 4)
    profile = {
        "device_ms_to_exit": device_ms,
        "offload_edge_ms": round(float(edge[edge["part"] == "trunk"]["ms"].sum()), 4),
        "upload_bytes": int(TRUNK[cut][1] * 4),
        "cloud_ms": round(float(layers[layers["location"] == "cloud"]["ms"].sum()), 4),
        "partition_layer": TRUNK[cut][0],
        "edge": {"device": "cpu", "threads": 1, "slowdown": 1.0, "processor": "Synthetic CPU"},
        "cloud": {"device": "cuda", "name": "Synthetic GPU", "speedup": 1.0},
    }
    return profile, layers


def trajectory_frames(variants: Mapping[str, Sequence[str]], folder: Path, epochs: Sequence[int] = (2, 5, 7),
                      trunk_epochs: int = 3) -> None:
    """The trajectory stage's three tables: temperatures growing with the epoch (over-confidence)."""
    folder.mkdir(parents=True, exist_ok=True)
    exits, offload, claims = [], [], []
    for v, branches in variants.items():
        n_exits = len(branches) + 1
        for e in epochs:
            phase = "trunk" if e <= trunk_epochs else "joint"
            for k in range(1, n_exits + 1):
                exits.append({"variant": v, "epoch": e, "phase": phase, "exit": k,
                              "trained": phase == "joint" or k == n_exits, "temperature": 1.0 + 0.1 * e,
                              "accuracy": 0.6 + 0.01 * e, "ece_conventional": 0.02 * e, "ece_calibrated": 0.01,
                              "nll_conventional": 1.0, "nll_calibrated": 0.9})
            for cal, shift in (("conventional", 0.1), ("calibrated", 0.0)):
                row = {"variant": v, "epoch": e, "calibration": cal, "p_device_mean": 0.4 + shift}
                row |= {f"{m}@{p:g}": 0.1 for m in ("p_device", "acc_device", "outage")
                        for p in (0.75, 0.825, 0.85, 0.875, 0.9)}
                offload.append(row)
    for e in epochs:
        claims.append({"id": "C1", "figure": "Fig. 2", "claim": "synthetic", "variant": "one_branch",
                       "numbers": "-", "verdict": "holds", "epoch": e})
    pd.DataFrame(exits).to_parquet(folder / "exits.parquet", index=False)
    pd.DataFrame(offload).to_parquet(folder / "offload.parquet", index=False)
    pd.DataFrame(claims).to_parquet(folder / "claims.parquet", index=False)


def write_synthetic_inputs(root: str | Path, variants: Mapping[str, Sequence[str]] | None = None, *,
                           shape: str = "paper", p_step: float = 0.005, t_step: float = 2.5) -> dict[str, list[str]]:
    """Write every input of the plots and report stages under ``root``; return the variants written."""
    root = Path(root)
    variants = dict(variants or DEFAULT_VARIANTS)
    headline: dict = {}
    for v, branches in variants.items():
        nb = len(branches)
        n_exits = nb + 1
        m = root / "reports" / "metrics" / v
        m.mkdir(parents=True, exist_ok=True)
        off = offload_frame(nb, p_step, shape)
        off.to_parquet(m / "offload.parquet", index=False)
        deadline_frame(nb, t_step, shape).to_parquet(m / "deadline.parquet", index=False)
        headline[v] = {}
        for cal, rows in off.groupby("calibration"):
            r = rows.iloc[(rows["p_tar"] - 0.85).abs().argmin()]
            headline[v][cal] = {"acc_device@0.85": float(r["acc_device"]), "p_device@0.85": float(r["p_device"]),
                                "outage@0.85": float(r["outage"])}
        c = root / "reports" / "calibration" / v
        c.mkdir(parents=True, exist_ok=True)
        exits_frame(n_exits).to_parquet(c / "seed0_exits.parquet", index=False)
        reliability_frame(n_exits).to_parquet(c / "seed0_reliability.parquet", index=False)
        t = root / "reports" / "training" / v
        t.mkdir(parents=True, exist_ok=True)
        training_frame(n_exits).to_csv(t / "seed0.csv", index=False)
        p = root / "data" / "profile"
        p.mkdir(parents=True, exist_ok=True)
        profile, layers = profile_files(branches)
        exit_ms = LatencyProfile(device_ms_to_exit=[float(profile["device_ms_to_exit"][str(k)]) for k in range(1, n_exits)],
                                 offload_edge_ms=float(profile["offload_edge_ms"]),
                                 upload_bytes=float(profile["upload_bytes"]),
                                 cloud_ms=float(profile["cloud_ms"])).exit_ms(18.8, 0.0)
        (m / "latency.json").write_text(json.dumps({"uplink_mbps": 18.8, "rtt_ms": 0.0, "exit_ms": {
            str(k): float(x) for k, x in enumerate(exit_ms, start=1)}}))
        (p / f"{v}.json").write_text(json.dumps(profile, indent=2))
        layers.to_parquet(p / f"{v}_layers.parquet", index=False)
    (root / "reports" / "metrics.json").write_text(json.dumps(headline, indent=2))
    trajectory_frames(variants, root / "reports" / "trajectory")
    timings = root / "reports" / "timings"
    timings.mkdir(parents=True, exist_ok=True)
    stages = [("prepare", None, 12.5), ("evaluate", None, 30.25)]
    for v in variants:
        stages += [("train", f"{v}-0", 600.0), ("logits", f"{v}-0", 20.0), ("calibrate", f"{v}-0", 2.0),
                   ("profile", v, 15.0)]
    for stage, v, s in stages:
        name = stage if v is None else f"{stage}@{v}"
        (timings / f"{name}.json").write_text(json.dumps({"stage": stage, "variant": v, "seconds": s}))
    return {k: list(b) for k, b in variants.items()}


def make_project(dest: str | Path, variants: Mapping[str, Sequence[str]] | None = None, **kwargs) -> Path:
    """``dest`` with the repo's params.yaml (its variants replaced by ``variants`` if given) and the
    synthetic inputs for those variants; ``kwargs`` go to :func:`write_synthetic_inputs`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    if variants is not None:
        params["variants"] = {v: {"branches": list(b), "exit_weights": [1.0] * (len(b) + 1)}
                              for v, b in variants.items()}
    params["train"]["seeds"] = [0]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_synthetic_inputs(dest, {v: s["branches"] for v, s in params["variants"].items()}, **kwargs)
    return dest


def run_stage(cwd: str | Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline <name>`` in ``cwd`` with this repository's code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "pipeline", name, *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)
