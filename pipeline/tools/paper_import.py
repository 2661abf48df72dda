"""``python -m pipeline paper import``: the runs a GPU machine brings back into a results bundle.

``benchmarks/device_gpu.sh`` (benchmarks/paper_gpu.py) brings back one tarball per run
(``seed<s>_<variant>.tgz``), ``benchmarks/device_recipes.sh`` (benchmarks/recipe_gpu.py) them
inside ``runs_<variant>.tar``. Per seed that finished every variant, the bundle gets data/logits,
reports/training and timings; the first seed also its snapshots and latency profile; plus
params.yaml and provenance.json (device, commit, wall times), and the recipe search's tables.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

from pipeline.core import registry as R


class BundleError(Exception):
    """A bundle or a device output that is not what this tool writes."""



def copy_path(src: Path, out: Path) -> None:
    """``src`` (a file or a folder) to ``out``, if it exists."""
    if src.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, out)


def final_epoch(project: Path) -> int:
    """The last epoch of the training recipe in ``project``'s params.yaml."""
    train = yaml.safe_load((project / "params.yaml").read_text())["train"]
    return int(train["trunk_epochs"]) + int(train["joint_epochs"])


def _compact(path: Path) -> None:
    """Rewrite a Parquet file smaller (zstd, byte-stream-split floats): same schema and values."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    floats = [f.name for f in table.schema if str(f.type) in ("float", "double")]
    pq.write_table(table, path, compression="zstd", compression_level=19, use_byte_stream_split=floats or False)


def _unpack_runs(device_out: Path, tmp: Path) -> list[Path]:
    """The per-run tarballs: ``seed<N>_<variant>.tgz`` beside each other (benchmarks/paper_gpu.py),
    or inside ``runs_<variant>.tar`` (benchmarks/recipe_gpu.py)."""
    tarballs = sorted(device_out.glob("seed*_*.tgz"))
    for outer in sorted(device_out.glob("runs_*.tar")):
        with tarfile.open(outer) as tar:
            tar.extractall(tmp / "runs", filter="data")
    return tarballs + sorted((tmp / "runs").glob("seed*_*.tgz"))


#: The params sections a bundle's params.yaml holds: the recipe that made its logits (an added seed
#: must have the bundle's).
RECIPE_SECTIONS = ("data", "model", "variants", "train")


def _recipe(params: dict) -> dict:
    """The sections of ``params`` that make the logits, the seeds left out."""
    recipe = {k: params.get(k) for k in RECIPE_SECTIONS}
    recipe["train"] = {k: v for k, v in (recipe["train"] or {}).items() if k != "seeds"}
    return recipe


def import_device_output(device_out: Path, bundle: Path, commit: str = "unknown", add: bool = False) -> None:
    """The device tarballs into ``bundle`` (replaced whole, written beside it then swapped in). A
    seed is imported when every variant's run finished (its logits exist); the others are named.
    ``add``: the bundle's own seeds are kept and these added (a confirmation finished seed by seed on
    different machines); a seed it already has, or another recipe, is a BundleError."""
    if add and not (bundle / "params.yaml").is_file():
        raise BundleError(f"--add {bundle}: no bundle there to add seeds to (drop --add to make one)")
    staged = bundle.parent / f".{bundle.name}.new"
    try:
        _stage_bundle(device_out, bundle, staged, commit, add)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # no half-written bundle beside the old one
        raise
    old = bundle.parent / f".{bundle.name}.old"
    if bundle.exists():
        bundle.rename(old)
    staged.rename(bundle)
    shutil.rmtree(old, ignore_errors=True)


def _stage_bundle(device_out: Path, bundle: Path, staged: Path, commit: str, add: bool) -> None:
    """:func:`import_device_output`'s bundle, written whole into ``staged``."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tarballs = _unpack_runs(device_out, tmp)
        if not tarballs:
            raise BundleError(f"{device_out}: no seed<N>_<variant>.tgz or runs_<variant>.tar "
                              "(written by benchmarks/device_gpu.sh or benchmarks/device_recipes.sh)")
        shutil.rmtree(staged, ignore_errors=True)
        logfile = next((f for f in (device_out / "paper_gpu.log", device_out / "recipe_gpu.log",
                                    device_out / "recipe_cpu.log") if f.is_file()), None)
        log = logfile.read_text().splitlines() if logfile else []
        done = next((line for line in log if "done after" in line), "")
        made_by = ("python -m benchmarks.cpu_queue confirm, confirm-pack (benchmarks/cpu_confirm.py)"
                   if (device_out / "recipe_cpu.log").is_file()
                   else "bash benchmarks/device_recipes.sh (benchmarks/recipe_gpu.py)" if any(device_out.glob("runs_*.tar"))
                   else "bash benchmarks/device_gpu.sh (benchmarks/paper_gpu.py)")
        provenance: dict = {"made_by": f"{made_by}, then python -m pipeline paper import",
                            "commit": commit, "machine": log[:2], "call": done.split("] ", 1)[-1].split(";")[0],
                            "runs": {}, "skipped": {}}
        unpacked: dict[tuple[int, str], Path] = {}
        for tgz in tarballs:
            seed_name, variant = tgz.stem.split("_", 1)
            with tarfile.open(tgz) as tar:
                tar.extractall(tmp / tgz.stem, filter="data")
            unpacked[(int(seed_name.removeprefix("seed")), variant)] = tmp / tgz.stem
        variants = sorted({v for _, v in unpacked})
        first = min(s for s, _ in unpacked)
        if add:
            first = _start_from_bundle(bundle, staged, unpacked, provenance)
        before = set(provenance["runs"])
        for seed in sorted({s for s, _ in unpacked}):
            missing = [v for v in variants if not ((unpacked.get((seed, v)) or tmp / "none") / R.logits_path(v, seed)).is_file()]
            if missing:
                provenance["skipped"][f"seed{seed}"] = f"unfinished: {', '.join(missing)}"
                print(f"paper import: seed {seed} skipped (unfinished: {', '.join(missing)})", file=sys.stderr)
                continue
            for variant in variants:
                _import_run(unpacked[(seed, variant)], staged, seed, variant, seed == first, provenance)
        if set(provenance["runs"]) == before:
            raise BundleError(f"{device_out}: no seed finished every variant")
        search = device_out / "search.tgz"
        if search.is_file():  # the recipe search: every candidate's history, the options, the choice
            with tarfile.open(search) as tar:
                tar.extractall(tmp / "search", filter="data")
            for name in ("search_histories.csv", "search_options.csv", "choice.json"):
                copy_path(tmp / "search" / "logs" / name, staged / "search" / name)
        if (device_out / "gpu_throughput.json").is_file():  # benchmarks/gpu_throughput.py's figures
            shutil.copy2(device_out / "gpu_throughput.json", staged / "gpu_throughput.json")
        if (device_out / "chosen.yaml").is_file():
            shutil.copy2(device_out / "chosen.yaml", staged / "recipe.yaml")
        for parquet in staged.rglob("*.parquet"):
            _compact(parquet)
        (staged / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")


def _start_from_bundle(bundle: Path, staged: Path, unpacked: dict[tuple[int, str], Path], provenance: dict) -> int:
    """``staged`` begins as a copy of ``bundle`` (with ``--add``); ``provenance`` keeps its runs and
    records the earlier imports. Returns the first seed of the bundle as it will be."""
    kept = sorted(int(d.name.removeprefix("seed")) for d in bundle.glob("seed*") if d.is_dir())
    again = sorted({s for s, _ in unpacked} & set(kept))
    if again:
        raise BundleError(f"--add: the bundle {bundle} already has seed(s) {', '.join(map(str, again))}; "
                          f"add only others (it has {', '.join(map(str, kept))})")
    ours = _recipe(yaml.safe_load((bundle / "params.yaml").read_text()))
    for (seed, variant), src in unpacked.items():
        theirs = _recipe(yaml.safe_load((src / "params.yaml").read_text()))
        if theirs != ours:
            differ = [k for k in RECIPE_SECTIONS if theirs[k] != ours[k]]
            raise BundleError(f"--add: seed{seed}/{variant} was made by another recipe than {bundle} "
                              f"(params sections that differ: {', '.join(differ)})")
    shutil.copytree(bundle, staged)
    earlier = json.loads((bundle / "provenance.json").read_text())
    provenance["runs"] = earlier.get("runs", {})
    provenance["earlier_imports"] = earlier.get("earlier_imports", []) + [
        {k: earlier.get(k) for k in ("made_by", "commit", "machine", "call", "skipped")}]
    return min(kept + [s for s, _ in unpacked])


def _import_run(src: Path, staged: Path, seed: int, variant: str, first: bool, provenance: dict) -> None:
    """One run's files in the pipeline's layout (pipeline.core.registry) -> the bundle's layout."""
    seed_name, out = f"seed{seed}", staged / f"seed{seed}"
    wanted = {R.logits_path(variant, seed): f"data/logits/{variant}.parquet",
              R.training_csv(variant, seed): f"reports/training/{variant}.csv",
              R.timing_path(R.stage_instance("train", variant, seed)): f"reports/timings/train@{variant}.json",
              R.timing_path(R.stage_instance("logits", variant, seed)): f"reports/timings/logits@{variant}.json"}
    optional = {}
    if first:
        wanted |= {R.profile_path(variant): f"data/profile/{variant}.json",
                   R.profile_layers_path(variant): f"data/profile/{variant}_layers.parquet"}
        optional = {R.snapshots_dir(variant, seed): f"data/snapshots/{variant}",
                    R.model_path(variant, seed): f"data/models/{variant}.pt"}
    for rel, shipped in wanted.items():
        if not (src / rel).exists():
            raise BundleError(f"{src.name}: {rel} is missing (the run did not finish?)")
    for rel, shipped in (wanted | optional).items():
        if (src / rel).exists():
            (out / shipped).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (src / rel).is_dir() else shutil.copy2)(src / rel, out / shipped)
    if not (staged / "params.yaml").exists():
        params = yaml.safe_load((src / "params.yaml").read_text())
        params["train"]["seeds"] = [0]
        (staged / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    final = out / "data" / "snapshots" / variant / f"epoch_{final_epoch(src):03d}.parquet"
    final.unlink(missing_ok=True)  # the final epoch's snapshot is data/logits: shipped once
    timing = json.loads((src / R.timing_path(R.stage_instance("train", variant, seed))).read_text())
    provenance["runs"][f"{seed_name}/{variant}"] = {"train_seconds": timing["seconds"]}
