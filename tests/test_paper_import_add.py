"""``python -m pipeline paper import --add``: seeds of one recipe finished on different machines join
one bundle; a seed the bundle has, another recipe or no bundle is one line (exit 2), the bundle as
it was."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.core import registry as R
from pipeline.tools.paper_import import BundleError, import_device_output
from pipeline.tools.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("one_branch", "two_branch")


def device_output(out: Path, seeds: list[int], lr: float = 0.05) -> Path:
    """What benchmarks/paper_gpu.py brings back (``seed<s>_<v>.tgz`` per run), with placeholder
    files where the runs' outputs go; the first seed carries the latency profile."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update({"seeds": seeds, "lr": lr})
    for s in seeds:
        for v in VARIANTS:
            run = out / f"run_s{s}_{v}"
            files = {R.logits_path(v, s): f"logits {s} {v}", R.training_csv(v, s): b"epoch\n1\n",
                     R.timing_path(R.stage_instance("train", v, s)): json.dumps({"seconds": 1.0 + s}).encode(),
                     R.timing_path(R.stage_instance("logits", v, s)): json.dumps({"seconds": 0.5}).encode(),
                     R.profile_path(v): b"{}", R.profile_layers_path(v): "layers"}
            for rel, data in files.items():
                (run / rel).parent.mkdir(parents=True, exist_ok=True)
                if isinstance(data, str):  # a Parquet file (the import recompresses them)
                    pd.DataFrame({"what": [data]}).to_parquet(run / rel)
                else:
                    (run / rel).write_bytes(data)
            (run / "params.yaml").write_text(yaml.safe_dump(params))
            with tarfile.open(out / f"seed{s}_{v}.tgz", "w:gz") as tar:
                for path in sorted(p for p in run.rglob("*") if p.is_file()):
                    tar.add(path, arcname=str(path.relative_to(run)))
    (out / "paper_gpu.log").write_text(f"machine of seeds {seeds}\npython\n[paper_gpu 12:00:00] done after 1 s\n")
    return out


def test_add_keeps_the_bundles_seeds_and_adds_the_new_ones(tmp_path: Path) -> None:
    bundle = tmp_path / "results" / "recipe"
    import_device_output(device_output(tmp_path / "first", [0, 1]), bundle, commit="aaa")
    import_device_output(device_output(tmp_path / "later", [2]), bundle, commit="bbb", add=True)
    assert sorted(p.name for p in bundle.glob("seed*")) == ["seed0", "seed1", "seed2"]
    for s in (0, 1, 2):
        for v in VARIANTS:
            logits = pd.read_parquet(bundle / f"seed{s}" / "data" / "logits" / f"{v}.parquet")
            assert logits["what"].tolist() == [f"logits {s} {v}"]
    assert (bundle / "seed0" / "data" / "profile" / "one_branch.json").is_file()
    assert not (bundle / "seed2" / "data" / "profile").exists()  # the profile stays the first seed's
    provenance = json.loads((bundle / "provenance.json").read_text())
    assert sorted(provenance["runs"]) == sorted(f"seed{s}/{v}" for s in (0, 1, 2) for v in VARIANTS)
    assert provenance["commit"] == "bbb" and provenance["earlier_imports"][0]["commit"] == "aaa"
    assert provenance["earlier_imports"][0]["machine"][0] == "machine of seeds [0, 1]"
    assert not list(bundle.parent.glob(".recipe.*"))  # nothing staged is left beside it


@pytest.mark.parametrize(("seeds", "lr", "message"), [
    ([1], 0.05, "already has seed(s) 1"),
    ([2], 0.01, "params sections that differ: train"),
])
def test_add_refuses_a_seed_it_has_or_another_recipe(tmp_path: Path, seeds: list[int], lr: float,
                                                     message: str) -> None:
    bundle = tmp_path / "results" / "recipe"
    import_device_output(device_output(tmp_path / "first", [0, 1]), bundle)
    before = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*"))
    with pytest.raises(BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_device_output(device_output(tmp_path / "later", seeds, lr), bundle, add=True)
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")) == before
    assert not list(bundle.parent.glob(".recipe.*"))


def test_add_without_a_bundle_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = device_output(tmp_path / "later", [2])
    missing = tmp_path / "results" / "none"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "paper", "import", str(out), "--bundle", str(missing),
                           "--add"], cwd=ROOT, env=scratch_env(ROOT), text=True, capture_output=True, timeout=300)
    assert proc.returncode == 2 and str(missing) in proc.stderr and "--add" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not missing.exists()
