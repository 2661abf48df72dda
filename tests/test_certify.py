"""Learn-then-Test certification (eeoffload.certify), cross-checked against MAPIE's risk_control,
its validity on simulated draws with a known accuracy-vs-threshold curve, the params schema and
the certify stage on small synthetic logits. Fast (seconds)."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mapie.risk_control import control_fwer
from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value
from scipy.stats import binom

from eeoffload import calibrators as cb
from eeoffload import certify as ct
from eeoffload import offload
from eeoffload.statistics import clopper_pearson_interval
from pipeline.core import params as P
from pipeline.core.io import StageError
from tests.conftest import run_stage

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
GRID = np.round(np.arange(0.1, 0.9951, 0.005), 10)


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("n_exits", [2, 3, 4])
def test_device_counts_equal_the_plain_loop_and_offload(n_exits: int) -> None:
    rng = np.random.default_rng(n_exits)
    conf = rng.uniform(0.1, 1.0, size=(n_exits, 700))
    correct = rng.uniform(size=(n_exits, 700)) < conf
    n_dev, n_ok = ct.device_counts(conf, correct, GRID)
    ref_dev, ref_ok = ct.device_counts_vectors(conf, correct, ct.threshold_vectors(GRID, n_exits - 1))
    np.testing.assert_array_equal(n_dev, ref_dev)
    np.testing.assert_array_equal(n_ok, ref_ok)
    m = offload.device_metrics(conf, correct, GRID)  # the evaluate stage's decision rule
    np.testing.assert_allclose(n_dev / 700, m["p_device"])
    np.testing.assert_allclose(np.where(n_dev > 0, n_ok / np.maximum(n_dev, 1), np.nan), m["acc_device"])


def test_device_counts_with_confidences_exactly_on_the_grid() -> None:
    """Binning calibrators output a few values, some equal to grid points: conf >= lambda keeps
    the sample on the device (section III's rule), as in the plain loop."""
    rng = np.random.default_rng(11)
    conf = rng.choice(GRID, size=(3, 500))
    correct = rng.uniform(size=(3, 500)) < 0.7
    n_dev, n_ok = ct.device_counts(conf, correct, GRID)
    ref_dev, ref_ok = ct.device_counts_vectors(conf, correct, ct.threshold_vectors(GRID, 2))
    np.testing.assert_array_equal(n_dev, ref_dev)
    np.testing.assert_array_equal(n_ok, ref_ok)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed: shared"):
        ct.threshold_vectors(GRID, 2, "staggered")


# --------------------------------------------------------------------------- against MAPIE


def test_hoeffding_bentkus_p_values_equal_mapie() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(1, 400, 300)
    errors = rng.binomial(n, rng.uniform(0, 0.4, 300))
    for alpha in (0.1, 0.15, 0.25):
        ours = ct.p_values(errors, n, alpha, "hoeffding_bentkus")
        theirs = np.array([compute_hoeffding_bentkus_p_value(np.array([e / m]), int(m), alpha)[0, 0]
                           for e, m in zip(errors, n)])
        # MAPIE takes ceil(n * (errors / n)), one error too many where float rounding lands just
        # above the integer (3 of 300 here); ours uses the count itself, so equal elsewhere, smaller there
        exact = np.ceil(n * (errors / n)) == errors
        assert 0 < (~exact).sum() < 30
        np.testing.assert_allclose(ours[exact], np.minimum(theirs, 1.0)[exact], rtol=1e-9, atol=1e-12)
        assert np.all(ours[~exact] <= theirs[~exact])
        np.testing.assert_allclose(ct.p_values(errors, n, alpha, "binomial"), binom.cdf(errors, n, alpha))
    assert ct.p_values([0], [0], 0.1)[0] == 1.0  # nothing on the device: nothing certified


@pytest.mark.parametrize("procedure,mapie_name", [("fixed_sequence", "fixed_sequence"), ("holm", "bonferroni_holm")])
def test_fwer_procedures_equal_mapie(procedure: str, mapie_name: str) -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = np.sort(rng.uniform(0, 0.2, 40)) * rng.uniform(0.2, 1.5)
        if rng.uniform() < 0.5:
            p = rng.permutation(p)
        ours = np.flatnonzero(ct.fixed_sequence(p, 0.1) if procedure == "fixed_sequence" else ct.holm(p, 0.1))
        np.testing.assert_array_equal(ours, np.sort(control_fwer(p, 0.1, mapie_name)))


def test_certified_index_takes_the_lowest_rejected_threshold() -> None:
    n_dev = np.array([1000, 800, 600, 400, 200])  # grid ascending: more samples at low lambda
    n_ok = np.array([700, 700, 570, 390, 198])  # accuracy 0.70, 0.875, 0.95, 0.975, 0.99
    assert ct.certified_index(n_dev, n_ok, 0.9, 0.1, "fixed_sequence") == 2
    assert ct.certified_index(n_dev, n_ok, 0.9, 0.1, "holm") == 2
    assert ct.certified_index(n_dev, n_ok, 0.999, 0.1, "holm") == -1
    tested = np.array([True, True, True, False, False])
    assert ct.certified_index(n_dev, n_ok, 0.9, 0.1, "fixed_sequence", tested=tested) == 2


def test_fixed_sequence_starts_where_the_fitting_data_predict_success() -> None:
    predicted = np.array([0.9, 0.02, 1e-6, 0.5, 1.0])
    np.testing.assert_array_equal(ct.tested_family(predicted, 0.1, "fixed_sequence"), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ct.tested_family(predicted, 0.1, "holm"), [0, 1, 1, 0, 0])


# --------------------------------------------------------------------------- validity


def true_accuracy(lam: float, powers: tuple[float, ...]) -> float:
    """Accuracy on the device at shared threshold lam for independent U(0, 1) side-branch scores
    with P(correct | s) = s^a_k: exit k is taken with prob lam^(k) (1 - lam), and has accuracy
    (1 - lam^(a+1)) / ((a+1)(1 - lam)) there (section III's rule, integrated in closed form)."""
    hit = sum(lam ** k * (1 - lam ** (a + 1)) / (a + 1) for k, a in enumerate(powers))
    return hit / (1 - lam ** len(powers))


def simulate(powers: tuple[float, ...], n_fit: int, n_ltt: int, rng: np.random.Generator):
    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        s = rng.uniform(size=(len(powers) + 1, n))
        correct = rng.uniform(size=s.shape) < s ** np.array([*powers, 1.0])[:, None]
        return s, correct
    return draw(n_fit), draw(n_ltt)


@pytest.mark.parametrize("powers,target", [
    ((1.0,), 0.85),            # calibrated side branch
    ((4.0,), 0.75),            # badly over-confident: P(correct | conf 0.9) = 0.66
    ((3.0, 6.0), 0.8),         # two side branches, both over-confident
])
@pytest.mark.parametrize("procedure", ["fixed_sequence", "holm"])
def test_ltt_violation_rate_is_at_most_delta(powers: tuple[float, ...], target: float, procedure: str) -> None:
    """500 calibration draws: the certified threshold's TRUE accuracy is below the target in at
    most a delta fraction (within the Clopper-Pearson interval), and a threshold is found."""
    rng = np.random.default_rng(zlib.crc32(repr((powers, target, procedure)).encode()))
    delta, draws, violations, certified = 0.1, 500, 0, 0
    truth = np.array([true_accuracy(lam, powers) for lam in GRID])
    for _ in range(draws):
        (fs, fc), (cs, cc) = simulate(powers, 1500, 1500, rng)
        fit = (*ct.device_counts(fs, fc, GRID), 1500)
        cal = (*ct.device_counts(cs, cc, GRID), 1500)
        c = ct.certify_split(fit, cal, cal, GRID, target, delta, procedure, "hoeffding_bentkus")
        certified += c.index >= 0
        violations += c.index >= 0 and truth[c.index] < target
    low, high = clopper_pearson_interval(violations, draws)
    assert low <= delta, f"violation rate {violations / draws:.3f} [{low:.3f}, {high:.3f}] above delta"
    assert certified >= 0.8 * draws  # and it has power: a threshold is found in most draws


def test_oracle_check_of_true_accuracy() -> None:
    rng = np.random.default_rng(3)
    s = rng.uniform(size=(3, 400_000))
    correct = rng.uniform(size=s.shape) < s ** np.array([3.0, 6.0, 1.0])[:, None]
    dev, ok = ct.device_counts(s, correct, np.array([0.6, 0.9]))
    np.testing.assert_allclose(ok / dev, [true_accuracy(0.6, (3.0, 6.0)), true_accuracy(0.9, (3.0, 6.0))], atol=3e-3)


def test_clopper_pearson_and_aurc_by_hand() -> None:
    low, high = clopper_pearson_interval(np.array([0, 10]), np.array([100, 100]))
    assert low[0] == 0.0 and high[0] == pytest.approx(1 - 0.025 ** (1 / 100))
    assert low[1] < 0.1 < high[1]
    coverage = np.linspace(0.1, 1.0, 10)
    assert ct.aurc(coverage, np.full(10, 0.2)) == pytest.approx(0.2)
    assert ct.aurc(coverage, coverage) == pytest.approx(0.55)  # mean of a line over its span


# --------------------------------------------------------------------------- params


def test_params_lists_match_the_library() -> None:
    assert P.CALIBRATOR_METHODS == cb.METHODS
    assert P.CERTIFY_PROCEDURES == ct.PROCEDURES
    assert P.CERTIFY_P_VALUES == ct.P_VALUES
    assert P.CERTIFY_FAMILIES == ct.FAMILIES
    p = P.certify_params(BASE)
    assert p.methods == cb.METHODS and p.splits == 200 and p.calibration_fraction == 0.3
    assert list(p.targets) == [0.80, 0.85, 0.90]


def with_value(key: str, value: object) -> dict:
    params = json.loads(json.dumps(BASE))
    section, name = key.split(".")
    params[section][name] = value
    return params


@pytest.mark.parametrize("key,value,text", [
    ("calibration.methods", ["none", "platt"], "calibration.methods = ['none', 'platt']; allowed: a non-empty list"),
    ("calibration.methods", [], "allowed: a non-empty list of distinct values of none | temperature"),
    ("calibration.methods", ["none", "none"], "calibration.methods = ['none', 'none']"),
    ("certify.target_accuracy", [0.8, 1.0], "certify.target_accuracy = [0.8, 1.0]; allowed: values in (0, 1)"),
    ("certify.target_accuracy", [0.85, 0.75], "certify.target_accuracy = [0.85, 0.75]; allowed: a non-empty list of strictly"),
    ("certify.delta", 0, "certify.delta = 0; allowed: a number in (0, 1)"),
    ("certify.splits", 0, "certify.splits = 0; allowed: an integer >= 1"),
    ("certify.calibration_fraction", 1.5, "certify.calibration_fraction = 1.5"),
    ("certify.procedures", ["bonferroni"], "allowed: a non-empty list of distinct values of fixed_sequence | holm"),
    ("certify.p_value", "wsr", "certify.p_value = 'wsr'; allowed: hoeffding_bentkus | binomial"),
    ("certify.family", "free", "certify.family = 'free'; allowed: shared"),
    ("certify.thresholds", {"start": 0.5, "stop": 1.5, "step": 0.1}, "allowed: start >= 0 and stop <= 1"),
    ("certify.bootstrap", -1, "certify.bootstrap = -1; allowed: an integer >= 0"),
    ("certify.sede", 0, "certify.sede is not a known key"),
])
def test_bad_certify_params_give_one_line(key: str, value: object, text: str) -> None:
    with pytest.raises(StageError) as info:
        P.certify_params(with_value(key, value))
    assert text in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- the stage


def small_project(tmp: Path, n_val: int = 300, n_test: int = 700, **certify: object) -> Path:
    from tests.synthetic_logits import synthetic_logits_frame

    tmp.mkdir(parents=True, exist_ok=True)
    params = json.loads(json.dumps(BASE))
    params["certify"].update({"splits": 4, "bootstrap": 10, **certify})
    (tmp / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (tmp / "data/logits/two_branch").mkdir(parents=True)
    synthetic_logits_frame(n_val, n_test, 3, seed=1).to_parquet(tmp / "data/logits/two_branch/seed0.parquet",
                                                                index=False)
    return tmp


COLUMNS = {
    "thresholds": ["split", "method", "target", "procedure", "threshold", "cal_p_device", "test_p_device",
                   "test_acc_device", "test_n_device", "violated", "test_batch_outage"],
    "validity": ["method", "target", "procedure", "splits", "violations", "certified_rate", "mean_threshold",
                 "mean_p_device", "mean_acc_device", "mean_batch_outage", "violation_rate", "violation_low",
                 "violation_high", "delta"],
    "exits": ["split", "method", "exit", "accuracy", "ece", "ece_equal_mass", "brier", "nll"],
    "aurc": ["split", "method", "aurc"],
    "smooth_ece": ["method", "exit", "smece", "smece_low", "smece_high", "sigma"],
    "kernel_reliability": ["method", "exit", "confidence", "accuracy", "density"],
    "risk_coverage": ["method", "threshold", "coverage", "risk"],
}


def test_stage_writes_every_table(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    proc = run_stage(root, "certify", "two_branch", "0")
    assert proc.returncode == 0, proc.stderr
    out = root / "reports/certify/two_branch/seed0"
    for name, columns in COLUMNS.items():
        assert list(pd.read_parquet(out / f"{name}.parquet").columns) == columns, name
    thresholds = pd.read_parquet(out / "thresholds.parquet")
    assert len(thresholds) == 4 * len(cb.METHODS) * 3 * 3  # procedures + the paper's rule
    assert set(thresholds["procedure"]) == {"fixed_sequence", "holm", "paper_rule"}
    rule = thresholds[thresholds["procedure"] == "paper_rule"]
    np.testing.assert_array_equal(rule["threshold"], rule["target"])
    head = json.loads((out / "summary.json").read_text())
    assert head["n_calibration"] == 300 and head["n_fit"] == 150 and set(head["methods"]) == set(cb.METHODS)
    assert (root / "reports/timings/certify@two_branch-0.json").is_file()

    from pipeline.certify_report import certify_html

    html = certify_html(out)
    assert "<table" in html and "data:image/png;base64," in html


def test_stage_is_deterministic(tmp_path: Path) -> None:
    first, second = small_project(tmp_path / "a"), small_project(tmp_path / "b")
    for root in (first, second):
        assert run_stage(root, "certify", "two_branch", "0").returncode == 0
    for name in COLUMNS:
        pd.testing.assert_frame_equal(pd.read_parquet(first / f"reports/certify/two_branch/seed0/{name}.parquet"),
                                      pd.read_parquet(second / f"reports/certify/two_branch/seed0/{name}.parquet"))


@pytest.mark.parametrize("change,text", [
    ({"calibration_fraction": 0.001}, "certify.calibration_fraction = 0.001"),
])
def test_stage_refuses_too_small_data_with_one_line(tmp_path: Path, change: dict, text: str) -> None:
    root = small_project(tmp_path, **change)
    proc = run_stage(root, "certify", "two_branch", "0")
    assert proc.returncode == 2 and text in proc.stderr and proc.stderr.count("\n") == 1


def test_stage_names_a_missing_logits_file(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    shutil.rmtree(root / "data/logits")
    proc = run_stage(root, "certify", "two_branch", "0")
    assert proc.returncode == 2 and "data/logits/two_branch/seed0.parquet: not found" in proc.stderr


@pytest.mark.integration
def test_dvc_runs_the_certify_stage_alone(tmp_path: Path) -> None:
    """dvc.yaml's certify@two_branch (params, deps, outs as declared) runs in a scratch DVC project
    on synthetic logits, and a second `dvc repro` of it is a no-op."""
    from tests.synthetic_logits import synthetic_logits_frame
    from pipeline.tools.scratch import dvc_repro, make_scratch_project

    root = make_scratch_project(tmp_path / "p", {"certify": {"splits": 10, "bootstrap": 5}, "train": {"seeds": [0]}})
    (root / "data/logits/two_branch").mkdir(parents=True)
    synthetic_logits_frame(100, 200, 3, seed=2).to_parquet(root / "data/logits/two_branch/seed0.parquet", index=False)
    first = dvc_repro(root, "--single-item", "certify@two_branch-0")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert (root / "reports/certify/two_branch/seed0/summary.json").is_file()
    again = dvc_repro(root, "--single-item", "certify@two_branch-0")
    assert again.returncode == 0 and "didn't change" in again.stdout + again.stderr


def test_batch_outage_of_a_threshold() -> None:
    """Section IV-D's outage for a threshold that differs from the target: 2 full batches of 4."""
    conf = np.array([[0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.99],   # side branch
                     [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])   # final exit
    correct = np.array([[True, False, True, True, True, True, True, False, True], [True] * 9])
    # batch 1: device samples 0, 1 -> accuracy 0.5 < 0.8: outage; batch 2: 4, 5, 6 all right: none
    assert ct.batch_outage(conf, correct, 0.5, 0.8, 4) == 0.5
    assert np.isnan(ct.batch_outage(conf, correct, float("nan"), 0.8, 4))
    assert np.isnan(ct.batch_outage(conf, correct, 0.999, 0.8, 4))  # nothing kept: no batch counts


# --------------------------------------------------------------------------- the protocol alone


def test_protocol_runs_on_arrays_alone() -> None:
    """eeoffload.certify_protocol on arrays with a plain settings object (no params file, no paths):
    the same tables as the stage writes, each split's thresholds once per method, deterministic."""
    from dataclasses import dataclass, field

    from eeoffload.certify_protocol import PAPER_RULE, Held, certify_run, split_sizes, summary

    @dataclass(frozen=True)
    class Settings:
        methods: tuple[str, ...] = ("none", "temperature")
        n_bins: int = 10
        targets: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.9]))
        delta: float = 0.1
        splits: int = 3
        calibration_fraction: float = 0.4
        fit_fraction: float = 0.5
        procedures: tuple[str, ...] = ("fixed_sequence",)
        p_value: str = "hoeffding_bentkus"
        family: str = "shared"
        thresholds: np.ndarray = field(default_factory=lambda: np.round(np.arange(0.5, 1.0001, 0.05), 10))
        bootstrap: int = 5
        seed: int = 0

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 500)
    logits = rng.normal(size=(2, 500, 10)) + 3.0 * np.eye(10)[labels][None] * np.array([0.5, 1.0])[:, None, None]
    p = Settings()
    sizes = split_sizes(p, 500)
    assert sizes == (200, 100)
    tables = certify_run(Held.of(logits, labels), p, sizes)
    again = certify_run(Held.of(logits, labels), p, sizes)
    for name, columns in COLUMNS.items():
        assert list(tables[name].columns) == columns, name
        pd.testing.assert_frame_equal(tables[name], again[name])
    assert len(tables["thresholds"]) == 3 * 2 * 2 * 2  # splits x methods x targets x (procedure + paper's rule)
    assert set(tables["thresholds"]["procedure"]) == {"fixed_sequence", PAPER_RULE}
    head = summary("v", p, sizes, 500, tables["validity"], tables["exits"], tables["aurc"], 0.0)
    assert head["n_calibration"] == 200 and set(head["methods"]) == {"none", "temperature"}
