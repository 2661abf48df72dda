"""eeoffload.corruptions: CIFAR-10-C's constants, determinism under a seed, and the formulas checked
against the reference package's outputs (tests/fixtures/corruptions_reference.npz, written by
tests/make_corruption_fixture.py with imagecorruptions 1.1.2 at ImageNet-C's constants).

Tolerance, fixed before comparing: the reference and this code compute in float64 and truncate to
uint8, so a value within rounding of an integer may land one grey level apart; every pixel must be
within 1 grey level, and at most 1% of the values may differ at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eeoffload import corruptions as co

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "corruptions_reference.npz"
MAX_ABS = 1
MAX_SHARE_DIFFERENT = 0.01


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


def test_cifar10_c_constants_are_make_cifar_c_py() -> None:
    # make_cifar_c.py (hendrycks/robustness, ImageNet-C/create_c/), the c list of each function
    assert co.CIFAR10_C == {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    }


@pytest.mark.parametrize("name", co.CORRUPTIONS)
def test_formula_matches_reference_package(reference: dict[str, np.ndarray], name: str) -> None:
    images = reference["images"]
    for s, c in enumerate(reference[f"{name}_c"]):
        if name == "gaussian_noise":  # the reference re-seeds np.random before each image
            ours = np.stack([co.gaussian_noise(img[None], c, np.random.RandomState(1234))[0] for img in images])
        else:
            ours = co.corrupt(images, name, s + 1, c=float(c))
        ref = reference[name][s]
        diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
        assert ours.dtype == np.uint8 and ours.shape == ref.shape
        assert diff.max() <= MAX_ABS, (name, s + 1, int(diff.max()))
        assert (diff > 0).mean() <= MAX_SHARE_DIFFERENT, (name, s + 1, float((diff > 0).mean()))


def test_deterministic_under_a_seed_and_independent_per_setting() -> None:
    images = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    a = co.corrupt(images, "gaussian_noise", 3, seed=7)
    assert np.array_equal(a, co.corrupt(images, "gaussian_noise", 3, seed=7))
    assert not np.array_equal(a, co.corrupt(images, "gaussian_noise", 3, seed=8))
    for name in co.CORRUPTIONS:
        assert np.array_equal(co.corrupt(images, name, 2, seed=1), co.corrupt(images, name, 2, seed=1))


def test_severity_grades_the_damage() -> None:
    images = np.random.default_rng(4).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for name in co.CORRUPTIONS:
        damage = [np.abs(co.corrupt(images, name, s, seed=0).astype(float) - images).mean() for s in co.SEVERITIES]
        assert damage[0] > 0 and damage[-1] > damage[0], (name, damage)


def test_clean_is_identity_and_bad_names_are_refused() -> None:
    images = np.zeros((1, 32, 32, 3), np.uint8)
    assert np.array_equal(co.corrupt(images, *co.CLEAN), images)
    with pytest.raises(ValueError, match="allowed: gaussian_noise"):
        co.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        co.corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="uint8"):
        co.corrupt(images.astype(np.float32), "contrast", 1)


def test_brightness_of_black_is_grey() -> None:
    black = np.zeros((1, 2, 2, 3), np.uint8)
    out = co.brightness(black, 0.3)
    assert (out == np.uint8(0.3 * 255)).all()
