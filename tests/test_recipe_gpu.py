"""The prepared GPU call of the accuracy-regime study (benchmarks/recipe_gpu.py), dry-run on the CPU
with tiny epochs on the tests' own archive: search, rule, confirmation seeds, profiles, the precision
study, what comes back (at most 8 files), and the import back into a bundle that `pipeline.tools.paper
build` analyses."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from pipeline.tools.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_the_whole_call_on_tiny_data_and_its_import(tmp_path: Path, tiny_zip: Path) -> None:
    out, build = tmp_path / "out", tmp_path / "build"
    env = dict(scratch_env(ROOT), CIFAR10_ARCHIVE=str(tiny_zip))
    cmd = [sys.executable, "-m", "benchmarks.recipe_gpu", "--out", str(out), "--tiny", "--deadline-s", "900",
           "--build", str(build), "--only", "b32_none_adam", "b32bn_cropflip_sgd"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["chosen.yaml", "precision.tgz", "runs_one_branch.tar", "runs_two_branch.tar", "search.tgz"]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    with tarfile.open(out / "search.tgz") as tar:
        names = tar.getnames()
        choice = json.load(tar.extractfile("logs/choice.json"))
    assert {"logs/search_histories.csv", "logs/search_options.csv"} <= set(names)
    assert choice["candidate"] in ("b32_none_adam", "b32bn_cropflip_sgd")
    chosen = yaml.safe_load((out / "chosen.yaml").read_text())
    assert chosen["train"]["seeds"] == [0, 1]
    with tarfile.open(out / "precision.tgz") as tar:
        assert {"fp32/data/logits/one_branch/seed0.parquet", "bf16/data/logits/one_branch/seed1.parquet"} \
            <= set(tar.getnames())

    bundle = tmp_path / "bundle"
    imp = subprocess.run([sys.executable, "-m", "pipeline", "paper", "import", str(out), "--bundle", str(bundle),
                          "--commit", "test"], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert imp.returncode == 0, imp.stderr
    assert (bundle / "recipe.yaml").is_file() and (bundle / "search" / "choice.json").is_file()
    assert (bundle / "seed0" / "data" / "models" / "one_branch.pt").is_file()  # issue 24: the weights ship
    provenance = json.loads((bundle / "provenance.json").read_text())
    assert set(provenance["runs"]) == {f"seed{s}/{v}" for s in (0, 1) for v in ("one_branch", "two_branch")}

    dest = tmp_path / "analysis"
    built = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--bundle", str(bundle), "--dest",
                            str(dest), "-S", "evaluate.batch_size=64", "-S", "evaluate.resamples=5"],
                           cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    metrics = json.loads((dest / "reports" / "metrics.json").read_text())
    assert metrics["one_branch"]["calibrated"]["n_seeds"] == 2
    assert (dest / "reports" / "index.html").is_file()
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert params["model"]["batch_norm"] == (choice["candidate"] == "b32bn_cropflip_sgd")
