"""The layering the README's Layout section states: the library (src/eeoffload) imports nothing
from pipeline/, and no stage module imports another stage module (shared readers live in
pipeline/artifacts.py and pipeline/splits.py)."""

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
    """The modules dvc.yaml runs as stages (``python -m pipeline.<name>``)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cmds = [spec.get("do", spec)["cmd"] for spec in stages.values()]
    return {c.split()[2] for c in cmds if c.startswith("python -m pipeline.")}


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
