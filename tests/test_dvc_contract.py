"""dvc.yaml is a contract DVC can trust (issue 22).

1. Code deps: every stage of dvc.yaml (and of the optional link/dvc.yaml) lists exactly the project
   modules its command can run: the static import closure of ``pipeline/<stage>.py`` inside
   src/eeoffload and pipeline/ (tests/import_closure.py), less the documented plumbing of
   :data:`tests.import_closure.EXEMPT`. A dep missing means editing that module does not re-run the
   stage; an extra .py dep means a needless re-run.
2. Plots: every file a top-level plot or a stage's ``plots:`` names is written by a stage (an out of
   some stage instance, the ``foreach``/``matrix`` stages expanded over params.yaml and over
   params.yaml with each configs/ overlay), and every template is built in or a file of the project,
   so `dvc plots show` never reports a failed load.
3. Paths: no stage's code spells an artifact path (``"data/..."``, ``"reports/..."``); each comes
   from pipeline/core/registry.py, which tests/test_registry.py checks against dvc.yaml.

Each check is also run on a seeded drift (a copy of dvc.yaml with one thing changed) and must fail.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.overlay import load_overlay, merge
from pipeline.tools.plain_run import expand_stages
from tests.import_closure import EXEMPT, ROOT, check_dvc_file, check_stage, closure, is_marker, stage_module

DVC_FILES = [p for p in (ROOT / "dvc.yaml", ROOT / "link" / "dvc.yaml") if p.is_file()]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
#: params.yaml, and params.yaml under every shipped overlay (the seeds and variants a run may have).
PARAMS_SETS = {"params.yaml": PARAMS} | {
    f"params.yaml + {p.relative_to(ROOT)}": merge(PARAMS, load_overlay(p)) for p in sorted((ROOT / "configs").glob("*.yaml"))}
#: DVC's built-in plot templates (`dvc plots templates`).
BUILTIN_TEMPLATES = {"simple", "linear", "confusion", "confusion_normalized", "scatter", "scatter_jitter", "smooth",
                     "bar_horizontal", "bar_horizontal_sorted"}


# ----------------------------------------------------------------------------- 1. code deps


@pytest.mark.parametrize("dvc_file", DVC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_deps_are_the_import_closure(dvc_file: Path) -> None:
    failures = check_dvc_file(dvc_file)
    assert not failures, "\n".join(f.message() for f in failures)


def test_exemptions_are_real_files_with_one_line_reasons() -> None:
    for path, reason in EXEMPT.items():
        assert (ROOT / path).is_file(), path
        assert reason.strip() and "\n" not in reason, path
    assert "pipeline/core/params.py" not in EXEMPT  # it turns params.yaml into the values stages use (defaults, grids)
    for dvc_file in DVC_FILES:  # no stage's own module is plumbing
        for name, spec in yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"].items():
            module = stage_module(spec.get("do", spec)["cmd"])
            assert module and module.replace(".", "/") + ".py" not in EXEMPT, name


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "src/eeoffload/__init__.py": '"""Docstring only: a marker."""\n',
        "src/eeoffload/a.py": "from eeoffload import b\nimport eeoffload.c as c\n",
        "src/eeoffload/b.py": "def f():\n    from eeoffload.lazy import g\n    return g\n",  # lazy import
        "src/eeoffload/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from eeoffload import typed\n"
                              "else:\n    from . import relative\n",
        "src/eeoffload/lazy.py": "", "src/eeoffload/typed.py": "", "src/eeoffload/relative.py": "",
        "src/eeoffload/unused.py": "",
        "pipeline/__init__.py": '"""Marker."""\n',
        "pipeline/stage.py": "import subprocess\nfrom pipeline import helper, plumbing\nfrom eeoffload.a import x\n"
                             "subprocess.run(['python', '-m', 'pipeline.child'])\n",
        "pipeline/helper.py": "", "pipeline/child.py": "",
        "pipeline/plumbing.py": "from eeoffload import unused\n",  # exempt: neither kept nor followed
    })
    got = closure(Path("pipeline/stage.py"), tmp_path, exempt={"pipeline/plumbing.py": "test"})
    assert got == {"pipeline/stage.py", "pipeline/helper.py", "pipeline/child.py", "src/eeoffload/a.py",
                   "src/eeoffload/b.py", "src/eeoffload/c.py", "src/eeoffload/lazy.py", "src/eeoffload/relative.py"}
    assert is_marker(Path("pipeline/__init__.py"), tmp_path)
    result = check_stage("s", "python -m pipeline stage", ["pipeline/stage.py", "pipeline/helper.py",
                                                            "pipeline/plumbing.py", "src/eeoffload", "data/x"],
                         tmp_path, exempt={"pipeline/plumbing.py": "test"})
    assert result.missing == ["pipeline/child.py"]
    assert result.extra == ["pipeline/plumbing.py", "src/eeoffload/typed.py (in dep folder src/eeoffload)",
                            "src/eeoffload/unused.py (in dep folder src/eeoffload)"]


def _drifted(tmp_path: Path, edit: Any) -> Path:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    edit(dvc["stages"])
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(dvc, sort_keys=False), encoding="utf-8")
    return path


def test_a_removed_dep_fails(tmp_path: Path) -> None:
    path = _drifted(tmp_path, lambda st: st["evaluate"]["deps"].remove("src/eeoffload/statistics.py"))
    failures = check_dvc_file(path, dvc_dir=Path("."))
    assert [(f.stage, f.missing, f.extra) for f in failures] == [("evaluate", ["src/eeoffload/statistics.py"], [])]
    assert "stage evaluate" in failures[0].message() and "src/eeoffload/statistics.py" in failures[0].message()


def test_an_extra_dep_fails(tmp_path: Path) -> None:
    path = _drifted(tmp_path, lambda st: st["calibrate"]["deps"].append("src/eeoffload/data.py"))
    failures = check_dvc_file(path, dvc_dir=Path("."))
    assert [(f.stage, f.missing, f.extra) for f in failures] == [("calibrate", [], ["src/eeoffload/data.py"])]


def test_a_listed_plumbing_module_fails(tmp_path: Path) -> None:
    path = _drifted(tmp_path, lambda st: st["train"]["deps"].append("pipeline/core/registry.py"))
    assert [(f.stage, f.extra) for f in check_dvc_file(path, dvc_dir=Path("."))] == [("train", ["pipeline/core/registry.py"])]


# ----------------------------------------------------------------------------- 2. plots


def _entry(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    (name, props), = entry.items()
    return name, props or {}


def plot_files(dvc: dict[str, Any]) -> dict[str, list[str]]:
    """{plot id: the data files it reads} of dvc.yaml's top-level plots."""
    files = {}
    for entry in dvc.get("plots") or []:
        name, props = _entry(entry)
        named = [f for key in ("x", "y") if isinstance(props.get(key), dict) for f in props[key]]
        files[name] = list(dict.fromkeys(named)) or [name]  # no file mapping: the id is the file
    return files


