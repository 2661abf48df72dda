"""The recipe search's rule, fixed before the search ran (configs/recipes/search.yaml).

A candidate recipe trains one network; its per-epoch history (the train stage's CSV: each exit's
validation accuracy and fitted temperature, the final exit's validation NLL) is all the rule reads.
Each run gives two options: all its epochs, and early stopping judged from its own history
(:func:`early_stopping_epochs`: the same run up to the stop, with the best epoch's weights kept).
:func:`choose_recipe` then picks one option by the rule written in search.yaml. Pure functions
over tables; no paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd


def early_stopping_epochs(nll: Sequence[float], patience: int) -> tuple[int, int]:
    """(best epoch, last epoch run) of early stopping with ``patience`` over a run's per-epoch
    final-exit validation NLLs (1-based epochs, epoch 1 first), as
    :class:`eeoffload.training.EarlyStopping` decides it during training: stop once ``patience``
    epochs have passed without a new lowest NLL. A run that never stops: (best epoch, last epoch)."""
    best_epoch, best = 0, math.inf
    for epoch, value in enumerate(nll, start=1):
        if value < best:
            best_epoch, best = epoch, value
        if epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(nll)


def run_options(name: str, history: pd.DataFrame, patience: int, epochs: int, deviation: str = "") -> list[dict]:
    """The two options of one candidate's run: ``name`` (its last epoch) and ``name+es`` (early
    stopping's best epoch), each with the final-exit validation accuracy and every side exit's
    temperature at that epoch. ``finished``: the run reached ``epochs`` (or early stopping's stop)."""
    if history.empty:
        return [{"option": name, "candidate": name, "deviation": deviation, "finished": False, "epochs_run": 0}]
    history = history.sort_values("epoch").reset_index(drop=True)
    accs = sorted(c for c in history.columns if c.startswith("val_acc_exit"))
    temps = sorted(c for c in history.columns if c.startswith("val_temperature_exit"))
    final_acc, side_temps = accs[-1], temps[:-1]
    nll_col = "val_nll_final" if "val_nll_final" in history.columns else "val_loss"
    best, stop = early_stopping_epochs(history[nll_col].astype(float).tolist(), patience)
    done = int(history["epoch"].iloc[-1])
    out = []
    for option, epoch, finished in ((name, done, done >= epochs), (f"{name}+es", best, stop < done or done >= epochs)):
        row = history.loc[history["epoch"] == epoch].iloc[0]
        out.append({"option": option, "candidate": name, "deviation": deviation, "finished": bool(finished),
                    "epochs_run": done if option == name else stop, "epoch": int(epoch),
                    "val_acc_final": float(row[final_acc]),
                    "min_side_temperature": float(min(row[c] for c in side_temps)) if side_temps else math.nan,
                    **{c.replace("val_", "val_"): float(row[c]) for c in accs + temps}})
    return out


@dataclass(frozen=True)
class Choice:
    option: str  # e.g. "b32bn_cropflip_sgd+es"
    candidate: str
    early_stopping: bool
    reason: str


def choose_recipe(options: pd.DataFrame, min_side_temperature: float, target_accuracy: float,
                  feasible: Mapping[str, bool] | None = None) -> Choice:
    """The rule of configs/recipes/search.yaml over :func:`run_options` rows (one table). ``feasible``
    maps a candidate to whether its confirmation fits the time left (missing: feasible)."""
    feasible = feasible or {}
    done = options[options["finished"]].copy()
    if done.empty:
        raise ValueError("no candidate run finished: nothing to choose")
    done["feasible"] = [feasible.get(c, True) for c in done["candidate"]]
    eligible = done[(done["min_side_temperature"] >= min_side_temperature) & done["feasible"]]
    faithful = eligible[eligible["deviation"].fillna("") == ""]
    if not faithful.empty and faithful["val_acc_final"].max() >= target_accuracy:
        pick, why = faithful, f"best faithful option, final-exit val accuracy >= {target_accuracy}"
    elif not eligible.empty:
        pick, why = eligible, (f"no faithful option reached {target_accuracy}: best eligible option "
                               "(deviations included)")
    else:
        pick, why = done, f"RULE NOT MET: no finished, feasible option has every side exit T >= {min_side_temperature}"
    row = pick.sort_values(["val_acc_final", "option"], ascending=[False, True]).iloc[0]
    return Choice(str(row["option"]), str(row["candidate"]), str(row["option"]).endswith("+es"),
                  f"{why} (val acc {row['val_acc_final']:.4f}, min side T {row['min_side_temperature']:.2f})")
