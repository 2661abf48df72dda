"""A tiny project for the measure_link tests: a random-weight model, temperatures, a profile, a
small random test split and params.yaml (params from the repository's, with small sizes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from eeoffload.model import BAlexNet
from pipeline.core.atomic import write_npz

ROOT = Path(__file__).resolve().parent.parent
BRANCHES = ["relu1", "relu2"]


def make_project(root: Path, n_test: int = 60, link: dict[str, Any] | None = None,
                 network: dict[str, Any] | None = None) -> Path:
    """Write the stage's inputs under ``root`` (variant ``tiny``) and return ``root``."""
    torch.manual_seed(0)
    model = BAlexNet(BRANCHES)
    (root / "data/models/tiny").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "branches": BRANCHES}, root / "data/models/tiny/seed0.pt")
    (root / "data/calibration/tiny").mkdir(parents=True)
    (root / "data/calibration/tiny/seed0.json").write_text(json.dumps(
        {"method": "temperature", "temperatures": {"1": 0.5, "2": 0.5, "3": 1.0}}))
    (root / "data/profile").mkdir(parents=True)
    (root / "data/profile/tiny.json").write_text(json.dumps(
        {"device_ms_to_exit": {"1": 0.5, "2": 1.3}, "offload_edge_ms": 1.3, "upload_bytes": 65536, "cloud_ms": 0.5}))
    (root / "data/prepared").mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_npz(root / "data/prepared/test.npz", {
        "images": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "labels": rng.integers(0, 10, n_test).astype(np.int64), "sample_id": np.arange(n_test, dtype=np.int64)})
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["variants"] = {"tiny": {"branches": BRANCHES, "exit_weights": [1.0, 0.6, 0.3]}}
    params["train"]["seeds"] = [0]
    params["evaluate"].update({"batch_size": 10, "t_tar_ms": {"start": 0.0, "stop": 60.0, "step": 1.0}})
    params["network"].update(network or {})
    params["link"].update({"n_samples": 12, "p_tar": 0.2, "uplink_trace": "", "max_seconds": 60, **(link or {})})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root
