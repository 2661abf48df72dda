"""A fitted calibrator (:mod:`eeoffload.calibrators`) as JSON-safe numbers, and back.

:func:`calibrator_state` gives a dict of plain floats and lists; :func:`calibrator_from_state`
rebuilds a calibrator whose confidences are bit-identical to the fitted one (JSON keeps a float64
exactly). :func:`run_state` / :func:`run_from_state` do the same for one network's exits, in the
form the calibrate stage writes (data/calibration/<variant>/seed<k>.json, docs/interfaces.md)::

    {"method": "isotonic", "exits": {"1": {...}, "2": {...}}}

plus ``"temperatures": {"1": T1, ...}`` when the calibrator of every exit is softmax(z / T_k)
(``temperature``, ``global_temperature``: paper IV-A, eq. 2), for the readers that only need T.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eeoffload import calibrators as cb
from eeoffload.calibrator_maps import InterpMap, StepMap

#: The methods whose calibrator is softmax(z / T) with one T per exit (the file also lists the T's).
TEMPERATURE_METHODS = ("temperature", "global_temperature")


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _map_state(mapping: Any) -> dict[str, list[float]]:
    if isinstance(mapping, StepMap):
        return {"edges": _floats(mapping.edges), "values": _floats(mapping.values)}
    if isinstance(mapping, InterpMap):
        return {"x": _floats(mapping.x), "y": _floats(mapping.y)}
    raise TypeError(f"cannot store a map of type {type(mapping).__name__}")


def _map_from_state(state: dict[str, Any]) -> StepMap | InterpMap:
    if "edges" in state:
        return StepMap(np.asarray(state["edges"], np.float64), np.asarray(state["values"], np.float64))
    return InterpMap(np.asarray(state["x"], np.float64), np.asarray(state["y"], np.float64))


def calibrator_state(calibrator: cb.Calibrator) -> dict[str, Any]:
    """The fitted parameters of ``calibrator`` as JSON-safe numbers."""
    if isinstance(calibrator, cb.Identity):
        return {}
    if isinstance(calibrator, cb.Temperature):
        return {"temperature": float(calibrator.temperature)}
    if isinstance(calibrator, cb.VectorScaling):
        return {"w": _floats(calibrator.w), "b": _floats(calibrator.b)}
    if isinstance(calibrator, cb.PerClassMap):
        if calibrator.pooled is None:
            raise ValueError("calibrator not fitted")
        return {"pooled": _map_state(calibrator.pooled),
                "per_class": {str(c): _map_state(m) for c, m in sorted(calibrator.maps.items())}}
    if isinstance(calibrator, cb.ScalingBinning):
        if calibrator.mapping is None:
            raise ValueError("calibrator not fitted")
        return {"temperature": float(calibrator.temperature), "n_bins": int(calibrator.n_bins),
                "map": _map_state(calibrator.mapping)}
    raise TypeError(f"cannot store a calibrator of type {type(calibrator).__name__}")


def calibrator_from_state(method: str, state: dict[str, Any]) -> cb.Calibrator:
    """The calibrator of ``method`` (one of :data:`eeoffload.calibrators.METHODS`) with the fitted
    parameters ``state`` (:func:`calibrator_state`); ValueError on a state that does not fit."""
    try:
        if method in TEMPERATURE_METHODS:
            return cb.Temperature(float(state["temperature"]))
        if method not in cb.METHODS:
            raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(cb.METHODS)}")
        calibrator = cb.make_calibrator(method)
        if isinstance(calibrator, cb.VectorScaling):
            calibrator.w, calibrator.b = np.asarray(state["w"], np.float64), np.asarray(state["b"], np.float64)
        elif isinstance(calibrator, cb.PerClassMap):
            calibrator.pooled = _map_from_state(state["pooled"])
            calibrator.maps = {int(c): _map_from_state(m) for c, m in state["per_class"].items()}
        elif isinstance(calibrator, cb.ScalingBinning):
            calibrator.temperature, calibrator.n_bins = float(state["temperature"]), int(state["n_bins"])
            calibrator.mapping = _map_from_state(state["map"])
        return calibrator
    except (KeyError, TypeError) as e:
        raise ValueError(f"{method} calibrator: malformed state ({type(e).__name__}: {e})") from e


def temperature_of(calibrator: cb.Calibrator) -> float:
    """The calibrator's temperature T (scaling-binning's scaling half included), NaN without one."""
    t = getattr(calibrator, "temperature", None)
    return float(t) if t is not None else float("nan")


def run_state(method: str, calibrators: list[cb.Calibrator]) -> dict[str, Any]:
    """One network's calibration file: the method and each exit's state (exits 1..n, side first)."""
    out: dict[str, Any] = {"method": method}
    if method in TEMPERATURE_METHODS:
        out["temperatures"] = {str(k): float(c.temperature) for k, c in enumerate(calibrators, start=1)}
    out["exits"] = {str(k): calibrator_state(c) for k, c in enumerate(calibrators, start=1)}
    return out


def run_from_state(obj: dict[str, Any], n_exits: int) -> tuple[str, list[cb.Calibrator]]:
    """(method, one calibrator per exit) from :func:`run_state`'s dict; ValueError saying what is
    wrong (an unknown method, exits other than 1..n_exits, a malformed state)."""
    method = obj.get("method")
    if method not in cb.METHODS:
        raise ValueError(f"'method' must be one of {', '.join(cb.METHODS)}, got {method!r}")
    exits = obj.get("exits")
    expected = [str(k) for k in range(1, n_exits + 1)]
    if not isinstance(exits, dict) or sorted(exits) != sorted(expected):
        got = sorted(exits) if isinstance(exits, dict) else exits
        raise ValueError(f"'exits' must have keys {expected} (exits of the logits file), got {got!r}")
    return method, [calibrator_from_state(method, exits[k]) for k in expected]
