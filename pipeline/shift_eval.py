"""Stage shift_eval: what breaks under distribution shift, the remedies, and the monitor (docs/shift.md).

``python -m pipeline shift_eval <variant> <seed>``. Reads data/shift/<variant>/seed<k>.parquet
(stage shift) and params section ``shift``, ``certify.thresholds``, ``certify.p_value`` and
``calibration.n_bins``. Per (corruption, severity), on the shifted test images, for the rules of
:mod:`eeoffload.shift` (conventional; temperature fitted on the clean val images; recalibrated on
the shifted val images of the same setting; the temperature of the setting an image-statistics
classifier predicts; certified by LTT on clean val; certified on the setting's val): per-exit
accuracy and ECE, p_device, accuracy on the device, outage at ``shift.p_tar``, the certified rules'
violation rate of ``shift.target_accuracy`` over ``shift.splits`` calibration draws, and the
conformal test martingale on streams of clean then shifted test images (``shift.monitor_*``).
Writes reports/shift/<variant>/seed<k>/ (one folder, swapped atomically): exits, rules, certified,
severity, monitor, monitor_trace (.parquet) and summary.json; columns in docs/shift.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eeoffload import shift as sh
from eeoffload.batches import resample_orders
from eeoffload.corruptions import CLEAN
from eeoffload.severity import STATISTICS, fit_nearest_centroid
from eeoffload.statistics import clopper_pearson_interval
from pipeline.core import registry
from pipeline.core.atomic import atomic_dir
from pipeline.core.io import StageError, read_params, read_parquet_checked
from pipeline.core.params import certify_params, one_key
from pipeline.core.params_shift import ShiftParams, shift_params

LOGIT_COLUMNS = [f"logit_{c}" for c in range(10)]
COLUMNS = {"sample_id": "int64", "split": "str", "label": "int64", "exit": "int64", "corruption": "str",
           "severity": "int64", **{c: "float" for c in LOGIT_COLUMNS}, **{f"stat_{s}": "float" for s in STATISTICS}}
Setting = tuple[str, int]


@dataclass(frozen=True)
class Block:
    """One split under one setting: logits (K, N, C), labels (N,), image statistics (N, F)."""

    logits: np.ndarray
    labels: np.ndarray
    stats: np.ndarray


def read_blocks(path: Path) -> tuple[list[Setting], dict[tuple[str, Setting], Block]]:
    """The settings (clean first) and each (split, setting)'s block; StageError naming the file."""
    frame = read_parquet_checked(path, COLUMNS, "shift")
    blocks: dict[tuple[str, Setting], Block] = {}
    for (split, corruption, severity), g in frame.groupby(["split", "corruption", "severity"], sort=True):
        g = g.sort_values(["exit", "sample_id"], kind="stable")
        n_exits = g["exit"].nunique()
        if n_exits < 2 or len(g) % n_exits:
            raise StageError(f"{path}: {split}/{corruption}/{severity}: needs the same samples at every exit, "
                             f"and at least one side branch")
        first = g[g["exit"] == g["exit"].min()]
        logits = g[LOGIT_COLUMNS].to_numpy(np.float64).reshape(n_exits, len(first), len(LOGIT_COLUMNS))
        blocks[(str(split), (str(corruption), int(severity)))] = Block(
            logits, first["label"].to_numpy(np.int64), first[[f"stat_{s}" for s in STATISTICS]].to_numpy(np.float64))
    settings = sorted({s for _, s in blocks}, key=lambda s: (s != CLEAN, s))
    missing = [f"{split}/{c}/{s}" for split in ("val", "test") for c, s in [CLEAN, *settings] if (split, (c, s)) not in blocks]
    if missing:
        raise StageError(f"{path}: no rows for {', '.join(missing[:3])} (the clean images and every setting, "
                         f"val and test, are needed)")
    return settings, blocks


# --------------------------------------------------------------------------- what breaks, the remedies


def p_tar_tables(settings: list[Setting], blocks: dict, p: ShiftParams, n_bins: int) -> tuple[list, list, list]:
    """Rows of the exits, rules and severity tables (the rules at ``p.p_tar``)."""
    val = {s: blocks[("val", s)] for s in settings}
    temps = {s: sh.fit_temperatures(b.logits, b.labels) for s, b in val.items()}
    classes = np.concatenate([np.full(len(b.labels), i) for i, b in enumerate(val.values())])
    classifier = fit_nearest_centroid(np.concatenate([b.stats for b in val.values()]), classes)
    n_exits = next(iter(val.values())).logits.shape[0]
    exits, rules, severity = [], [], []
    for i, s in enumerate(settings):
        test = blocks[("test", s)]
        order = np.random.default_rng([p.seed, 2]).permutation(len(test.labels))
        orders = resample_orders(len(test.labels), p.resamples, p.seed)
        predicted = classifier.predict(test.stats)
        estimated = np.stack([temps[settings[j]] for j in predicted], axis=1)  # (K, N)
        for rule, t in (("conventional", np.ones(n_exits)), ("calibrated", temps[CLEAN]),
                        ("recalibrated", temps[s]), ("estimated", estimated)):
            conf, ok = sh.exit_confidence(test.logits, test.labels, t)
            key = {"corruption": s[0], "severity": s[1], "rule": rule}
            exits += [{**key, **row} for row in sh.exit_rows(conf, ok, n_bins)]
            rules.append({**key, "p_tar": p.p_tar, **sh.rule_at_p_tar(conf, ok, p.p_tar, order, p.batch_size, orders)})
        predicted_settings = [settings[j] for j in predicted]
        severity.append({"corruption": s[0], "severity": s[1], "n": len(predicted),
                         "setting_accuracy": float(np.mean(predicted == i)),
                         "corruption_accuracy": float(np.mean([q[0] == s[0] for q in predicted_settings])),
                         "mean_abs_severity_error": float(np.mean([abs(q[1] - s[1]) for q in predicted_settings]))})
    return exits, rules, severity


