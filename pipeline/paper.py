"""The paper-length results bundle (results/paper/): import it from a GPU run, rebuild its analysis.

    python -m pipeline.paper build  [--bundle results/paper] [--dest build/paper] [-S key=value ...]
    python -m pipeline.paper import DEVICE_OUT [--bundle results/paper]

``build`` (``make paper``) needs no training: for every seed in the bundle it makes a plain project
under DEST/seed<s>/ with this checkout's code, the bundle's ``data``/``variants``/``train``
params (how the logits were made) and this checkout's params.yaml for everything downstream
(``calibration``, ``network``, ``evaluate``; ``-S network.uplink_mbps=5`` overrides one), copies in
the shipped logits, snapshots, latency profile and training history, and runs the stages
calibrate, evaluate, trajectory, plots and report there (``pipeline.plain_run --only``; with
``--certify`` also the certify stage on the first seed). Then it prints the headline table over
the seeds and writes it to DEST/headline.md. ``--ship`` copies the analysis (tables, JSON, the
first seed's report) back into the bundle, so it can be read without running anything.

``import`` turns the tarballs that ``benchmarks/device_gpu.sh`` brings back (seed<s>_<variant>.tgz)
into the bundle: per seed, data/logits, reports/training and timings; seed 0 also its snapshots
and latency profile; plus params.yaml and provenance.json (device, commit, wall times).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from pipeline.overlay import merge, set_args_overrides
from pipeline.scratch import ROOT, make_scratch_project, scratch_env

BUNDLE = ROOT / "results" / "paper"
VARIANTS = ("one_branch", "two_branch")
DOWNSTREAM = ("calibrate", "evaluate", "trajectory", "plots", "report")
#: With --certify, also the certified thresholds (about a minute per variant on 2 cores; seed 0 only).
CERTIFY = "certify"
#: Sections of params that describe how the shipped logits were made (taken from the bundle).
RECIPE_SECTIONS = ("data", "variants", "train")
#: With --ship: the analysis copied back into the bundle, so that it can be read without running
#: anything (small: tables and JSON; the report of the first seed only, its figures inline).
SHIP_ALL = ("reports/metrics.json", "reports/headline.json", "reports/calibration", "data/calibration")
SHIP_FIRST = ("reports/index.html", "reports/metrics", "reports/trajectory", "reports/certify/one_branch/validity.parquet",
              "reports/certify/one_branch/summary.json", "reports/certify/two_branch/validity.parquet",
              "reports/certify/two_branch/summary.json")
#: Paths copied from a bundle seed into its project (those absent are skipped).
SHIPPED = ("data/logits", "data/snapshots", "data/profile", "reports/training", "reports/timings")


class BundleError(Exception):
    """A bundle or a device output that is not what this tool writes."""


def seeds_of(bundle: Path) -> list[int]:
    seeds = sorted(int(p.name.removeprefix("seed")) for p in bundle.glob("seed*") if p.is_dir())
    if not seeds or not (bundle / "params.yaml").is_file():
        raise BundleError(f"{bundle}: not a results bundle (expected params.yaml and seed<N>/ folders)")
    return seeds


def project_params(bundle: Path, seed: int, overrides: dict) -> dict:
    """This checkout's params.yaml with the bundle's recipe sections, the seed, then ``overrides``."""
    current = yaml.safe_load((ROOT / "params.yaml").read_text())
    recipe = yaml.safe_load((bundle / "params.yaml").read_text())
    merged = {**current, **{k: recipe[k] for k in RECIPE_SECTIONS if k in recipe}}
    merged["train"] = {**merged["train"], "seed": seed}
    return merge(merged, overrides)


def build_seed(bundle: Path, seed: int, dest: Path, overrides: dict, certify: bool = False) -> tuple[int, str]:
    project = make_scratch_project(dest / f"seed{seed}", None, vcs=False)
    (project / "params.yaml").write_text(yaml.safe_dump(project_params(bundle, seed, overrides), sort_keys=False))
    source = bundle / f"seed{seed}"
    for rel in SHIPPED:
        src = source / rel if (source / rel).exists() else bundle / "seed0" / rel if rel == "data/profile" else None
        if src is not None and src.exists():
            shutil.copytree(src, project / rel)
    snapshots = project / "data" / "snapshots"
    if snapshots.is_dir():  # the final epoch's snapshot is the final logits (shipped once)
        epoch = _final_epoch(project)
        if epoch in project_params(bundle, seed, overrides)["train"].get("snapshot_epochs", []):
            for variant_dir in snapshots.iterdir():
                shutil.copy2(project / "data" / "logits" / f"{variant_dir.name}.parquet",
                             variant_dir / f"epoch_{epoch:03d}.parquet")
    cmd = [sys.executable, "-m", "pipeline.plain_run", "--only", *DOWNSTREAM, *([CERTIFY] if certify else [])]
    proc = subprocess.run(cmd, cwd=project, env=scratch_env(project), text=True, capture_output=True)
    return proc.returncode, proc.stdout + proc.stderr


def headline(dest: Path, seeds: list[int]) -> str:
    """Markdown table: the headline numbers of every seed side by side, with their mean."""
    data = {s: json.loads((dest / f"seed{s}" / "reports" / "metrics.json").read_text()) for s in seeds}
    keys = ["p_device_mean", "acc_device@0.85", "outage@0.85", "outage@0.875", "min_missed_deadline@0.825",
            "min_missed_deadline@0.85"]
    lines = ["| variant | calibration | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|---|" + "---|" * (len(seeds) + 1)]
    for variant in VARIANTS:
        for calibration in ("conventional", "calibrated"):
            for key in keys:
                values = [data[s].get(variant, {}).get(calibration, {}).get(key) for s in seeds]
                shown = [f"{v:.3f}" if v is not None else "n/a" for v in values]
                known = [v for v in values if v is not None]
                mean = f"{sum(known) / len(known):.3f}" if known else "n/a"
                lines.append(f"| {variant} | {calibration} | {key} | " + " | ".join(shown) + f" | {mean} |")
    return "\n".join(lines) + "\n"


def ship(bundle: Path, dest: Path, seeds: list[int]) -> None:
    """Copy the analysis of ``dest`` (SHIP_ALL for every seed, SHIP_FIRST for the first) into the bundle."""
    for seed in seeds:
        for rel in SHIP_ALL + (SHIP_FIRST if seed == seeds[0] else ()):
            src, out = dest / f"seed{seed}" / rel, bundle / f"seed{seed}" / rel
            if not src.exists():
                continue
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            out.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, out)
    print(f"shipped the analysis into {bundle}", flush=True)


def build(bundle: Path, dest: Path, overrides: dict, certify: bool = False, to_bundle: bool = False) -> int:
    seeds = seeds_of(bundle)
    dest.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:  # the stages are single processes: two at a time
        results = dict(zip(seeds, pool.map(
            lambda s: build_seed(bundle, s, dest, overrides, certify and s == seeds[0]), seeds)))
    for seed, (rc, log) in results.items():
        (dest / f"seed{seed}.log").write_text(log)
        print(f"seed {seed}: {'ok' if rc == 0 else f'failed (exit {rc}), see {dest}/seed{seed}.log'}: "
              f"{dest}/seed{seed}/reports/index.html", flush=True)
    if any(rc != 0 for rc, _ in results.values()):
        return 1
    table = headline(dest, seeds)
    (dest / "headline.md").write_text(table)
    print(table, end="")
    if to_bundle:
        ship(bundle, dest, seeds)
        (bundle / "headline.md").write_text(table)
    return 0


def _final_epoch(project: Path) -> int:
    train = yaml.safe_load((project / "params.yaml").read_text())["train"]
    return int(train["trunk_epochs"]) + int(train["joint_epochs"])


def _compact(path: Path) -> None:
    """Rewrite a Parquet file smaller (zstd, byte-stream-split floats): same schema and values."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    floats = [f.name for f in table.schema if str(f.type) in ("float", "double")]
    pq.write_table(table, path, compression="zstd", compression_level=19, use_byte_stream_split=floats or False)


