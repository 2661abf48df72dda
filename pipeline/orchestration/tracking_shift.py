"""MLflow metrics of the shift_eval stage (docs/shift.md): one child run per variant and shifted seed.

Keys, the same in every such child so MLflow's compare view lines them up:
``shift/<corruption>/s<severity>/<column>`` for the columns of summary.json's table (acc_final,
ece_exit1_<rule>, outage_<rule>, p_device_<rule>, violation_<rule>), and ``shift_monitor/...``:
the clean streams' false-alarm rate and, per setting, the detected share, median delay and the
outage share after the shift without / with the monitor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import registry

MONITOR_KEYS = ("detected", "median_delay", "outage_share", "outage_share_monitored")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def shift_metrics(folder: Path) -> dict[str, float]:
    """The flat metrics of one ``reports/shift/<variant>/seed<k>/`` folder (empty without summary.json)."""
    path = folder / "summary.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, float] = {}
    for row in summary.get("table", []):
        prefix = f"shift/{row['corruption']}/s{row['severity']}"
        out.update({f"{prefix}/{k}": float(v) for k, v in row.items()
                    if k not in ("corruption", "severity") and _finite(v)})
    monitor = summary.get("monitor", {})
    if _finite(monitor.get("clean_false_alarm_rate")):
        out["shift_monitor/clean_false_alarm_rate"] = float(monitor["clean_false_alarm_rate"])
    for setting, values in monitor.get("shifted", {}).items():
        c, s = setting.split("/")
        out.update({f"shift_monitor/{c}/s{s}/{k}": float(values[k]) for k in MONITOR_KEYS if _finite(values.get(k))})
    return out


def shift_runs(root: Path, variant: str, seeds: Sequence[int]) -> dict[int, dict[str, float]]:
    """{seed: metrics} of the variant's seeds that have a shift_eval folder with a summary."""
    found = {s: shift_metrics(root / registry.shift_dir(variant, s)) for s in seeds}
    return {s: m for s, m in found.items() if m}
