"""Run the stages of dvc.yaml with plain Python, in dependency order, without DVC.

    python -m pipeline plain-run [--dry-run] [--until STAGE] [--parallel STAGE ...]

For a machine that has the stages' packages but not DVC, Prefect or MLflow: the lent GPU
machine (docs/performance.md, section 5). It expands each ``foreach: ${variants}`` over
params.yaml as DVC does (``${key}``: the variant's name), and each ``matrix`` (``${item.variant}``,
``${item.seed}``: one instance per variant x seed, named ``train@one_branch-0``), orders the stages by their deps and outs,
and runs each ``cmd`` in the project root, stopping at the first failure. It records nothing:
back on a machine with DVC, ``dvc commit`` records the outputs, or ``dvc repro`` redoes what
differs. ``--parallel train logits`` runs the instances of those ``foreach`` stages (one per
variant) as concurrent processes, which a GPU left mostly idle by one small model absorbs.
``--until`` takes a stage (``train@two_branch``) or a foreach stage's name (``logits``: all its
instances); ``--only calibrate evaluate`` runs just those (on inputs already there, e.g. a shipped
results bundle: ``python -m pipeline paper``). ``--batched-train`` trains each variant's seeds as one batched
model (``python -m pipeline train-batched <variant>``, the same per-run outputs) in place of its
``train`` instances. Needs only PyYAML.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


class PlanError(ValueError):
    """dvc.yaml uses something this runner does not support, or its stages form a cycle."""


@dataclass(frozen=True)
class Stage:
    name: str  # as DVC names it: "train@one_branch", "evaluate"
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]


def _paths(entries: list[Any] | None) -> list[str]:
    """Paths of a deps/outs/plots/metrics list (plain strings or one-key mappings with options)."""
    out = []
    for entry in entries or []:
        out.append(entry if isinstance(entry, str) else next(iter(entry)))
    return out


def _substitute(text: str, values: dict[str, str], where: str) -> str:
    """``${key}`` (foreach) or ``${item.<axis>}`` (matrix) replaced by this instance's values."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise PlanError(f"{where}: ${{{match.group(1)}}} is not supported here (allowed: "
                            + ", ".join(f"${{{k}}}" for k in values) + ")")
        return values[match.group(1)]

    return _TEMPLATE.sub(one, text)


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _items(spec: Any, params: dict[str, Any], where: str) -> list[str]:
    """The values of a foreach or a matrix axis: ``${a.b}`` naming a params mapping (its keys) or list,
    or a literal list, as DVC iterates them."""
    match = _TEMPLATE.fullmatch(str(spec)) if isinstance(spec, str) else None
    value = _lookup(params, match.group(1)) if match else spec
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list) and value:
        return [str(v) for v in value]
    raise PlanError(f"{where}: must name a params.yaml mapping or list, or be a list; got {spec!r}")