def import_device_output(device_out: Path, bundle: Path, commit: str = "unknown") -> None:
    """The device tarballs into ``bundle`` (replaced whole, written beside it then swapped in)."""
    tarballs = sorted(device_out.glob("seed*_*.tgz"))
    if not tarballs:
        raise BundleError(f"{device_out}: no seed<N>_<variant>.tgz (written by benchmarks/device_gpu.sh)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        staged = bundle.parent / f".{bundle.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        log = (device_out / "paper_gpu.log").read_text().splitlines() if (device_out / "paper_gpu.log").is_file() \
            else []
        done = next((line for line in log if "done after" in line), "")
        provenance: dict = {"made_by": "bash benchmarks/device_gpu.sh (benchmarks/paper_gpu.py), then "
                                       "python -m pipeline.paper import",
                            "commit": commit, "machine": log[:2], "call": done.split("] ", 1)[-1].split(";")[0],
                            "runs": {}}
        for tgz in tarballs:
            seed_name, variant = tgz.stem.split("_", 1)
            with tarfile.open(tgz) as tar:
                tar.extractall(tmp / tgz.stem, filter="data")
            src, out = tmp / tgz.stem, staged / seed_name
            wanted = [f"data/logits/{variant}.parquet", f"reports/training/{variant}.csv",
                      f"reports/timings/train@{variant}.json", f"reports/timings/logits@{variant}.json"]
            if seed_name == "seed0":
                wanted += [f"data/snapshots/{variant}", f"data/profile/{variant}.json",
                           f"data/profile/{variant}_layers.parquet"]
            for rel in wanted:
                if not (src / rel).exists():
                    raise BundleError(f"{tgz}: {rel} is missing (the run did not finish?)")
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if (src / rel).is_dir() else shutil.copy2)(src / rel, out / rel)
            if not (staged / "params.yaml").exists():
                params = yaml.safe_load((src / "params.yaml").read_text())
                params["train"]["seed"] = 0
                (staged / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            final = out / "data" / "snapshots" / variant / f"epoch_{_final_epoch(src):03d}.parquet"
            final.unlink(missing_ok=True)  # the final epoch's snapshot is data/logits: shipped once
            timing = json.loads((src / f"reports/timings/train@{variant}.json").read_text())
            provenance["runs"][f"{seed_name}/{variant}"] = {"train_seconds": timing["seconds"]}
        for parquet in staged.rglob("*.parquet"):
            _compact(parquet)
        (staged / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        old = bundle.parent / f".{bundle.name}.old"
        if bundle.exists():
            bundle.rename(old)
        staged.rename(bundle)
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="rebuild metrics, figures and reports from the bundle (no training)")
    b.add_argument("--bundle", type=Path, default=BUNDLE)
    b.add_argument("--dest", type=Path, default=ROOT / "build" / "paper")
    b.add_argument("-S", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a downstream param, e.g. -S network.uplink_mbps=5")
    b.add_argument("--certify", action="store_true",
                   help="also the certified thresholds of the first seed (stage certify: about 2 more minutes)")
    b.add_argument("--ship", action="store_true",
                   help="copy the analysis (tables, JSON, the first seed's report) back into the bundle")
    i = sub.add_parser("import", help="make the bundle from benchmarks/device_gpu.sh's output")
    i.add_argument("device_out", type=Path)
    i.add_argument("--bundle", type=Path, default=BUNDLE)
    i.add_argument("--commit", default="unknown", help="the commit the device ran (its copy has no .git)")
    args = ap.parse_args(argv)
    try:
        if args.command == "import":
            import_device_output(args.device_out, args.bundle, args.commit)
            print(f"bundle written: {args.bundle}")
            return 0
        return build(args.bundle.resolve(), args.dest.resolve(), set_args_overrides(args.set), args.certify,
                     args.ship)
    except (BundleError, ValueError) as e:
        print(f"paper: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
