"""The params schema (pipeline.core.params): one rule per case, pure functions on dicts (fast)."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.core import params as P
from pipeline.core.io import StageError
from pipeline.core.overlay import load_overlay, merge
from pipeline.tools.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def changed(path: str, value: Any) -> dict[str, Any]:
    """A copy of params.yaml with the dotted key ``path`` set to ``value`` (DELETE removes it)."""
    params = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return params


DELETE = object()


def changed_in(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``params`` with one leaf replaced (like :func:`changed`, on any params)."""
    out = copy.deepcopy(params)
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


def error(fn: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> str:
    with pytest.raises(StageError) as info:
        fn(params)
    message = str(info.value)
    assert "\n" not in message
    return message


def variant(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda params: P.variant_params(params, name)


# (dotted key, bad value, the section's check, text the one-line error must contain)
CASES = [
    # data
    ("data.n_train", "45k", P.data_params, "data.n_train = '45k'; allowed: an integer >= 1"),
    ("data.n_train", 0, P.data_params, "data.n_train = 0; allowed: an integer >= 1"),
    ("data.n_train", True, P.data_params, "data.n_train = True"),
    ("data.n_train", 50_001, P.data_params, "data.n_train = 50001; allowed: an integer in 1..50000"),
    ("data.n_test", 7_001, P.data_params, "data.n_val + data.n_test = 10001; allowed: a sum of at most 10000"),
    ("data.n_val", DELETE, P.data_params, "data.n_val is missing"),
    ("data.seed", -1, P.data_params, "data.seed = -1; allowed: an integer >= 0"),
    ("data.archive", 5, P.data_params, "data.archive = 5; allowed: a path string"),
    ("data.n_trian", 5, P.data_params, "data.n_trian is not a known key; allowed: archive, seed"),
    # variants
    ("variants.one_branch.branches", ["relu9"], variant("one_branch"), "variants.one_branch.branches"),
    ("variants.one_branch.branches", ["relu2", "relu1"], variant("one_branch"), "list them in trunk order"),
    ("variants.one_branch.branches", ["relu1", "relu1"], variant("one_branch"), "duplicate"),
    ("variants.one_branch.branches", [], variant("one_branch"), "no side branch"),
    ("variants.one_branch.branches", "relu1", variant("one_branch"), "variants.one_branch.branches = 'relu1'"),
    ("variants.one_branch.exit_weights", [1.0], variant("one_branch"),
     "variants.one_branch.exit_weights = [1.0]; allowed: 2 numbers > 0"),
    ("variants.one_branch.exit_weights", [1.0, 0], variant("one_branch"), "allowed: 2 numbers > 0"),
    ("variants.one_branch.weights", [1.0, 0.3], variant("one_branch"), "variants.one_branch.weights is not a known key"),
    ("variants.a/b", {"branches": ["relu1"], "exit_weights": [1, 1]}, P.variant_names, "variants = 'a/b'"),
    ("variants", {}, P.variant_names, "variants is empty"),
    # train
    ("train.device", "gpu", P.train_params, "train.device = 'gpu'; allowed: auto | cpu | cuda"),
    ("train.batch_size", 0, P.train_params, "train.batch_size = 0; allowed: an integer >= 1"),
    ("train.batch_size", -512, P.train_params, "train.batch_size = -512"),
    ("train.batch_size", 51.2, P.train_params, "train.batch_size = 51.2"),
    ("train.lr", "1e-3", P.train_params, "train.lr = '1e-3'; allowed: a number > 0"),  # YAML 1.1 reads 1e-3 as str
    ("train.lr", 0.0, P.train_params, "train.lr = 0.0; allowed: a number > 0"),
    ("train.lr", float("nan"), P.train_params, "train.lr = nan"),
    ("train.weight_decay", -0.1, P.train_params, "train.weight_decay = -0.1; allowed: a number >= 0"),
    ("train.augment", "yes", P.train_params, "train.augment = 'yes'; allowed: none | crop_flip | authors"),
    ("train.optimizer", "rmsprop", P.train_params, "train.optimizer = 'rmsprop'; allowed: adam | sgd"),
    ("train.schedule", "step", P.train_params, "train.schedule = 'step'; allowed: constant | cosine"),
    ("train.precision", "fp16", P.train_params, "train.precision = 'fp16'; allowed: fp32 | bf16"),
    ("train.momentum", 1.0, P.train_params, "train.momentum = 1.0; allowed: a number in [0, 1)"),
    ("train.momentum", -0.5, P.train_params, "train.momentum = -0.5; allowed: a number >= 0"),
    ("train.nesterov", True, P.train_params, "train.nesterov = True; allowed: false unless train.optimizer = sgd"),
    ("train.nesterov", "yes", P.train_params, "train.nesterov = 'yes'; allowed: true | false"),
    ("train.early_stopping_patience", -1, P.train_params,
     "train.early_stopping_patience = -1; allowed: an integer >= 0"),
    # model
    ("model.arch", "resnet18", P.model_spec, "model.arch = 'resnet18'; allowed: balexnet32 | alexnet224"),
    ("model.head", "big", P.model_spec, "model.head = 'big'; allowed: ours | branchynet_b1"),
    ("model.width", 0, P.model_spec, "model.width = 0; allowed: an integer >= 1"),
    ("model.batch_norm", "no", P.model_spec, "model.batch_norm = 'no'; allowed: true | false"),
    ("model.init_weights", "w.pth", P.model_spec, "model.init_weights = 'w.pth'; allowed: \"\" with model.arch"),
    ("model.depth", 3, P.model_spec, "model.depth is not a known key; allowed: arch, head"),
    ("train.trunk_epochs", -1, P.train_params, "train.trunk_epochs = -1"),
    ("train.num_threads", -1, P.train_params, "train.num_threads = -1; allowed: an integer >= 0"),
    ("train.seeds", "0", P.train_params, "train.seeds = '0'"),
    ("train.seeds", [], P.train_params, "train.seeds = []"),
    ("train.seeds", [0, 0], P.train_params, "train.seeds = [0, 0]"),
    ("train.seeds", [-1], P.train_params, "train.seeds = [-1]"),
    ("train.epochs", 3, P.train_params, "train.epochs is not a known key"),
    # latency
    ("latency.repeats", 0, P.latency_params, "latency.repeats = 0; allowed: an integer >= 1"),
    ("latency.warmup", -1, P.latency_params, "latency.warmup = -1; allowed: an integer >= 0"),
    ("latency.edge_threads", 0, P.latency_params, "latency.edge_threads = 0"),
    ("latency.edge_slowdown", 0, P.latency_params, "latency.edge_slowdown = 0; allowed: a number > 0"),
    ("latency.cloud_speedup", True, P.latency_params, "latency.cloud_speedup = True"),
    ("latency.bytes_per_element", 3, P.latency_params, "latency.bytes_per_element = 3; allowed: 1 | 2 | 4 | 8"),
    ("latency.cloud_device", "tpu", P.latency_params, "latency.cloud_device = 'tpu'; allowed: auto | cpu | cuda"),
    ("latency.edge_profile", 3, P.latency_params, "latency.edge_profile = 3"),
    ("latency.repeat", 5, P.latency_params, "latency.repeat is not a known key"),
    ("latency.repeats", DELETE, P.latency_params, "latency.repeats is missing"),
    # calibration
    ("calibration.method", "platt", P.calibration_params,
     "calibration.method = 'platt'; allowed: none | temperature | global_temperature | vector_scaling | "
     "histogram_binning | isotonic | scaling_binning"),
    ("calibration.method", "per_exit", P.calibration_params,
     "calibration.method = 'per_exit'; allowed: none | temperature | global_temperature | vector_scaling | "
     "histogram_binning | isotonic | scaling_binning ('per_exit' is now 'temperature')"),
    ("calibration.method", "global", P.calibration_params, "('global' is now 'global_temperature')"),
    ("calibration.n_bins", 0, P.calibration_params, "calibration.n_bins = 0; allowed: an integer >= 1"),
    # network
    ("network.uplink_mbps", 0, P.network_params, "network.uplink_mbps = 0; allowed: a number > 0"),
    ("network.uplink_mbps", -18.8, P.network_params, "network.uplink_mbps = -18.8"),
    ("network.uplink_mbps", "18.8 Mbps", P.network_params, "network.uplink_mbps = '18.8 Mbps'"),
    ("network.uplink_mbps", float("inf"), P.network_params, "network.uplink_mbps = inf"),
    ("network.rtt_ms", -1.0, P.network_params, "network.rtt_ms = -1.0; allowed: a number >= 0"),
    ("network.rtt_ms", None, P.network_params, "network.rtt_ms = None"),
    # evaluate
    ("evaluate.p_tar", {"start": 0.0, "stop": 0.99, "step": 0.01}, P.evaluate_params,
     "evaluate.p_tar = {'start': 0.0, 'stop': 0.99, 'step': 0.01}; allowed: values in (0, 1)"),
    ("evaluate.p_tar", {"start": 0.5, "stop": 1.0, "step": 0.01}, P.evaluate_params, "allowed: values in (0, 1)"),
    ("evaluate.p_tar", {"start": 0.5, "stop": 0.9, "step": 0}, P.evaluate_params, "step > 0 and stop >= start"),
    ("evaluate.p_tar", {"start": 0.9, "stop": 0.5, "step": 0.1}, P.evaluate_params, "step > 0 and stop >= start"),
    ("evaluate.p_tar", {"start": 0.5, "stop": 0.9}, P.evaluate_params, "a mapping of numbers start, stop, step"),
    ("evaluate.p_tar", {"start": 0.5, "stop": 0.9, "step": 1e-9}, P.evaluate_params, "at most 100000 points"),
    ("evaluate.deadline_p_tar", [0.75, 1.2], P.evaluate_params,
     "evaluate.deadline_p_tar = [0.75, 1.2]; allowed: values in (0, 1)"),
    ("evaluate.deadline_p_tar", 0.75, P.evaluate_params, "evaluate.deadline_p_tar = 0.75"),
    ("evaluate.t_tar_ms", {"start": -1.0, "stop": 10.0, "step": 0.5}, P.evaluate_params,
     "evaluate.t_tar_ms.start = -1.0; allowed: a number >= 0"),
    ("evaluate.batch_size", 0, P.evaluate_params, "evaluate.batch_size = 0; allowed: an integer >= 1"),
    ("evaluate.batch_order", "random", P.evaluate_params, "evaluate.batch_order = 'random'; allowed: sample_id | shuffled"),
    ("evaluate.resamples", 0, P.evaluate_params, "evaluate.resamples = 0"),
    ("evaluate.seed", -3, P.evaluate_params, "evaluate.seed = -3"),
    ("evaluate.p_tr", 0.5, P.evaluate_params, "evaluate.p_tr is not a known key"),
]


@pytest.mark.parametrize(("key", "value", "check", "needle"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_bad_value_names_key_and_allowed(key: str, value: Any, check: Callable, needle: str) -> None:
    message = error(check, changed(key, value))
    assert message.startswith(("params.yaml: ", "unknown variant")), message
    assert needle in message, message
    # the whole-file check finds the same problem
    assert needle in error(P.validate_params, changed(key, value))


def test_unknown_branch_lists_the_allowed_names() -> None:
    message = error(variant("one_branch"), changed("variants.one_branch.branches", ["relu9"]))
    assert "relu9" in message and "relu1" in message and "pool5" in message


def test_unknown_variant_lists_the_variants() -> None:
    message = error(variant("three_branch"), BASE)
    assert message == "unknown variant 'three_branch'; allowed: one_branch, two_branch"


def test_missing_section() -> None:
    params = copy.deepcopy(BASE)
    del params["network"]
    assert error(P.network_params, params) == "params.yaml: section 'network' is missing or not a mapping"


def test_batch_size_larger_than_test_split() -> None:
    message = error(P.validate_params, changed("evaluate.batch_size", 7001))
    assert "evaluate.batch_size = 7001; allowed: an integer in 1..data.n_test = 7000" in message


def test_the_repo_params_and_overlays_are_valid() -> None:
    p = P.validate_params(BASE)
    assert list(p.variants) == ["one_branch", "two_branch"]
    assert p.variants["two_branch"].branches == ["relu1", "relu2"]
    assert p.network.uplink_mbps == 18.8 and p.train.batch_size == 512
    assert 0.85 in p.evaluate.p_tar.tolist() and p.evaluate.t_tar_ms[-1] == 150.0
    for overlay in sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "recipes").glob("*.yaml")):
        if overlay.name != "search.yaml":  # the search's candidates: tests/test_recipe_search.py
            P.validate_params(merge(BASE, load_overlay(overlay)))


def test_the_branchynet_recipe_is_params_yaml_as_it_is() -> None:
    """configs/recipes/branchynet.yaml changes nothing: results/paper/ was made with params.yaml."""
    assert merge(BASE, load_overlay(ROOT / "configs" / "recipes" / "branchynet.yaml")) == BASE


def test_older_params_files_keep_their_meaning() -> None:
    """A params file from before the recipes (no model section, no optimiser keys, augment as a
    boolean) validates to today's recipe: results bundles keep their params.yaml."""
    old = copy.deepcopy(BASE)
    del old["model"]
    for key in P.TRAIN_OPTIONAL:
        old["train"].pop(key, None)
    old["train"]["augment"] = False
    assert P.validate_params(old).train == P.validate_params(BASE).train
    assert P.model_spec(old) == P.model_spec(BASE)
    old["train"]["augment"] = True
    assert P.train_params(old).augment == "crop_flip"


def test_branches_are_checked_against_the_architecture() -> None:
    alex = changed("model.arch", "alexnet224")
    assert P.variant_params(changed_in(alex, "variants.one_branch.branches", ["pool1"]), "one_branch").branches == ["pool1"]
    message = error(variant("one_branch"), changed_in(alex, "variants.one_branch.branches", ["lrn1"]))
    assert "lrn1" in message and "pool1" in message


def test_ints_accepted_where_numbers_are_and_returned_as_float() -> None:
    p = P.network_params(changed("network.uplink_mbps", 20))
    assert p.uplink_mbps == 20.0 and isinstance(p.uplink_mbps, float)
    assert P.latency_params(changed("latency.edge_profile", None)).edge_profile == ""


def test_value_grid_includes_stop_without_float_noise() -> None:
    grid = P.value_grid({"start": 0.5, "stop": 0.99, "step": 0.005}, "g")
    assert len(grid) == 99 and grid[-1] == 0.99 and 0.825 in grid.tolist()
    assert np.all(np.diff(grid) > 0)


def test_schema_choices_match_the_library() -> None:
    from eeoffload.offload import BATCH_ORDERS

    assert P.BATCH_ORDERS == BATCH_ORDERS


def test_command_validates_a_params_file(tmp_path: Path) -> None:
    good = subprocess.run([sys.executable, "-m", "pipeline", "check-params", str(ROOT / "params.yaml")], cwd=tmp_path,
                          env=scratch_env(ROOT), text=True, capture_output=True, timeout=120)
    assert good.returncode == 0 and "valid" in good.stdout, good.stderr
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(changed("data.n_train", -1)))
    bad = subprocess.run([sys.executable, "-m", "pipeline", "check-params"], cwd=tmp_path, env=scratch_env(ROOT),
                         text=True, capture_output=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: params.yaml: data.n_train = -1; allowed: an integer >= 1"
    assert not (tmp_path / "reports").exists()  # no timing file for a check


def test_calibration_methods_are_the_librarys_list() -> None:
    """One vocabulary: calibration.method and calibration.methods take the names of
    eeoffload.calibrators.METHODS, imported, not copied."""
    from eeoffload import calibrators

    assert P.CALIBRATION_METHODS is calibrators.METHODS and P.CALIBRATOR_METHODS is calibrators.METHODS
    for method in calibrators.METHODS:
        params = {"calibration": {"method": method, "n_bins": 15}}
        assert P.calibration_params(params).method == method
