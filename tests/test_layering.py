"""The layering the README's Layout section states: the library (src/eeoffload) imports nothing
from pipeline/, no stage module imports another stage module (shared readers live in
pipeline/core/artifacts.py, pipeline/core/run_inputs.py and pipeline/core/splits.py), pipeline/core
imports only itself and the library, there is one command line (pipeline/cli.py, standard library
only), and no module is over 350 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def stage_modules() -> set[str]:
    """The modules dvc.yaml runs as stages (``python -m pipeline <name>``: pipeline/<name>.py)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cmds = [spec.get("do", spec)["cmd"] for spec in stages.values()]
    assert all(c.startswith("python -m pipeline ") for c in cmds), cmds
    return {f"pipeline.{c.split()[3]}" for c in cmds}


def test_library_imports_nothing_from_pipeline() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "pipeline")
                 for p in (ROOT / "src" / "eeoffload").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_stage_module_imports_another_stage() -> None:
    stages = stage_modules()
    assert {"pipeline.train", "pipeline.evaluate", "pipeline.report"} <= stages
    offenders = {}
    for module in stages:
        path = ROOT / (module.replace(".", "/") + ".py")
        others = sorted(m for m in imported_modules(path) if m in stages - {module}
                        or any(m.startswith(s + ".") for s in stages - {module}))
        if others:
            offenders[module] = others
    assert offenders == {}


def _closure(module: str, seen: set[str] | None = None) -> set[str]:
    """``module`` and every pipeline/ or eeoffload module it imports, transitively (from the source)."""
    seen = set() if seen is None else seen
    if module in seen:
        return seen
    seen.add(module)
    base = ROOT / "src" if module.startswith("eeoffload") else ROOT
    path = base / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = base / module.replace(".", "/") / "__init__.py"
    if not path.is_file():
        return seen
    for m in imported_modules(path):
        if m.split(".")[0] in ("pipeline", "eeoffload"):
            _closure(m, seen)
    return seen


def test_no_stage_imports_prefect_or_mlflow() -> None:
    """The stages run where DVC, Prefect and MLflow are not installed (the GPU machine): only
    pipeline/orchestration may import Prefect or MLflow."""
    offenders = {}
    for module in stage_modules():
        for m in _closure(module):
            base = ROOT / "src" if m.startswith("eeoffload") else ROOT
            path = base / (m.replace(".", "/") + ".py")
            if path.is_file():
                bad = sorted(x for x in imported_modules(path) if x.split(".")[0] in ("prefect", "mlflow", "dvc"))
                if bad:
                    offenders[m] = bad
    assert offenders == {}


def test_core_imports_only_core_and_the_library() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "pipeline"
                                                  and not m.startswith("pipeline.core"))
                 for p in (ROOT / "pipeline" / "core").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


#: Processes the measure_link stage starts (``python -m pipeline.link.edge CONFIG``): entry points of
#: child processes, not command lines of their own.
CHILD_PROCESSES = {"pipeline/link/edge.py", "pipeline/link/cloud.py", "pipeline/link/reaper.py"}


def test_one_command_line() -> None:
    """``python -m pipeline <command>`` is the only command line: no module of pipeline/ has a
    ``__main__`` block of its own, and pipeline/cli.py imports only the standard library at module
    level (so it runs where pydantic, typer, DVC, Prefect and MLflow are absent: the GPU machine)."""
    mains = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py")
                   if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))
    assert set(mains) == CHILD_PROCESSES
    tree = ast.parse((ROOT / "pipeline" / "cli.py").read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    import sys

    assert top - {"__future__"} <= set(sys.stdlib_module_names), top


def test_no_module_over_350_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for folder in ("src", "pipeline") for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 350}
    assert long == {}
