"""Stage evaluate: offloading, outage and missed-deadline metrics (paper III, IV-B..IV-E).

    python -m pipeline.evaluate

For every variant in params ``variants``, reads data/logits/<variant>.parquet (test split),
data/calibration/<variant>.json and data/profile/<variant>.json, runs the evaluation protocol
(:func:`eeoffload.evaluation.evaluate_run`: conventional and calibrated decisions) and writes
reports/metrics/<variant>/{offload,deadline}.parquet, reports/metrics/<variant>/latency.json (the
per-exit latency it used: plots and the report read it instead of recomputing) and
reports/metrics.json, plus what DVC compares across experiments (git-tracked, small):
reports/headline.json (the compact metrics file of ``dvc exp show`` / ``dvc metrics diff``, 4
numbers per variant and calibration) and reports/plots/<variant>/<calibration>.csv and
<calibration>_deadline.csv (the curves of the paper's figures, declared as DVC plots in dvc.yaml).
Params: ``network``, ``evaluate``, ``variants`` only. Formulas: docs/metrics.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from eeoffload.evaluation import RunMetrics, evaluate_run
from eeoffload.paper import CALIBRATIONS
from pipeline import params as P
from pipeline.artifacts import evaluation_settings, read_run_inputs
from pipeline.io import atomic_dir, atomic_write_json, read_params, run_stage

#: The compact headline (reports/headline.json): per variant and calibration, these keys of
#: reports/metrics.json (docs/interfaces.md); 16 columns in `dvc exp show` for the two variants.
HEADLINE_KEYS = ("p_device_mean", "acc_device@0.85", "outage@0.875", "min_missed_deadline@0.85")
#: Columns of the per-calibration curve files (reports/plots/), the x axis first.
CURVE_COLUMNS = ("p_tar", "p_device", "conf_device", "acc_device", "acc_total", "outage")


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
    results: dict[str, RunMetrics] = {}
    latency: dict[str, dict] = {}
    for variant, spec in P.variants_params(params).items():
        run = read_run_inputs(variant, spec)
        exit_ms = run.profile.exit_ms(network.uplink_mbps, network.rtt_ms)
        latency[variant] = {"uplink_mbps": network.uplink_mbps, "rtt_ms": network.rtt_ms,
                            "exit_ms": {str(k): float(ms) for k, ms in enumerate(exit_ms, start=1)}}
        results[variant] = evaluate_run(run.test.logits, run.test.labels, run.temperatures, exit_ms, settings)
    # reports/metrics/ is one DVC output folder: built beside it and swapped in whole, so a kill
    # never leaves a temporary or a half-written file inside it.
    with atomic_dir(Path("reports/metrics")) as tmp:
        for variant, result in results.items():
            (tmp / variant).mkdir()
            result.offload.to_parquet(tmp / variant / "offload.parquet", index=False)
            result.deadline.to_parquet(tmp / variant / "deadline.parquet", index=False)
            (tmp / variant / "latency.json").write_text(json.dumps(latency[variant], indent=2) + "\n")
    atomic_write_json(Path("reports/metrics.json"), {v: r.headline for v, r in results.items()})
    atomic_write_json(Path("reports/headline.json"), {v: {c: {k: r.headline[c][k] for k in HEADLINE_KEYS}
                                                          for c in CALIBRATIONS} for v, r in results.items()})
    with atomic_dir(Path("reports/plots")) as tmp:
        for variant, result in results.items():
            write_curves(tmp / variant, result)
    for variant, result in results.items():
        for name, numbers in result.headline.items():
            print(f"{variant} {name}: p_device@0.85={numbers['p_device@0.85']} "
                  f"acc_device@0.85={numbers['acc_device@0.85']} outage@0.85={numbers['outage@0.85']}")


if __name__ == "__main__":
    run_stage("evaluate", main)