def certified_table(settings: list[Setting], blocks: dict, p: ShiftParams, grid: np.ndarray, p_value: str) -> pd.DataFrame:
    """Per setting and certified rule: violations of the target over ``p.splits`` calibration draws
    (Clopper-Pearson 95%), and the mean threshold, p_device, accuracy on device and batch outage."""
    rows = []
    n_val = len(blocks[("val", CLEAN)].labels)
    n_fit = int(round(p.fit_fraction * n_val))
    if not 0 < n_fit < n_val:
        raise StageError(f"params.yaml: shift.fit_fraction = {p.fit_fraction}; allowed: a fraction leaving at "
                         f"least one of the {n_val} val images to fit and one to certify")
    perms = [np.random.default_rng([p.seed, 3, r]).permutation(n_val) for r in range(p.splits)]

    def certify(block: Block) -> list[sh.CertifiedRule]:
        return [sh.certify_rule(block.logits, block.labels, perm, n_fit, grid, p.target_accuracy, p.delta,
                                "fixed_sequence", p_value) for perm in perms]

    clean_rules = certify(blocks[("val", CLEAN)])
    for s in settings:
        test = blocks[("test", s)]
        order = np.random.default_rng([p.seed, 2]).permutation(len(test.labels))
        for rule, certified in (("certified", clean_rules),
                                ("certified_recalibrated", clean_rules if s == CLEAN else certify(blocks[("val", s)]))):
            out = pd.DataFrame([sh.certified_outcome(c, test.logits, test.labels, p.target_accuracy, order, p.batch_size)
                                for c in certified])
            rows.append({"corruption": s[0], "severity": s[1], "rule": rule, "target": p.target_accuracy,
                         "delta": p.delta, "splits": p.splits, "violations": int(out["violated"].sum()),
                         "certified_rate": float(out["threshold"].notna().mean()),
                         "mean_threshold": float(out["threshold"].mean()), "mean_p_device": float(out["p_device"].mean()),
                         "mean_acc_device": float(out["acc_device"].mean()), "mean_outage": float(out["outage"].mean())})
    table = pd.DataFrame(rows)
    table["violation_rate"] = table["violations"] / table["splits"]
    table["violation_low"], table["violation_high"] = clopper_pearson_interval(table["violations"].to_numpy(),
                                                                               table["splits"].to_numpy())
    return table


# --------------------------------------------------------------------------- the monitor


