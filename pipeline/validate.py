"""Stage validate: the whole params.yaml checked before any other stage touches an output.

    python -m pipeline.validate

DVC deletes a stage's outputs right before it runs that stage, so a bad value read only by a later
stage (``network.uplink_mbps: -5``, read by evaluate) would cost the previous metrics before
evaluate could refuse it. This stage depends on every params section and runs first (prepare and
profile, the roots of the graph, depend on its output), so a bad value stops ``dvc repro`` and the
flow here, with one line naming the key and the allowed values, before anything is deleted.

Writes data/params_valid.json, whose content never changes: a valid edit re-runs this stage but
not, through it, the stages below (DVC compares the content).
"""

from __future__ import annotations

from pipeline import registry
from pipeline.atomic import atomic_write_json
from pipeline.io import read_params, run_stage
from pipeline.params import validate_params


def main() -> None:
    validate_params(read_params())
    atomic_write_json(registry.PARAMS_VALID, {"params.yaml": "valid"})


if __name__ == "__main__":
    run_stage("validate", main, record_timing=False)
