"""Is a cheaper way of training equivalent? The fp32/bf16 rule of the training-precision issue, fixed
before the study ran: a bf16 value is accepted when it lies within the fp32 seeds' range widened by
its own half-width, [min - (max - min)/2, max + (max - min)/2]; bf16 is accepted as a default when
every compared quantity of every bf16 seed is. Pure functions over per-run summaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from eeoffload import calibrators as cb
from eeoffload.calibration import ExitLogits, calibration_tables, fit_calibrators
from eeoffload.offload import device_metrics


def widened_range(reference: Sequence[float]) -> tuple[float, float]:
    """The reference seeds' [min, max] widened by half its width on each side."""
    values = np.asarray(reference, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    half = (hi - lo) / 2
    return lo - half, hi + half


def run_summary(val: ExitLogits, test: ExitLogits, p_tar: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """What the study compares for one trained network: per exit k the test accuracy (``acc_exit<k>``),
    the temperature fitted on val (``T_exit<k>``), the test ECE before and after scaling
    (``ece_before_exit<k>``, ``ece_after_exit<k>``), and the mean over ``p_tar`` of p_device,
    conventional and calibrated (``p_device_mean_conventional``, ``p_device_mean_calibrated``)."""
    calibrators = fit_calibrators(val, "temperature", n_bins)
    exits, _ = calibration_tables(test, calibrators, n_bins)
    out: dict[str, float] = {}
    for row in exits.itertuples():
        if row.calibration == "conventional":
            out[f"acc_exit{row.exit}"] = float(row.accuracy)
            out[f"ece_before_exit{row.exit}"] = float(row.ece)
        else:
            out[f"T_exit{row.exit}"] = float(row.temperature)
            out[f"ece_after_exit{row.exit}"] = float(row.ece)
    for name, cals in (("conventional", [cb.Identity() for _ in calibrators]), ("calibrated", calibrators)):
        conf, correct = cb.exit_top_labels(cals, test.logits, test.labels)
        out[f"p_device_mean_{name}"] = float(np.mean(device_metrics(conf, correct, p_tar)["p_device"]))
    return out


def equivalence_table(summaries: pd.DataFrame, reference: str = "fp32", candidate: str = "bf16") -> pd.DataFrame:
    """One row per compared quantity: the reference seeds' values and widened range, the candidate's
    values, and whether each candidate value lies within (``accepted``). ``summaries``: one row per
    run with a ``precision`` column and :func:`run_summary`'s keys."""
    rows: list[dict] = []
    for key in [c for c in summaries.columns if c not in ("precision", "seed")]:
        ref = summaries.loc[summaries["precision"] == reference, key].dropna().tolist()
        cand = summaries.loc[summaries["precision"] == candidate, key].dropna().tolist()
        if len(ref) < 2 or not cand:
            rows.append({"quantity": key, "reference": ref, "candidate": cand, "lo": np.nan, "hi": np.nan,
                         "accepted": None})
            continue
        lo, hi = widened_range(ref)
        rows.append({"quantity": key, "reference": ref, "candidate": cand, "lo": lo, "hi": hi,
                     "accepted": all(lo <= float(v) <= hi for v in cand)})
    return pd.DataFrame(rows)
