"""The project modules a stage's code can run, found statically (``ast``), and dvc.yaml's code deps
checked against them (tests/test_dvc_contract.py).

A stage's *closure* is the set of project files (``src/eeoffload/**.py``, ``pipeline/**.py``)
reachable from its command module through import statements: ``import a.b``, ``from a import b``
(``b`` a submodule or a name), relative imports, imports inside functions (lazy imports count: they
run when the stage does), and string constants that are exactly a project module's dotted name
(``python -m pipeline.link.edge`` spawned as a subprocess, ``importlib.import_module``). Imports
under ``if TYPE_CHECKING:`` never run and are skipped. Importing ``a.b.c`` also runs the packages
``a`` and ``a.b`` (their ``__init__.py``).

Plumbing that cannot change any value a stage writes is exempt (:data:`EXEMPT`): neither required
in deps nor allowed there, and not followed (what only plumbing imports is not the stage's code).
A package ``__init__.py`` holding nothing but a docstring is exempt by rule (:func:`is_marker`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Top-level project packages and the folder each is imported from.
PACKAGES = {"eeoffload": Path("src"), "pipeline": Path(".")}

#: Plumbing that cannot change a value a stage writes: path (relative to the root) -> why.
#: pipeline/core/params.py is *not* here: it parses params.yaml into the values a stage uses (defaults
#: such as latency.remeasure, the p_tar grid built from start/stop/step), so a change there can
#: change an output and it is a dep of every stage that imports it.
EXEMPT = {
    "pipeline/__main__.py": "`python -m pipeline`: the interpreter check (pipeline/core/interpreter.py), then cli.main",
    "pipeline/cli.py": "dispatch only: `python -m pipeline <stage>` imports pipeline/<stage>.py (the closure's root)",
    "pipeline/core/io.py": "stage runner, StageError, params.yaml loading, schema-checking readers: reject input, never "
                      "change a value (its timing record is a wall time)",
    "pipeline/core/atomic.py": "atomic writes: the same bytes as a plain write, or no file",
    "pipeline/core/registry.py": "paths only; dvc.yaml spells each of them (tests/test_registry.py), so a path change is a "
                            "dvc.yaml change",
    "pipeline/core/runtime.py": "glibc malloc settings for speed: no value changes (docs/performance.md)",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file (relative to ``root``) of project module ``name`` (dotted), or None if it is not one."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = PACKAGES[parts[0]] / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    """The dotted name of project file ``path`` (relative to the root)."""
    for top, folder in PACKAGES.items():
        try:
            rel = path.relative_to(folder)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] == top:
            parts = list(rel.with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path}: not a project module")


def is_marker(path: Path, root: Path = ROOT) -> bool:
    """A package ``__init__.py`` with nothing but a docstring (running it changes nothing)."""
    if path.name != "__init__.py":
        return False
    body = ast.parse((root / path).read_text(encoding="utf-8")).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names ``path`` may import (project or not; the caller keeps the project ones)."""
    tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the TYPE_CHECKING branch never runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.update(_with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.update(_with_parents(base))
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _IDENT.match(node.value):
            names.update(_with_parents(node.value))  # e.g. a subprocess's `-m pipeline.link.edge`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def closure(start: Path, root: Path = ROOT, exempt: Iterable[str] = EXEMPT) -> set[str]:
    """Project files (root-relative strings) reachable from ``start`` by imports, ``start`` included,
    exempt plumbing and docstring-only package markers left out (and not followed)."""
    exempt = set(exempt)
    seen: set[str] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        key = path.as_posix()
        if key in seen or key in exempt or is_marker(path, root):
            continue
        seen.add(key)
        for name in imported_names(path, root):
            found = module_file(name, root)
            if found is not None:
                todo.append(found)
    return seen


# ----------------------------------------------------------------------------- dvc.yaml's deps


def stage_module(cmd: str) -> str | None:
    """The module a stage's command runs: ``python -m pipeline <stage> ...`` -> ``pipeline.<stage>``
    (pipeline/cli.py imports exactly that module), ``python -m pipeline.<x>`` -> ``pipeline.<x>``."""
    words = cmd.split()
    if "-m" not in words or words.index("-m") + 1 >= len(words):
        return None
    module = words[words.index("-m") + 1]
    if module == "pipeline":
        return f"pipeline.{words[words.index('-m') + 2].replace('-', '_')}"
    return module


def is_code_path(path: str) -> bool:
    """A dep inside a project package (a module, a package folder, a template)."""
    folders = [(folder / top).as_posix() for top, folder in PACKAGES.items()]
    return any(path == f or path.startswith(f + "/") for f in folders)


def _normalise(path: Path) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


@dataclass
class StageCheck:
    """One stage of a dvc.yaml: its closure against its code deps."""

    stage: str
    module: str
    missing: list[str] = field(default_factory=list)  # closure files no dep covers
    extra: list[str] = field(default_factory=list)  # .py deps (or .py files in a dep folder) outside the closure

    def message(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing from deps (imported by {self.module}): {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"listed in deps but not in {self.module}'s import closure: {', '.join(self.extra)}")
        return f"stage {self.stage}: " + "; ".join(parts)


def check_stage(stage: str, cmd: str, deps: Iterable[str], root: Path = ROOT,
                exempt: Iterable[str] = EXEMPT) -> StageCheck:
    """Compare a stage's code deps (root-relative) with its command module's import closure."""
    module = stage_module(cmd)
    start = module_file(module, root) if module else None
    if start is None:
        raise ValueError(f"stage {stage}: command {cmd!r} runs no project module")
    need = closure(start, root, exempt)
    covered: set[str] = set()
    extra: list[str] = []
    for dep in deps:
        if not is_code_path(dep):
            continue
        target = root / dep
        if target.is_dir():
            files = sorted(p.relative_to(root).as_posix() for p in target.rglob("*.py"))
            outside = [f for f in files if f not in need and not is_marker(Path(f), root)]
            extra += [f"{f} (in dep folder {dep})" for f in outside]
            covered.update(files)
        elif dep.endswith(".py"):
            covered.add(dep)
            if dep not in need:
                extra.append(dep)
    return StageCheck(stage, module or "", sorted(need - covered), extra)


def _stage_deps(body: dict[str, Any], dvc_dir: Path) -> list[str]:
    wdir = dvc_dir / body.get("wdir", ".")
    deps = []
    for entry in body.get("deps") or []:
        path = next(iter(entry)) if isinstance(entry, dict) else str(entry)
        deps.append(_normalise(wdir / path))
    return deps


def check_dvc_file(dvc_file: Path, dvc_dir: Path | None = None, root: Path = ROOT,
                   exempt: Iterable[str] = EXEMPT) -> list[StageCheck]:
    """Every stage of ``dvc_file`` (``foreach``/``matrix`` stages once: their code deps are not
    templated) checked against its closure; only the stages that fail are returned. ``dvc_dir``: the
    folder (relative to ``root``) the file's paths are relative to (default: the file's own)."""
    dvc = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    if dvc_dir is None:
        dvc_dir = dvc_file.resolve().parent.relative_to(root)
    failures = []
    for name, spec in (dvc.get("stages") or {}).items():
        body = spec["do"] if "foreach" in spec else spec
        result = check_stage(name, body["cmd"], _stage_deps(body, dvc_dir), root, exempt)
        if result.missing or result.extra:
            failures.append(result)
    return failures