def plot_problems(dvc: dict[str, Any], params_sets: dict[str, dict[str, Any]], root: Path = ROOT) -> list[str]:
    """What `dvc plots show` would fail to load: a plot file no stage writes (under some params set),
    or a template that is neither built in nor a project file."""
    problems = []
    templates = [(name, props.get("template")) for name, props in map(_entry, dvc.get("plots") or [])]
    for spec in (dvc.get("stages") or {}).values():
        body = spec.get("do", spec)
        templates += [(n, p.get("template")) for n, p in map(_entry, body.get("plots") or [])]
    for name, template in templates:
        if template and template not in BUILTIN_TEMPLATES and not (root / template).is_file():
            problems.append(f"plot {name}: template {template} is neither built in nor a file")
    for label, params in params_sets.items():
        outs = {o for stage in expand_stages(dvc, params) for o in stage.outs}
        for name, files in plot_files(dvc).items():
            for f in files:
                if not any(f == o or f.startswith(o.rstrip("/") + "/") for o in outs):
                    problems.append(f"plot {name}: {f} is written by no stage (with {label})")
    return problems


def test_every_plot_reads_a_file_a_stage_writes() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    assert plot_files(dvc), "dvc.yaml declares no plots"
    assert plot_problems(dvc, PARAMS_SETS) == []


