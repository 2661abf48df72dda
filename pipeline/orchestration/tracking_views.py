"""The MLflow experiment's look: its kind (model training), its description and its saved views of
the runs table, and the link that opens them (pipeline.orchestration.tracking sets them).

MLflow 3.17's UI takes its GenAI / Model-training navigation from a per-browser switch, not from the
experiment-kind tag; :func:`experiment_url` is the link that opens the model-training runs table
with the first view (docs/orchestration.md, "MLflow").
"""

from __future__ import annotations

import json
import time
from typing import Any

#: The MLflow experiment every pipeline run logs to (pipeline.orchestration.tracking).
EXPERIMENT = "eeoffload-benchmark"
#: The experiment tag that tells MLflow 3's UI what kind of experiment this is: the UI's own
#: experiment-type selector writes it (value ``custom_model_development`` = "model training",
#: ``genai_development`` = GenAI; mlflow/server/js ExperimentKind). See docs/orchestration.md.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: The UI's query parameter choosing its GenAI / Model-training navigation (else the browser's
#: stored choice, GenAI by default): MLflow 3.17's UI takes the landing tab from it, not from the tag.
WORKFLOW_QUERY = "workflowType=machine_learning"
#: Saved views of the runs table are experiment tags ``mlflow.sharedViewState.<id>`` holding
#: ``{"name", "createdAt", "updatedAt", "state"}`` (state: the table's JSON UI state); the UI's
#: *Views* menu lists them and ``?viewStateShareKey=<id>`` opens one.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
HEADLINE_METRICS = ("p_device/p0.85", "acc_device/p0.85", "acc_total/p0.85", "outage/p0.85",
                    "missed_deadline/p0.85/t50", "ece/final")
VIEWS: dict[str, dict[str, Any]] = {
    "conventional-vs-calibrated": {
        "name": "conventional vs calibrated",
        "filter": "tags.eeoffload_role = 'child'",
        "params": ("dvc_exp_name", "n_seeds", "network.uplink_mbps"),
        "metrics": HEADLINE_METRICS,
    },
    "calibrators": {
        "name": "calibrators (certify)",
        "filter": "tags.eeoffload_role = 'method'",
        "params": ("dvc_exp_name", "n_seeds"),
        "metrics": ("ece/final", "ece_equal_mass/final", "nll/final", "aurc",
                    "violation_rate/t0.85/fixed_sequence", "p_device/t0.85/fixed_sequence"),
    },
}
DEFAULT_VIEW = "conventional-vs-calibrated"


def experiment_url(base: str, experiment_id: str, view: str | None = DEFAULT_VIEW) -> str:
    """The UI's link to the experiment's runs table in the model-training navigation, with a saved view."""
    query = WORKFLOW_QUERY + (f"&viewStateShareKey={view}" if view else "")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def view_state(view: dict[str, Any]) -> dict[str, Any]:
    """The runs-table UI state of a saved view: its filter and the columns it shows."""
    columns = [f"params.`{p}`" for p in view["params"]] + [f"metrics.`{m}`" for m in view["metrics"]]
    # sorted by run name (the same variant x calibration of several pipeline runs side by side), not
    # by the UI's default "attributes.start_time": only that key makes the UI fetch the parents and
    # fold the matching children under them, collapsed, hiding the rows the view is for
    return {"searchFilter": view["filter"], "orderByKey": "tags.`mlflow.runName`", "orderByAsc": True,
            "selectedColumns": columns}


def experiment_tags(now_ms: int | None = None) -> dict[str, str]:
    """The experiment's tags: its kind (model training), a description, and the saved views."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, "mlflow.note.content": EXPERIMENT_NOTE}
    for key, view in VIEWS.items():
        tags[VIEW_TAG_PREFIX + key] = json.dumps({"name": view["name"], "createdAt": now_ms, "updatedAt": now_ms,
                                                  "state": json.dumps(view_state(view))})
    return tags


EXPERIMENT_NOTE = """\
Early-exit DNN offloading benchmark (eeoffload). One **parent** run per pipeline state (dvc.lock),
one **child** per variant x calibration (`one-branch conventional`, `one-branch calibrated`, ...),
one per variant x calibrator of the certify stage (`one-branch · isotonic`, ...).

*Views* (above the runs table) -> **conventional vs calibrated**: the children with the headline
metrics as columns (`acc_device/p0.85` = accuracy on the device at p_tar 0.85, ...; keys in
docs/orchestration.md). Curves over p_tar and over the deadline are each child's artifacts
`curves/*.json` (tables) and `figures/*.png`, not step metrics."""


def same_view(a: str, b: str) -> bool:
    try:
        x, y = json.loads(a), json.loads(b)
        return (x["name"], json.loads(x["state"])) == (y["name"], json.loads(y["state"]))
    except (ValueError, KeyError, TypeError):
        return False