def _instances(name: str, spec: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(DVC's instance name, substitutions) of a stage: ``name@key`` per foreach key, ``name@a-b`` per
    combination of the matrix axes (in dvc.yaml's axis order), or the stage itself."""
    if "foreach" in spec:
        return [(f"{name}@{k}", {"key": k}) for k in _items(spec["foreach"], params, f"stage {name}: foreach")]
    if "matrix" in spec:
        axes = [(axis, _items(v, params, f"stage {name}: matrix.{axis}")) for axis, v in spec["matrix"].items()]
        combos: list[list[str]] = [[]]
        for _, values in axes:
            combos = [c + [v] for c in combos for v in values]
        return [(f"{name}@{'-'.join(c)}", {f"item.{axis}": v for (axis, _), v in zip(axes, c)}) for c in combos]
    return [(name, {})]


def expand_stages(dvc: dict[str, Any], params: dict[str, Any]) -> list[Stage]:
    """Every stage of a parsed dvc.yaml, ``foreach`` and ``matrix`` stages expanded over params."""
    stages = []
    for name, spec in (dvc.get("stages") or {}).items():
        body = spec["do"] if "foreach" in spec else spec
        for label, values in _instances(name, spec, params):
            sub = (lambda s, v=values, w=label: _substitute(s, v, w))  # noqa: E731
            outs = _paths(body.get("outs")) + _paths(body.get("plots")) + _paths(body.get("metrics"))
            stages.append(Stage(label, sub(body["cmd"]), tuple(sub(p) for p in _paths(body.get("deps"))),
                                tuple(sub(p) for p in outs)))
    return stages


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def dependency_order(stages: list[Stage]) -> list[Stage]:
    """The stages in an order where each runs after every stage whose outs it depends on
    (a dep equal to, inside or containing an out); ties keep dvc.yaml's order."""
    after = {s.name: {t.name for t in stages if t is not s and any(_overlaps(d, o) for d in s.deps for o in t.outs)}
             for s in stages}
    ordered: list[Stage] = []
    done: set[str] = set()
    while len(ordered) < len(stages):
        ready = [s for s in stages if s.name not in done and after[s.name] <= done]
        if not ready:
            raise PlanError("the stages' deps and outs form a cycle: "
                            + ", ".join(s.name for s in stages if s.name not in done))
        ordered.append(ready[0])
        done.add(ready[0].name)
    return ordered


def plan(root: Path) -> list[Stage]:
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    return dependency_order(expand_stages(dvc, params))


def batch_train_stages(stages: list[Stage]) -> list[Stage]:
    """The plan with each variant's ``train@<variant>-<seed>`` instances replaced, where the first of
    them stood, by one ``train@<variant>`` stage running ``pipeline.train_batched`` for all its seeds."""
    out: list[Stage] = []
    merged: dict[str, Stage] = {}
    for stage in stages:
        base, _, label = stage.name.partition("@")
        if base != "train" or "-" not in label:
            out.append(stage)
            continue
        variant = label.rsplit("-", 1)[0]
        if variant not in merged:
            merged[variant] = Stage(f"train@{variant}", f"python -m pipeline train-batched {variant}", (), ())
            out.append(merged[variant])
        s = merged[variant]
        merged[variant] = Stage(s.name, s.cmd, s.deps + stage.deps, s.outs + stage.outs)
    return [merged.get(s.name.partition("@")[2], s) if s.name.startswith("train@") else s for s in out]


def stage_groups(stages: list[Stage], parallel: set[str]) -> list[list[Stage]]:
    """The plan as groups run one after another: consecutive instances of a foreach stage named in
    ``parallel`` form one group (run concurrently); every other stage is a group of its own."""
    groups: list[list[Stage]] = []
    for stage in stages:
        base = stage.name.split("@")[0]
        if groups and base in parallel and groups[-1][0].name.split("@")[0] == base:
            groups[-1].append(stage)
        else:
            groups.append([stage])
    return groups


def _command(stage: Stage) -> list[str]:
    """The stage's command with this interpreter: ``python -m pipeline <stage> ...`` (pipeline/cli.py,
    standard library only: it needs no pydantic, absent on the GPU machine)."""
    return [sys.executable if w == "python" else w for w in shlex.split(stage.cmd)]


def run_group(group: list[Stage], root: Path) -> int:
    """Run a group's stages concurrently; the first non-zero exit status, else 0."""
    start = time.perf_counter()
    procs = [(stage, subprocess.Popen(_command(stage), cwd=root)) for stage in group]
    worst = 0
    for stage, proc in procs:
        rc = proc.wait()
        print(f"== {stage.name}: exit {rc} after {time.perf_counter() - start:.1f} s", flush=True)
        worst = worst or rc
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline plain-run", description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the commands in order, run nothing")
    ap.add_argument("--until", default=None, help="stop after this stage (e.g. train@two_branch, or logits)")
    ap.add_argument("--parallel", nargs="*", default=[], metavar="STAGE",
                    help="foreach stages whose instances run concurrently (e.g. train logits)")
    ap.add_argument("--only", nargs="*", default=None, metavar="STAGE",
                    help="run only these stages (names or foreach names), in plan order; their inputs must exist")
    ap.add_argument("--batched-train", action="store_true",
                    help="train each variant's seeds as one batched model (pipeline.train_batched)")
    args = ap.parse_args(argv)
    root = Path.cwd()
    try:
        stages = plan(root)
        if args.batched_train:
            stages = batch_train_stages(stages)
    except (OSError, PlanError, KeyError, yaml.YAMLError) as e:
        print(f"plain_run: {e}", file=sys.stderr)
        return 2
    names = {s.name for s in stages}
    bases = {s.name.split("@")[0] for s in stages}
    if args.until is not None and args.until not in names | bases:
        print(f"plain_run: --until {args.until!r}: no such stage; stages: {', '.join(s.name for s in stages)}",
              file=sys.stderr)
        return 2
    for option, given in (("--parallel", args.parallel), ("--only", args.only or [])):
        unknown = sorted(set(given) - bases - names)
        if unknown:
            print(f"plain_run: {option} {unknown[0]!r}: no such stage; allowed: {', '.join(sorted(bases))}",
                  file=sys.stderr)
            return 2
    if args.only is not None:
        stages = [s for s in stages if s.name in args.only or s.name.split("@")[0] in args.only]
    total = time.perf_counter()
    for group in stage_groups(stages, set(args.parallel)):
        for stage in group:
            print(f"== {stage.name}: {stage.cmd}", flush=True)
        if not args.dry_run:
            rc = run_group(group, root)
            if rc != 0:
                return rc
        group_names = {s.name for s in group} | {s.name.split("@")[0] for s in group}
        if args.until in group_names and not (args.until in bases and any(
                s.name.split("@")[0] == args.until for s in stages[stages.index(group[-1]) + 1:])):
            break
    if not args.dry_run:
        print(f"== all stages: {(time.perf_counter() - total) / 60:.2f} min", flush=True)
    return 0
