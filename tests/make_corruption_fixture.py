"""Writes tests/fixtures/corruptions_reference.npz: the reference package's corruptions of a few images.

Run once, in an environment with the reference package (it pulls opencv and scikit-image, which the
project does not need; a throwaway venv)::

    python -m venv /tmp/icvenv && /tmp/icvenv/bin/pip install imagecorruptions==1.1.2
    /tmp/icvenv/bin/python tests/make_corruption_fixture.py

``imagecorruptions`` (github.com/bethgelab/imagecorruptions, Michaelis et al. 2019) is ImageNet-C's
code (Hendrycks and Dietterich 2019) packaged: the same formulas as CIFAR-10-C's make_cifar_c.py,
with ImageNet-C's constants per severity. The fixture stores its outputs at severities 1..5 with
those constants (``c`` below, read from the package's source) for the five corruptions of
eeoffload.corruptions, so tests/test_corruptions.py can check the project's own code against the
reference formulas without installing opencv. Gaussian noise is drawn from np.random seeded with
``NOISE_SEED`` immediately before each image, as the reference draws it.

scikit-image >= 0.19 renamed gaussian's ``multichannel=True`` (which the reference passes) to
``channel_axis=-1``, the same operation; the shim below maps one to the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ("gaussian_noise", "gaussian_blur", "jpeg_compression", "contrast", "brightness")
#: ImageNet-C's constants as imagecorruptions 1.1.2 holds them (corruptions.py), per severity 1..5.
IMAGENET_C = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
}
NOISE_SEED = 1234
OUT = Path(__file__).resolve().parent / "fixtures" / "corruptions_reference.npz"


def fixture_images() -> np.ndarray:
    """Four 32x32 RGB uint8 images: smooth gradients with edges, noise, black and white pixels."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = []
    for k in range(4):
        base = np.stack([xx, yy, 1 - xx * yy], axis=-1) * (0.4 + 0.2 * k)
        base[8 + k:20, 6:18 + k] = rng.uniform(0, 1, 3)  # a flat patch with sharp edges
        img = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1) * 255
        img[0, :4] = 0  # black pixels (brightness: V = 0)
        img[-1, -4:] = 255
        images.append(img.astype(np.uint8))
    return np.stack(images)


def main() -> None:
    import skimage.filters
    from imagecorruptions import corruptions as ic
    from PIL import Image

    original = skimage.filters.gaussian

    def gaussian(image, sigma=1, multichannel=None, **kw):
        if multichannel:
            kw["channel_axis"] = -1
        return original(image, sigma=sigma, **kw)

    ic.gaussian = gaussian
    import ast

    source = Path(ic.__file__).read_text()
    for name in NAMES:  # the constants the tests use are the package's own
        line = source[source.index(f"def {name}(") :].splitlines()[1]
        constants = ast.literal_eval(line.split("=", 1)[1].split("[severity")[0].strip())
        assert tuple(constants) == IMAGENET_C[name], (name, constants)
    images = fixture_images()
    out = {"images": images}
    for name in NAMES:
        rows = []
        for severity in range(1, 6):
            per_image = []
            for img in images:
                np.random.seed(NOISE_SEED)
                arg = Image.fromarray(img) if name == "jpeg_compression" else img
                per_image.append(np.uint8(getattr(ic, name)(arg, severity)))
            rows.append(np.stack(per_image))
        out[name] = np.stack(rows)  # (5 severities, 4 images, 32, 32, 3)
        out[f"{name}_c"] = np.asarray(IMAGENET_C[name], dtype=np.float64)
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
