"""The recipe search's rule (eeoffload.recipe_search, configs/recipes/search.yaml): early stopping
judged from a run's history, the two options of a run, and the choice, on hand-made histories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from eeoffload.recipe_search import choose_recipe, early_stopping_epochs, run_options
from pipeline.core.overlay import merge
from pipeline.core.params import validate_params

ROOT = Path(__file__).resolve().parent.parent


def _history(acc: list[float], temp: list[float], nll: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(acc) + 1), "val_acc_exit1": [a - 0.1 for a in acc],
                         "val_acc_exit2": acc, "val_temperature_exit1": temp,
                         "val_temperature_exit2": [1.0] * len(acc), "val_nll_final": nll})


def test_early_stopping_epochs() -> None:
    assert early_stopping_epochs([1.0, 0.9, 0.95, 0.96], 2) == (2, 4)
    assert early_stopping_epochs([1.0, 0.9, 0.8], 5) == (3, 3)
    assert early_stopping_epochs([], 5) == (0, 0)


def test_run_options_read_the_best_and_the_last_epoch() -> None:
    h = _history([0.5, 0.6, 0.7, 0.65], [1.1, 1.2, 1.3, 1.5], [1.0, 0.8, 0.7, 0.9])
    full, es = run_options("a", h, patience=1, epochs=4)
    assert (full["option"], full["epoch"], full["val_acc_final"], full["min_side_temperature"]) == ("a", 4, 0.65, 1.5)
    assert (es["option"], es["epoch"], es["val_acc_final"], es["epochs_run"]) == ("a+es", 3, 0.7, 4)
    assert full["finished"] and es["finished"]
    cut = run_options("b", h.iloc[:2], patience=5, epochs=4)
    assert not cut[0]["finished"] and not cut[1]["finished"]  # cut by the deadline before either ends
    assert run_options("c", pd.DataFrame(), 5, 4)[0]["finished"] is False


def _options(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"option": o, "candidate": o.removesuffix("+es"), "deviation": d, "finished": True,
                          "val_acc_final": a, "min_side_temperature": t} for o, d, a, t in rows])


def test_the_rule_prefers_a_faithful_recipe_that_reaches_the_target() -> None:
    table = _options([("f1", "", 0.86, 1.3), ("f2", "", 0.90, 1.1), ("d1", "bn", 0.92, 1.5)])
    c = choose_recipe(table, 1.2, 0.85)
    assert c.option == "f1" and "faithful" in c.reason  # f2 is more accurate but calibrated; d1 a deviation


def test_the_rule_turns_to_deviations_below_the_target() -> None:
    table = _options([("f1", "", 0.80, 1.3), ("d1+es", "bn", 0.88, 1.25), ("d2", "bn", 0.89, 1.1)])
    c = choose_recipe(table, 1.2, 0.85)
    assert (c.option, c.candidate, c.early_stopping) == ("d1+es", "d1", True)
    assert choose_recipe(table, 1.2, 0.85, feasible={"d1": False}).option == "f1"


def test_the_rule_says_when_it_is_not_met() -> None:
    c = choose_recipe(_options([("f1", "", 0.80, 1.0), ("f2", "", 0.82, 1.1)]), 1.2, 0.85)
    assert c.option == "f2" and c.reason.startswith("RULE NOT MET")
    with pytest.raises(ValueError, match="no candidate run finished"):
        choose_recipe(_options([("f1", "", 0.8, 1.3)]).assign(finished=False), 1.2, 0.85)


def test_every_candidate_of_the_search_is_a_valid_recipe() -> None:
    from benchmarks.recipe_gpu import candidate_overlay, confirm_overlay, load_search

    search = load_search()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert search["rule"]["min_side_temperature"] == 1.2 and search["rule"]["target_accuracy"] == 0.85
    for name in search["candidates"]:
        p = validate_params(merge(base, candidate_overlay(search, name, 30, {})))
        assert p.train.joint_epochs == 30 and p.train.trunk_epochs == 0 and p.train.batch_size == 128
        c = validate_params(merge(base, confirm_overlay(search, name, True, [0, 1, 2, 3, 4], 30, {})))
        assert c.train.seeds == (0, 1, 2, 3, 4) and c.train.early_stopping_patience == search["rule"]["patience"]
    deviations = {n for n, c in search["candidates"].items() if c.get("deviation")}
    assert deviations and all(search["candidates"][n].get("model", {}).get("batch_norm") or
                              search["candidates"][n].get("model", {}).get("width", 1) > 1 for n in deviations)


def test_the_precision_rule() -> None:
    from eeoffload.equivalence import equivalence_table, widened_range

    assert widened_range([0.70, 0.74, 0.72]) == pytest.approx((0.68, 0.76))
    runs = pd.DataFrame({"precision": ["fp32"] * 3 + ["bf16"] * 3, "seed": [0, 1, 2] * 2,
                         "acc_exit1": [0.70, 0.74, 0.72, 0.69, 0.75, 0.71],
                         "T_exit1": [1.3, 1.4, 1.35, 1.2, 1.3, 1.3]})
    table = equivalence_table(runs).set_index("quantity")
    assert bool(table.loc["acc_exit1", "accepted"])  # 0.69 and 0.75 lie within [0.68, 0.76]
    assert not bool(table.loc["T_exit1", "accepted"])  # 1.2 lies below [1.25, 1.45]
    one = equivalence_table(runs[runs["seed"] == 0]).set_index("quantity")
    assert one.loc["acc_exit1", "accepted"] is None  # one fp32 seed has no range