def monitor_tables(settings: list[Setting], blocks: dict, p: ShiftParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Streams of test images, clean then (from the middle) under one setting, decided by the rule
    calibrated on one half of the clean val images and watched by the conformal test martingale with
    the other half as its clean reference; the clean setting gives the streams with no shift."""
    val = blocks[("val", CLEAN)]
    half = np.random.default_rng([p.seed, 4]).permutation(len(val.labels))
    fit, ref = half[: len(half) // 2], half[len(half) // 2:]
    temps = sh.fit_temperatures(val.logits[:, fit], val.labels[fit])
    reference = 1.0 - sh.exit_confidence(val.logits[:, ref], val.labels[ref], temps)[0][0]
    clean = blocks[("test", CLEAN)]
    c_conf, c_ok = sh.exit_confidence(clean.logits, clean.labels, temps)
    rows, trace = [], []
    for i, s in enumerate(settings):
        conf, ok = sh.exit_confidence(blocks[("test", s)].logits, blocks[("test", s)].labels, temps)
        n = conf.shape[1]
        start = n if s == CLEAN else n // 2
        for r in range(p.monitor_streams):
            perm = np.random.default_rng([p.seed, 5, r]).permutation(n)
            stream_conf = np.concatenate([c_conf[:, perm[:start]], conf[:, perm[start:]]], axis=1)
            stream_ok = np.concatenate([c_ok[:, perm[:start]], ok[:, perm[start:]]], axis=1)
            on, right = sh.device_decisions(stream_conf, stream_ok, p.p_tar)
            row, m = sh.stream_run(reference, 1.0 - stream_conf[0], on, right, start, p.p_tar, p.batch_size,
                                   p.monitor_alpha, [p.seed, 6, i, r], p.monitor_jump)
            rows.append({"corruption": s[0], "severity": s[1], "stream": r, "shift_start": start, "length": n, **row})
            if r == 0:
                trace.append(pd.DataFrame({"corruption": s[0], "severity": np.int64(s[1]), "position": np.arange(n),
                                           "shifted": np.arange(n) >= start, "p_value": m.p_values,
                                           "martingale": m.martingale}))
    return pd.DataFrame(rows), pd.concat(trace, ignore_index=True)


def monitor_summary(monitor: pd.DataFrame, p: ShiftParams) -> dict[str, Any]:
    clean = monitor[(monitor["corruption"] == CLEAN[0])]
    low, high = clopper_pearson_interval(np.array([int(clean["false_alarm"].sum())]), np.array([len(clean)]))
    per = {}
    for (c, s), g in monitor[monitor["corruption"] != CLEAN[0]].groupby(["corruption", "severity"]):
        per[f"{c}/{s}"] = {"detected": float(g["delay"].notna().mean()),
                           "median_delay": _num(g["delay"].median()),
                           "false_alarm_before_shift": float(g["false_alarm"].mean()),
                           "outage_share": _num(g["outage_share"].mean()),
                           "outage_share_monitored": _num(g["outage_share_monitored"].mean()),
                           "p_device": _num(g["p_device"].mean()), "p_device_monitored": _num(g["p_device_monitored"].mean())}
    return {"alpha": p.monitor_alpha, "jump": p.monitor_jump, "streams": p.monitor_streams,
            "clean_false_alarm_rate": float(clean["false_alarm"].mean()),
            "clean_false_alarm_interval": [float(low[0]), float(high[0])], "shifted": per}


# --------------------------------------------------------------------------- stage


def _num(x: Any) -> float | None:
    return round(float(x), 5) if x is not None and np.isfinite(x) else None


def headline(rules: pd.DataFrame, exits: pd.DataFrame, certified: pd.DataFrame) -> list[dict[str, Any]]:
    """The README's table: per setting, the final exit's and first exit's accuracy, the first exit's
    ECE before / after temperature scaling (clean val) / recalibrated, the outage at p_tar per rule
    (mean over the re-batchings), the certified rules' violation rates."""
    rows = []
    for (c, s), g in rules.groupby(["corruption", "severity"], sort=False):
        e = exits[(exits["corruption"] == c) & (exits["severity"] == s)]
        first, last = e["exit"].min(), e["exit"].max()
        ece = e[e["exit"] == first].set_index("rule")["ece"]
        acc = e[(e["rule"] == "conventional")].set_index("exit")["accuracy"]
        cert = certified[(certified["corruption"] == c) & (certified["severity"] == s)].set_index("rule")
        rows.append({"corruption": c, "severity": int(s), "acc_exit1": _num(acc[first]), "acc_final": _num(acc[last]),
                     **{f"ece_exit1_{r}": _num(ece[r]) for r in ece.index},
                     **{f"outage_{r.rule}": _num(r.outage_resampled) for r in g.itertuples()},
                     **{f"p_device_{r.rule}": _num(r.p_device) for r in g.itertuples()},
                     **{f"violation_{r}": _num(cert.loc[r, "violation_rate"]) for r in cert.index}})
    return rows


def main(variant: str, seed: int) -> None:
    start = time.perf_counter()
    params = read_params()
    p = shift_params(params, check_seeds=False)  # validate checks shift.seeds against train.seeds
    if seed not in p.seeds:
        raise StageError(f"params.yaml: shift.seeds = {list(p.seeds)}; seed {seed} is not among them")
    cert = certify_params(params)
    n_bins = one_key(params, "calibration", "n_bins")
    settings, blocks = read_blocks(registry.shift_logits_path(variant, seed))
    exits, rules, severity = (pd.DataFrame(t) for t in p_tar_tables(settings, blocks, p, n_bins))
    certified = certified_table(settings, blocks, p, cert.thresholds, cert.p_value)
    monitor, trace = monitor_tables(settings, blocks, p)
    summary = {"variant": variant, "seed": seed, "p_tar": p.p_tar, "target_accuracy": p.target_accuracy,
               "delta": p.delta, "n_val": len(blocks[("val", CLEAN)].labels),
               "n_test": len(blocks[("test", CLEAN)].labels), "table": headline(rules, exits, certified),
               "monitor": monitor_summary(monitor, p), "seconds": round(time.perf_counter() - start, 2)}
    tables = {"exits": exits, "rules": rules, "certified": certified, "severity": severity, "monitor": monitor,
              "monitor_trace": trace}
    with atomic_dir(registry.shift_dir(variant, seed)) as tmp:
        for name, table in tables.items():
            table.astype({"severity": np.int64}).to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for row in summary["table"]:
        print(f"{variant}/seed{seed} {row['corruption']:>16} {row['severity']}: acc final {row['acc_final']}, outage "
              f"conventional {row.get('outage_conventional')} calibrated {row.get('outage_calibrated')}, violation "
              f"certified {row.get('violation_certified')}", flush=True)

