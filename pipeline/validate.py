"""Stage validate: the whole params.yaml, and the archive it names, checked before any other stage
touches an output.

    python -m pipeline validate

DVC deletes a stage's outputs right before it runs that stage, so a bad value read only by a later
stage (``network.uplink_mbps: -5``, read by evaluate) would cost the previous metrics before
evaluate could refuse it. This stage depends on every params section and runs first (prepare and
profile, the roots of the graph, depend on its output), so a bad value stops ``dvc repro`` and the
flow here, with one line naming the key and the allowed values, before anything is deleted. The
CIFAR-10 archive ($CIFAR10_ARCHIVE, else data.archive) is checked too: it exists and is a
class-folder zip with the ten class folders or the official tar.gz (its listing and type, no image
decoded: pipeline.core.archive), so a missing or corrupt archive does not cost data/prepared either.

A bad value in params.yaml stays there after a failed ``dvc exp run -S key=value`` (DVC writes the
experiment's values into the workspace first), so every later ``dvc repro`` would fail the same way:
the error line says how to get back.

Writes data/params_valid.json, whose content never changes: a valid edit re-runs this stage but
not, through it, the stages below (DVC compares the content).
"""

from __future__ import annotations

from pipeline.core import registry
from pipeline.core.archive import check_configured_archive
from pipeline.core.atomic import atomic_write_json
from pipeline.core.io import StageError, read_params
from pipeline.core.params import validate_params
from pipeline.core.params_shift import shift_params

#: How to get back to working params, appended to every params error of this stage.
RECOVERY_HINT = ("to get back: `git checkout params.yaml` (the committed values) or "
                 "`dvc exp apply <experiment>` (one that ran); a failed `dvc exp run -S` leaves its value in params.yaml")


def main() -> None:
    try:
        raw = read_params()
        params = validate_params(raw)
        shift_params(raw)  # section shift (its own module: only the shift stages import the corruptions)
    except StageError as e:
        raise StageError(f"{e}; {RECOVERY_HINT}") from None
    check_configured_archive(params.data.archive)
    atomic_write_json(registry.PARAMS_VALID, {"params.yaml": "valid"})
