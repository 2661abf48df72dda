"""pipeline.tools.plain_run: the whole pipeline without DVC, Prefect or MLflow (as on the lent GPU
machine), in dvc.yaml's dependency order, with the same outputs as `dvc repro`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.tools.plain_run import PlanError, Stage, _command, batch_train_stages, dependency_order, expand_stages, plan
from pipeline.tools.scratch import make_scratch_project, scratch_env
from tests.conftest import ROOT, TINY_PARAMS, TinyRun

BLOCKED = ("dvc", "prefect", "mlflow", "pydantic")


def test_plan_expands_foreach_and_orders_by_deps() -> None:
    names = [s.name for s in plan(ROOT)]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    variants, seeds = list(params["variants"]), params["train"]["seeds"]
    dvc_stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    expected = {f"{n}@{v}" for n, spec in dvc_stages.items() if "foreach" in spec for v in variants}
    def matrix_seeds(spec: dict) -> list[int]:  # ${train.seeds}, or another params list (shift: ${shift.seeds})
        section, key = spec["matrix"]["seed"].strip("${}").split(".")
        return params[section][key]

    expected |= {f"{n}@{v}-{k}" for n, spec in dvc_stages.items() if "matrix" in spec for v in variants
                 for k in matrix_seeds(spec)}
    expected |= {n for n, spec in dvc_stages.items() if "foreach" not in spec and "matrix" not in spec}
    assert set(names) == expected and len(names) == len(expected)
    # the names DVC itself gives the instances
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT,
                            env=scratch_env(ROOT), text=True, capture_output=True)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == expected
    assert names[:2] == ["validate", "prepare"] and names[-1] == "report"
    for v in variants:
        for k in seeds:
            run = f"{v}-{k}"
            assert names.index(f"train@{run}") < names.index(f"logits@{run}") < names.index(f"calibrate@{run}")
            assert names.index(f"calibrate@{run}") < names.index("evaluate") < names.index("plots")
        assert names.index(f"profile@{v}") < names.index("evaluate")


def test_batched_train_replaces_each_variants_train_instances_by_one_stage() -> None:
    stages = plan(ROOT)
    batched = batch_train_stages(stages)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    trains = [s for s in batched if s.name.startswith("train@")]
    assert [s.name for s in trains] == [f"train@{v}" for v in params["variants"]]
    for s in trains:
        variant = s.name.split("@")[1]
        assert s.cmd == f"python -m pipeline train-batched {variant}"
        assert _command(s)[1:] == ["-m", "pipeline", "train-batched", variant]
        merged = [t for t in stages if t.name.startswith(f"train@{variant}-")]
        assert set(s.outs) == {o for t in merged for o in t.outs} and set(s.deps) == {d for t in merged for d in t.deps}
    others = [s for s in stages if not s.name.startswith("train@")]
    assert [s for s in batched if not s.name.startswith("train@")] == others
    names = [s.name for s in batched]
    assert all(names.index(f"train@{v}") < names.index(f"logits@{v}-{k}")
               for v in params["variants"] for k in params["train"]["seeds"])


def test_matrix_expands_over_params_lists_and_mappings() -> None:
    dvc = {"stages": {"s": {"matrix": {"variant": "${variants}", "seed": "${train.seeds}"},
                            "cmd": "run ${item.variant} ${item.seed}", "deps": ["in/${item.variant}"],
                            "outs": ["out/${item.variant}/seed${item.seed}"]}}}
    stages = expand_stages(dvc, {"variants": {"a": {}, "b": {}}, "train": {"seeds": [3, 7]}})
    assert [(s.name, s.cmd, s.outs) for s in stages] == [
        ("s@a-3", "run a 3", ("out/a/seed3",)), ("s@a-7", "run a 7", ("out/a/seed7",)),
        ("s@b-3", "run b 3", ("out/b/seed3",)), ("s@b-7", "run b 7", ("out/b/seed7",))]


def test_a_dep_inside_or_containing_an_out_orders_the_stages() -> None:
    a = Stage("a", "x", (), ("reports/timings/a.json",))
    b = Stage("b", "x", ("reports/timings",), ("reports/figures",))
    c = Stage("c", "x", ("reports/figures/fig2.png",), ())
    assert [s.name for s in dependency_order([b, a, c])] == ["a", "b", "c"]


def test_a_cycle_and_other_templates_are_clear_errors() -> None:
    a, b = Stage("a", "x", ("o_b",), ("o_a",)), Stage("b", "x", ("o_a",), ("o_b",))
    with pytest.raises(PlanError, match="cycle: a, b"):
        dependency_order([a, b])
    with pytest.raises(PlanError, match=r"\$\{item.x\} is not supported"):
        expand_stages({"stages": {"s": {"foreach": "${variants}", "do": {"cmd": "run ${item.x}"}}}},
                      {"variants": {"v": {}}})
    with pytest.raises(PlanError, match="foreach: must name a params.yaml mapping or list"):
        expand_stages({"stages": {"s": {"foreach": "${nothing}", "do": {"cmd": "run"}}}}, {})


@pytest.mark.integration
def test_plain_run_without_dvc_matches_dvc_repro(tiny_run: TinyRun, tiny_zip: Path,
                                                 tmp_path: Path) -> None:
    assert tiny_run.proc.returncode == 0, tiny_run.proc.stdout[-3000:] + tiny_run.proc.stderr[-3000:]
    overrides = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "archive": str(tiny_zip)}}
    root = make_scratch_project(tmp_path / "plain", overrides, vcs=False)
    assert not (root / ".dvc").exists() and not (root / ".git").exists()
    blocker = tmp_path / "blocked"  # these packages are missing on the GPU machine
    for name in BLOCKED:
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    env = scratch_env(root)
    env["PYTHONPATH"] = f"{blocker}:{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "plain-run"], cwd=root, env=env, text=True,
                          capture_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "== all stages:" in proc.stdout

    def files(base: Path) -> set[str]:
        return {str(p.relative_to(base)) for d in ("data", "reports") for p in (base / d).rglob("*")
                if p.is_file() and p.name != ".gitignore"}  # DVC's, for cached outputs

    assert files(root) == files(tiny_run.root)
    for rel in ("data/prepared/train.npz", "data/prepared/test.npz", "data/logits/one_branch/seed0.parquet"):  # deterministic outputs: the same bytes
        assert (root / rel).read_bytes() == (tiny_run.root / rel).read_bytes(), rel
    assert (root / "reports" / "index.html").stat().st_size > 10_000