def test_training_plots_read_the_histories_columns() -> None:
    """The training plots' fields are columns of the history (docs/interfaces.md) and its exits."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    for entry in dvc["plots"]:
        name, props = _entry(entry)
        for path, fields in (props.get("y") or {}).items():
            if not path.startswith("reports/training/"):
                continue
            variant = Path(path).parent.name
            n_exits = len(PARAMS["variants"][variant]["branches"]) + 1
            columns = {"epoch", "phase", "train_loss", "val_loss"} | {
                f"val_{kind}_exit{k}" for kind in ("acc", "temperature") for k in range(1, n_exits + 1)}
            missing = {props["x"], *([fields] if isinstance(fields, str) else fields)} - columns
            assert not missing, f"plot {name}: {path} has no column(s) {sorted(missing)}"


def test_a_stale_plot_fails() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    stale = copy.deepcopy(dvc)
    stale["plots"].append({"old_history": {"x": "epoch", "y": {"reports/training/one_branch.csv": "val_loss"}}})
    assert plot_problems(stale, {"params.yaml": PARAMS}) == [
        "plot old_history: reports/training/one_branch.csv is written by no stage (with params.yaml)"]
    unwritten = copy.deepcopy(dvc)  # the history no longer an out of train
    unwritten["stages"]["train"]["outs"].remove("reports/training/${item.variant}/seed${item.seed}.csv")
    assert any("training_loss: reports/training/one_branch/seed0.csv is written by no stage" in p
               for p in plot_problems(unwritten, {"params.yaml": PARAMS}))
    no_seed0 = merge(PARAMS, {"train": {"seeds": [1, 2]}})
    assert any("seed0.csv" in p for p in plot_problems(dvc, {"seeds 1, 2": no_seed0}))
    bad_template = copy.deepcopy(dvc)
    bad_template["plots"][0]["fig2_p_device"]["template"] = "pipeline/templates/missing.json"
    assert plot_problems(bad_template, {"params.yaml": PARAMS}) == [
        "plot fig2_p_device: template pipeline/templates/missing.json is neither built in nor a file"]


# ----------------------------------------------------------------------------- 3. paths from the registry


def path_literals(path: Path, root: Path = ROOT) -> list[str]:
    """String constants of ``path`` that spell an artifact path (``"data/..."``, ``"reports/..."``, or
    ``"data"``/``"reports"`` joined with ``/``), docstrings aside: pipeline/core/registry.py's job."""
    tree = ast.parse((root / path).read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    joined = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
              for side in (node.left, node.right)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if re.match(r"^(data|reports)/", node.value) or (node.value in ("data", "reports") and id(node) in joined):
                found.append(f"{path}:{node.lineno}: {node.value!r}")
    return found


def stage_code() -> list[str]:
    """The pipeline/ modules of every stage's closure (the registry and plumbing aside)."""
    files: set[str] = set()
    for dvc_file in DVC_FILES:
        for spec in yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"].values():
            module = stage_module(spec.get("do", spec)["cmd"])
            files |= closure(Path(str(module).replace(".", "/") + ".py"))
    return sorted(f for f in files if f.startswith("pipeline/"))


def test_stages_build_paths_only_from_the_registry() -> None:
    code = stage_code()
    assert {"pipeline/prepare.py", "pipeline/plots.py", "pipeline/report.py", "pipeline/core/splits.py"} <= set(code)
    assert [hit for f in code for hit in path_literals(Path(f))] == []


def test_a_path_literal_is_found(tmp_path: Path) -> None:
    _write(tmp_path, {"pipeline/x.py": '"""Writes reports/x.csv (a docstring: fine)."""\nfrom pathlib import Path\n'
                                       'A = Path("reports/x.csv")\nB = Path(".") / "data" / "y"\nC = {"data": 1}\n'})
    assert path_literals(Path("pipeline/x.py"), tmp_path) == ["pipeline/x.py:3: 'reports/x.csv'",
                                                               "pipeline/x.py:4: 'data'"]
