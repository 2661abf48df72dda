"""The declarative part of the params schema: one rule per kind of value, and the one generic reader
that turns a params.yaml section into the fields of its frozen dataclass (:mod:`pipeline.core.params`
declares the sections).

A section's dataclass declares each key once, with its rule::

    @dataclass(frozen=True)
    class NetworkParams:
        uplink_mbps: float = Number(0.0, strict=True).field()
        rtt_ms: float = Number(0.0).field()

:func:`read_section` refuses unknown keys, reports a missing key and checks every value, each
problem as one line naming the key, the bad value and what is allowed::

    params.yaml: <key> = <value>; allowed: <allowed values>

Plain dataclasses, not pydantic: the stage scripts must run on a GPU box that has only torch,
numpy, pandas, pyarrow, pyyaml, tqdm, seaborn and jinja2. Imports numpy and nothing of the project
but :mod:`pipeline.core.io`'s StageError.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.io import StageError

#: Longest value grid accepted (p_tar, t_tar_ms): a typo in ``step`` fails instead of hanging.
MAX_GRID_POINTS = 100_000
#: The default of a rule whose key must be present.
REQUIRED: Any = dataclasses.MISSING


def bad(key: str, value: Any, allowed: str) -> StageError:
    """The one-line error for a bad value."""
    return StageError(f"params.yaml: {key} = {value!r}; allowed: {allowed}")


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- rules


class Rule:
    """How one key's value is checked and converted; ``allowed`` is the text of the error line."""

    allowed = ""

    def __call__(self, value: Any, key: str) -> Any:
        raise NotImplementedError

    def field(self, default: Any = REQUIRED, key: str = "") -> Any:
        """A section dataclass's field checked by this rule, read from params key ``key`` (default:
        the field's name); with ``default`` (immutable), the key may be left out."""
        return dataclasses.field(default=default, metadata={"rule": self, "key": key})


@dataclass(frozen=True)
class Int(Rule):
    """An integer >= ``lo`` (and <= ``hi``, with ``note`` saying why)."""

    lo: int = 1
    hi: int | None = None
    note: str = ""

    @property
    def allowed(self) -> str:
        return f"an integer >= {self.lo}"

    def __call__(self, value: Any, key: str) -> int:
        if not is_int(value) or value < self.lo:
            raise bad(key, value, self.allowed)
        if self.hi is not None and value > self.hi:
            raise bad(key, value, f"an integer in {self.lo}..{self.hi}{self.note}")
        return value


@dataclass(frozen=True)
class Number(Rule):
    """A finite number >= ``lo`` (> with ``strict``), below ``below`` if given; returned as float."""

    lo: float = 0.0
    strict: bool = False
    below: float | None = None

    @property
    def allowed(self) -> str:
        return f"a number {'>' if self.strict else '>='} {self.lo:g}"

    def __call__(self, value: Any, key: str) -> float:
        if not is_number(value) or not (value > self.lo if self.strict else value >= self.lo):
            raise bad(key, value, self.allowed)
        if self.below is not None and value >= self.below:
            raise bad(key, float(value), f"a number in {'(' if self.strict else '['}{self.lo:g}, {self.below:g})")
        return float(value)


@dataclass(frozen=True)
class Choice(Rule):
    """One of ``choices`` (a tuple imported from the library)."""

    choices: tuple[Any, ...]

    @property
    def allowed(self) -> str:
        return " | ".join(map(str, self.choices))

    def __call__(self, value: Any, key: str) -> Any:
        if isinstance(value, bool) or value not in self.choices or type(value) is not type(self.choices[0]):
            raise bad(key, value, self.allowed)
        return value


@dataclass(frozen=True)
class Choices(Rule):
    """A non-empty list of distinct values of ``choices``; returned as a tuple."""

    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return f"a non-empty list of distinct values of {' | '.join(self.choices)}"

    def __call__(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value) \
                or not all(isinstance(v, str) and v in self.choices for v in value):
            raise bad(key, value, self.allowed)
        return tuple(value)


