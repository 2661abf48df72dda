"""Stage evaluate: offloading, outage and missed-deadline metrics (paper III, IV-B..IV-E).

    python -m pipeline evaluate

For every variant in params ``variants`` and seed in ``train.seeds``, reads
data/logits/<variant>/seed<k>.parquet (test split), data/calibration/<variant>/seed<k>.json (the fitted
calibrator of each exit, any ``calibration.method``) and
data/profile/<variant>.json, runs the evaluation protocol (:func:`eeoffload.evaluation.evaluate_run`:
conventional and calibrated decisions) per seed, aggregates over the seeds
(:func:`eeoffload.evaluation.aggregate_runs`: means, seed intervals, pooled population intervals) and
writes reports/metrics/<variant>/seed<k>/{offload,deadline}.parquet (per seed),
reports/metrics/<variant>/{offload,deadline}.parquet (the aggregate), reports/metrics/<variant>/latency.json (the
per-exit latency it used: plots and the report read it instead of recomputing) and
reports/metrics.json, plus what DVC compares across experiments (git-tracked, small):
reports/headline.json (the compact metrics file of ``dvc exp show`` / ``dvc metrics diff``, 4
numbers per variant and calibration; ``"undefined"`` where a metric has no value) and
reports/plots/<variant>/<calibration>.csv and <calibration>_deadline.csv (the curves of the paper's figures, declared as DVC plots in dvc.yaml).
Params: ``network``, ``evaluate``, ``variants``, ``train.seeds`` only. Formulas: docs/metrics.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from eeoffload.evaluation import RunMetrics, aggregate_runs, evaluate_run
from eeoffload.paper import CALIBRATIONS
from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.run_inputs import evaluation_settings, read_run_inputs
from pipeline.core.atomic import atomic_dir, atomic_write_json
from pipeline.core.io import read_params

#: The compact headline (reports/headline.json): per variant and calibration, these keys of
#: reports/metrics.json (docs/interfaces.md); 16 columns in `dvc exp show` for the two variants.
HEADLINE_KEYS = ("p_device_mean", "acc_device@0.85", "outage@0.875", "min_missed_deadline@0.85")
#: What reports/headline.json holds for a metric with no value (no sample kept on the device at that
#: p_tar): DVC drops a null from `dvc metrics show` / `dvc exp show` (two runs would look the same),
#: and shows a string as it is.
UNDEFINED = "undefined"
#: Columns of the per-calibration curve files (reports/plots/), the x axis first.
CURVE_COLUMNS = ("p_tar", "p_device", "conf_device", "acc_device", "acc_total", "outage")


def headline_json(headlines: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """reports/headline.json from each variant's headline ({calibration: {key: value}}): the
    HEADLINE_KEYS, an undefined value (None or NaN) as UNDEFINED."""
    def value(v):
        return UNDEFINED if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

    return {variant: {c: {k: value(by_cal[c][k]) for k in HEADLINE_KEYS} for c in CALIBRATIONS}
            for variant, by_cal in headlines.items()}


def write_curves(folder: Path, result: RunMetrics) -> None:
    """One CSV per calibration for the p_tar curves and one for the missed-deadline curves (wide: a
    column per deadline p_tar), so that DVC plots draw conventional and calibrated as two lines."""
    folder.mkdir(parents=True)
    for calibration in CALIBRATIONS:
        offload = result.offload[result.offload["calibration"] == calibration]
        offload.loc[:, list(CURVE_COLUMNS)].round(6).to_csv(folder / f"{calibration}.csv", index=False)
        deadline = result.deadline[result.deadline["calibration"] == calibration]
        wide = deadline.pivot(index="t_tar_ms", columns="p_tar", values="missed_deadline")
        wide.columns = [f"missed_deadline@{p:g}" for p in wide.columns]
        wide.round(6).reset_index().to_csv(folder / f"{calibration}_deadline.csv", index=False)


def main() -> None:
    params = read_params()
    network, settings = P.network_params(params), evaluation_settings(P.evaluate_params(params))
    seeds = P.train_seeds(params)
    per_seed: dict[str, list[RunMetrics]] = {}
    latency: dict[str, dict] = {}
    for variant, spec in P.variants_params(params).items():
        runs = [read_run_inputs(variant, seed, spec) for seed in seeds]
        exit_ms = runs[0].profile.exit_ms(network.uplink_mbps, network.rtt_ms)  # the variant's profile, every seed
        latency[variant] = {"uplink_mbps": network.uplink_mbps, "rtt_ms": network.rtt_ms,
                            "exit_ms": {str(k): float(ms) for k, ms in enumerate(exit_ms, start=1)}}
        per_seed[variant] = [evaluate_run(r.test.logits, r.test.labels, r.calibrators, exit_ms, settings)
                             for r in runs]
    results = {variant: aggregate_runs(runs) for variant, runs in per_seed.items()}
    # reports/metrics/ is one DVC output folder: built beside it and swapped in whole, so a kill
    # never leaves a temporary or a half-written file inside it.
    with atomic_dir(registry.METRICS) as tmp:
        for variant, result in results.items():
            folder = tmp / variant
            folder.mkdir()
            result.offload.to_parquet(folder / "offload.parquet", index=False)
            result.deadline.to_parquet(folder / "deadline.parquet", index=False)
            (folder / "latency.json").write_text(json.dumps(latency[variant], indent=2) + "\n")
            for seed, run_metrics in zip(seeds, per_seed[variant]):
                (folder / f"seed{seed}").mkdir()
                run_metrics.offload.to_parquet(folder / f"seed{seed}" / "offload.parquet", index=False)
                run_metrics.deadline.to_parquet(folder / f"seed{seed}" / "deadline.parquet", index=False)
    atomic_write_json(registry.METRICS_JSON, {v: r.headline for v, r in results.items()})
    atomic_write_json(registry.HEADLINE_JSON, headline_json({v: r.headline for v, r in results.items()}))
    with atomic_dir(registry.CURVES) as tmp:
        for variant, result in results.items():
            write_curves(tmp / variant, result)
    for variant, result in results.items():
        for name, numbers in result.headline.items():
            print(f"{variant} {name} (mean of {len(seeds)} seeds): p_device@0.85={numbers['p_device@0.85']} "
                  f"acc_device@0.85={numbers['acc_device@0.85']} outage@0.85={numbers['outage@0.85']}")