@dataclass(frozen=True)
class Bool(Rule):
    allowed = "true | false"

    def __call__(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise bad(key, value, self.allowed)
        return value


@dataclass(frozen=True)
class PathText(Rule):
    """An optional path: missing, null or "" mean none (returned as "")."""

    allowed: str = 'a path, or ""'

    def __call__(self, value: Any, key: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise bad(key, value, self.allowed)
        return value.strip()


@dataclass(frozen=True)
class Fraction(Rule):
    allowed = "a number in (0, 1)"

    def __call__(self, value: Any, key: str) -> float:
        if not is_number(value) or not 0 < value < 1:
            raise bad(key, value, self.allowed)
        return float(value)


@dataclass(frozen=True)
class Grid(Rule):
    """A ``{start, stop, step}`` mapping, as :func:`value_grid`'s array, within [lo, hi] (``probability``:
    every value in (0, 1))."""

    allowed = "a mapping of numbers start, stop, step"
    probability: bool = False

    def __call__(self, value: Any, key: str) -> np.ndarray:
        grid = value_grid(value, key)
        return probabilities(grid, key, value) if self.probability else grid


@dataclass(frozen=True)
class Probabilities(Rule):
    """A list of numbers in (0, 1), rounded to 10 decimals (``increasing``: strictly, non-empty)."""

    increasing: bool = False

    @property
    def allowed(self) -> str:
        return ("a non-empty list of strictly increasing numbers in (0, 1)" if self.increasing
                else "a list of numbers in (0, 1)")

    def __call__(self, value: Any, key: str) -> np.ndarray:
        if not isinstance(value, list) or not all(is_number(p) for p in value) \
                or (self.increasing and any(a >= b for a, b in zip(value, value[1:]))):
            raise bad(key, value, self.allowed)
        return probabilities(np.round(np.array(value, dtype=np.float64), 10), key, value)


@dataclass(frozen=True)
class Custom(Rule):
    """Any other check: ``check(value, key)`` returns the typed value or raises :func:`bad`."""

    check: Callable[[Any, str], Any]
    allowed: str = ""

    def __call__(self, value: Any, key: str) -> Any:
        return self.check(value, key)


def value_grid(spec: Any, name: str) -> np.ndarray:
    """start, start + step, ... up to stop included, rounded to 10 decimals (no float noise)."""
    if not isinstance(spec, dict) or set(spec) != {"start", "stop", "step"} \
            or not all(is_number(spec[k]) for k in ("start", "stop", "step")):
        raise bad(name, spec, "a mapping of numbers start, stop, step")
    start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
    if step <= 0 or stop < start:
        raise bad(name, spec, "step > 0 and stop >= start")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > MAX_GRID_POINTS:
        raise bad(name, spec, f"at most {MAX_GRID_POINTS} points (a larger step)")
    return np.round(start + step * np.arange(n), 10)


def probabilities(values: np.ndarray, name: str, shown: Any) -> np.ndarray:
    if len(values) == 0 or not np.all((values > 0) & (values < 1)):
        raise bad(name, shown, "values in (0, 1)")
    return values


# --------------------------------------------------------------------------- sections


def section(params: dict[str, Any], name: str, optional: bool = False) -> dict[str, Any]:
    """``params[name]``, a mapping (``optional``: missing or null mean empty)."""
    value = params.get(name)
    if optional and value is None:
        return {}
    if not isinstance(value, dict):
        raise StageError(f"params.yaml: section {name!r} is missing or not a mapping")
    return value


def known(s: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
    """Refuse keys the schema does not know (a typo would otherwise be silently ignored)."""
    unknown = [str(k) for k in s if k not in keys]
    if unknown:
        raise StageError(f"params.yaml: {prefix}.{unknown[0]} is not a known key; allowed: {', '.join(keys)}")


def rules(cls: type) -> dict[str, tuple[Rule, Any]]:
    """The declared keys of a section dataclass: params key -> (rule, default or REQUIRED)."""
    return {f.metadata["key"] or f.name: (f.metadata["rule"], f.default)
            for f in dataclasses.fields(cls) if "rule" in f.metadata}


def read(s: dict[str, Any], prefix: str, key: str, r: Rule, default: Any = REQUIRED) -> Any:
    """One key: checked by ``r``; its default when left out (an error if it has none)."""
    if key not in s:
        if default is REQUIRED:
            raise StageError(f"params.yaml: {prefix}.{key} is missing; allowed: {r.allowed}")
        return default
    return r(s[key], f"{prefix}.{key}")


def read_section(s: dict[str, Any], prefix: str, cls: type | dict[str, tuple[Rule, Any]],
                 extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every key declared by ``cls`` (a section dataclass, or a mapping key -> (rule, default)) read
    from section ``s``, by field name; unknown keys refused (``extra_keys`` are read elsewhere)."""
    declared = cls if isinstance(cls, dict) else rules(cls)
    names = {k: k for k in declared} if isinstance(cls, dict) else {
        f.metadata["key"] or f.name: f.name for f in dataclasses.fields(cls) if "rule" in f.metadata}
    known(s, prefix, tuple(declared) + extra_keys)
    return {names[key]: read(s, prefix, key, r, default) for key, (r, default) in declared.items()}


class Seeds(tuple):
    """The training seeds, in params order; :attr:`first` is the run whose per-run outputs stand for
    all (the certify stage, the logged model, the training curve and the report's first-seed rows)."""

    @property
    def first(self) -> int:
        return self[0]
