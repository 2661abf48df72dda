"""The paper-length results bundle (results/paper/): import it from a GPU run, rebuild its analysis.

    python -m pipeline paper build  [--bundle results/paper] [--dest build/paper] [-S key=value ...]
    python -m pipeline paper import DEVICE_OUT [--bundle results/paper]

``build`` (``make paper``) needs no training: it makes one project at DEST with this checkout's
code, the bundle's ``data``/``variants``/``train`` params (how the logits were made) with
``train.seeds`` = the bundle's seeds, and this checkout's params.yaml for everything downstream
(``calibration``, ``network``, ``evaluate``; ``-S network.uplink_mbps=5`` overrides one), copies in
every seed's logits, snapshots and training history and the latency profile, and runs the stages
calibrate, evaluate, trajectory, plots and report there with ``dvc repro`` (with ``--certify`` also
the certify stage on the first seed): the metrics and the report are aggregated over the seeds.
When the bundle ships the first seed's weights of every variant (seed<first>/data/models/<v>.pt),
the distribution-shift stages run too (:data:`SHIFT_STAGES`: validate and prepare, for the val/test
images, then shift and shift_eval on that seed; docs/shift.md); otherwise one line says why not.
DEST is a git + DVC repository (one project for all the seeds, since its numbers are means over
them): its dvc.yaml has only those stages, the bundle's files are DVC-tracked inputs (``dvc add``),
and its first commit has dvc.lock, the metrics and the curves, so that ``dvc exp run -S
network.uplink_mbps=5``, ``dvc metrics diff``, ``dvc plots diff``, ``make exps`` and ``make plots``
work there as in build/smoke. Then it prints the headline table (mean, t-interval and min-max over
the seeds) and writes it to DEST/headline.md. ``--ship`` copies the analysis (tables, JSON, the
report) into the bundle's analysis/ folder, so it can be read without running anything.

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
from pathlib import Path

import yaml

from pipeline.core import registry as R
from pipeline.core.overlay import merge, set_args_overrides
from pipeline.tools.paper_import import (RECIPE_SECTIONS, BundleError, copy_path, final_epoch,
                                         import_device_output)
from pipeline.core.params_schema import Seeds
from pipeline.tools.scratch import ROOT, init_repository, make_scratch_project, scratch_env

BUNDLE = ROOT / "results" / "paper"
VARIANTS = ("one_branch", "two_branch")
DOWNSTREAM = ("calibrate", "evaluate", "trajectory", "plots", "report")
#: With --certify, also the certified thresholds (about a minute per variant on 2 cores; seed 0 only).
CERTIFY = "certify"
#: When the bundle ships the first seed's weights: the images (validate checks the params and the
#: archive, prepare splits it as the bundle's data section says) and the shift stages on that seed.
SHIFT_STAGES = ("validate", "prepare", "shift", "shift_eval")
#: With --ship: the analysis copied into the bundle's analysis/ folder, so that it can be read
#: without running anything (small: tables and JSON, and the report with its figures inline).
SHIPPED_ANALYSIS = ("reports/index.html", "reports/metrics.json", "reports/headline.json", "reports/metrics",
                    "reports/trajectory", "reports/calibration", "data/calibration", "reports/certify", "reports/shift",
                    "headline.md")


def seeds_of(bundle: Path) -> list[int]:
    seeds = sorted(int(p.name.removeprefix("seed")) for p in bundle.glob("seed*") if p.is_dir())
    if not seeds or not (bundle / "params.yaml").is_file():
        raise BundleError(f"{bundle}: not a results bundle (expected params.yaml and seed<N>/ folders)")
    return seeds


def shipped_weights(bundle: Path, seeds: list[int]) -> dict[str, Path]:
    """The first seed's weights of every variant the bundle ran (seed<first>/data/models/<v>.pt, what
    ``paper import`` ships), or {} when any variant's are missing (the shift stages need them all)."""
    seed_dir = bundle / f"seed{Seeds(seeds).first}"
    variants = sorted(p.stem for p in (seed_dir / "data" / "logits").glob("*.parquet"))
    weights = {v: seed_dir / "data" / "models" / f"{v}.pt" for v in variants}
    return weights if variants and all(p.is_file() for p in weights.values()) else {}


def project_params(bundle: Path, seeds: list[int], overrides: dict, shift: bool = False) -> dict:
    """This checkout's params.yaml with the bundle's recipe sections, the bundle's seeds (``shift``:
    ``shift.seeds`` = the first seed, whose weights the bundle ships), then ``overrides``."""
    current = yaml.safe_load((ROOT / "params.yaml").read_text())
    recipe = yaml.safe_load((bundle / "params.yaml").read_text())
    merged = {**current, **{k: recipe[k] for k in RECIPE_SECTIONS if k in recipe}}
    train = {k: v for k, v in merged["train"].items() if k != "seed"}  # bundles made before the seed axis
    merged["train"] = {**train, "seeds": seeds}
    if shift:
        merged["shift"] = {**merged.get("shift", {}), "seeds": [Seeds(seeds).first]}
    return merge(merged, overrides)


def stage_bundle(bundle: Path, seeds: list[int], project: Path) -> None:
    """Copy the bundle's runs into a project in the pipeline's layout (:mod:`pipeline.core.registry`):
    seed<s>/data/logits/<v>.parquet -> data/logits/<v>/seed<s>.parquet, likewise the snapshots and
    the training histories; the latency profile of the first seed (it does not depend on weights)."""
    for seed in seeds:
        source = bundle / f"seed{seed}"
        for logits in sorted((source / "data" / "logits").glob("*.parquet")):
            variant = logits.stem
            copy_path(logits, project / R.logits_path(variant, seed))
            copy_path(source / "data" / "snapshots" / variant, project / R.snapshots_dir(variant, seed))
            copy_path(source / "reports" / "training" / f"{variant}.csv", project / R.training_csv(variant, seed))
            for stage in ("train", "logits"):  # the bundle's files predate the seed field: added here
                timing = source / "reports" / "timings" / f"{stage}@{variant}.json"
                if timing.is_file():
                    out = project / R.timing_path(R.stage_instance(stage, variant, seed))
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps({**json.loads(timing.read_text()), "seed": seed}) + "\n")
    copy_path(bundle / f"seed{Seeds(seeds).first}" / "data" / "profile", project / R.PROFILE)
    for variant, weights in shipped_weights(bundle, seeds).items():
        copy_path(weights, project / R.model_path(variant, Seeds(seeds).first))


#: What the bundle brings in (not made in the project): DVC-tracked inputs (``dvc add``), so that
#: ``dvc status`` knows them and an experiment finds them; the imported timings are git-tracked.
IMPORTED = (R.LOGITS, R.SNAPSHOTS, R.PROFILE, R.TRAINING, R.MODELS)
#: The project's header: what its dvc.yaml is.
DVC_YAML_HEADER = """\
# Made by `python -m pipeline paper build`: the stages of {root}/dvc.yaml that do not train ({stages}).
# Their inputs come from the results bundle {bundle}: {imported} are DVC-tracked
# (*.dvc), the training and logits timings git-tracked. Compare experiments here as in build/smoke:
# dvc exp run -S network.uplink_mbps=5, dvc metrics diff, dvc plots diff, make exps, make plots.
"""


def paper_dvc_yaml(project: Path, seeds: list[int], certify: bool, shift: bool = False) -> dict:
    """The project's dvc.yaml without the stages that train: :data:`DOWNSTREAM` (and ``certify`` on
    the first seed; ``shift``: :data:`SHIFT_STAGES`, over ``shift.seeds``), its plots as they are."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    names = (*([n for n in SHIFT_STAGES if n in ("validate", "prepare")] if shift else []), *DOWNSTREAM,
             *([CERTIFY] if certify else []), *([n for n in SHIFT_STAGES if n.startswith("shift")] if shift else []))
    stages = {name: spec["stages"][name] for name in names}
    if certify:
        stages[CERTIFY]["matrix"]["seed"] = [Seeds(seeds).first]
    else:  # no certify stage writes reports/certify: the report goes without it
        stages["report"]["deps"] = [d for d in stages["report"]["deps"] if d != str(R.CERTIFY)]
    if not shift:  # distribution shift (docs/shift.md): no weights, no reports/shift
        stages["report"]["deps"] = [d for d in stages["report"]["deps"] if d != str(R.SHIFT)]
    return {**spec, "stages": stages}


def shift_line(bundle: Path, seeds: list[int], weights: dict[str, Path], asked: bool = True) -> str:
    """The one line `make paper` prints on the shift stages: on which weights they run, or why not
    (``asked``: False with ``--no-shift``)."""
    first = Seeds(seeds).first
    if weights and not asked:
        return ("shift: stages shift and shift_eval left out (--no-shift, make paper SHIFT=0); without it they run "
                f"on seed {first}'s weights ({', '.join(weights)})")
    if weights:
        return (f"shift: stages shift and shift_eval run on seed {first}'s weights ({', '.join(weights)}), on the "
                f"val/test images of stage prepare (the CIFAR-10 archive; docs/shift.md)")
    return (f"shift: stages shift and shift_eval left out: {bundle} ships no weights of every variant "
            f"(seed{first}/data/models/<variant>.pt), only logits, and shift runs the networks on corrupted "
            f"images (docs/shift.md)")


def _git_ignore_without_data(project: Path) -> None:
    """The project's .gitignore without ``/data/``: the imported inputs' .dvc files live in data/
    (DVC ignores what it tracks there itself); the headline table is `python -m pipeline paper build`'s printout."""
    lines = (project / ".gitignore").read_text().splitlines()
    (project / ".gitignore").write_text("\n".join([line for line in lines if line.strip() != "/data/"]
                                                  + ["/headline.md"]) + "\n")


def build_project(bundle: Path, seeds: list[int], dest: Path, overrides: dict, certify: bool = False,
                  shift: bool = True) -> tuple[int, str]:
    """One project at ``dest`` holding every seed of the bundle, and the downstream stages run there
    with ``dvc repro`` (the metrics aggregated over the seeds; certify on the first seed only). It is
    a git + DVC repository whose first commit has the results (dvc.lock, the metrics, the curves),
    so that experiments compare against them from the start, as in build/smoke."""
    project = make_scratch_project(dest, None, vcs=False)
    shipped = shipped_weights(bundle, seeds)
    weights = shipped if shift else {}
    params = project_params(bundle, seeds, overrides, shift=bool(weights))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage_bundle(bundle, seeds, project)
    epoch = final_epoch(project)
    early_stopped = int(params["train"].get("early_stopping_patience", 0) or 0) > 0
    # the final epoch's snapshot is the final logits (not with early stopping: those are the best epoch's)
    if epoch in params["train"].get("snapshot_epochs", []) and not early_stopped:
        for seed in seeds:
            for variant in params["variants"]:
                folder = project / R.snapshots_dir(variant, seed)
                if folder.is_dir():
                    shutil.copy2(project / R.logits_path(variant, seed), folder / f"epoch_{epoch:03d}.parquet")
    spec = paper_dvc_yaml(project, seeds, certify, shift=bool(weights))
    print(shift_line(bundle, seeds, shipped, shift), flush=True)
    header = DVC_YAML_HEADER.format(root=ROOT, stages=", ".join(spec["stages"]), bundle=bundle,
                                    imported=", ".join(map(str, IMPORTED)))
    (project / "dvc.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False, width=200))
    _git_ignore_without_data(project)
    init_repository(project)
    env, log = scratch_env(project), []

    def run(*cmd: str) -> int:
        proc = subprocess.run(cmd, cwd=project, env=env, text=True, capture_output=True)
        log.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        return proc.returncode

    timings = [str(p.relative_to(project)) for p in sorted((project / R.TIMINGS).glob("*.json"))]
    steps = [(sys.executable, "-m", "dvc", "add", "-q", *[str(p) for p in IMPORTED if (project / p).exists()]),
             ("git", "add", "-f", *timings),
             (sys.executable, "-m", "dvc", "repro"),
             ("git", "add", "-A"),
             ("git", "commit", "-q", "-m", f"the analysis of {bundle.name} (python -m pipeline paper build)")]
    for cmd in steps:
        if rc := run(*cmd):
            return rc, "\n".join(log)
    return 0, "\n".join(log)


def headline(dest: Path) -> str:
    """Markdown table: the headline numbers, the mean over the seeds with the seeds' t-interval (95%)
    and min-max (reports/metrics.json of the built project)."""
    data = json.loads((dest / "reports" / "metrics.json").read_text())
    keys = ["p_device_mean", "acc_device@0.85", "outage@0.85", "outage@0.875", "min_missed_deadline@0.825",
            "min_missed_deadline@0.85"]
    lines = ["| variant | calibration | metric | mean over seeds | t-interval 95% | min-max | seeds |",
             "|---|---|---|---|---|---|---|"]

    def f(v: float | None) -> str:
        return "undefined" if v is None or v == "undefined" else f"{v:.3f}"

    for variant, by_cal in data.items():
        for calibration in ("conventional", "calibrated"):
            m = by_cal.get(calibration, {})
            for key in keys:
                lines.append(f"| {variant} | {calibration} | {key} | {f(m.get(key))} | "
                             f"[{f(m.get(key + '_seed_lo'))}, {f(m.get(key + '_seed_hi'))}] | "
                             f"{f(m.get(key + '_seed_min'))}-{f(m.get(key + '_seed_max'))} | {m.get('n_seeds', 1)} |")
    return "\n".join(lines) + "\n"


def ship(bundle: Path, dest: Path) -> None:
    """Copy the analysis of ``dest`` (:data:`SHIPPED_ANALYSIS`) into ``bundle/analysis/``, built
    beside it and swapped in whole."""
    staged = bundle / ".analysis.new"
    shutil.rmtree(staged, ignore_errors=True)
    for rel in SHIPPED_ANALYSIS:
        copy_path(dest / rel, staged / rel)
    for ignore in staged.rglob(".gitignore"):  # DVC's, beside its cached outputs: git would drop the files
        ignore.unlink()
    old = bundle / ".analysis.old"
    if (bundle / "analysis").exists():
        (bundle / "analysis").rename(old)
    staged.rename(bundle / "analysis")
    shutil.rmtree(old, ignore_errors=True)
    print(f"shipped the analysis into {bundle / 'analysis'}", flush=True)


def build(bundle: Path, dest: Path, overrides: dict, certify: bool = False, to_bundle: bool = False,
          shift: bool = True) -> int:
    seeds = seeds_of(bundle)
    rc, log = build_project(bundle, seeds, dest, overrides, certify, shift)
    dest.parent.mkdir(parents=True, exist_ok=True)
    (dest.parent / f"{dest.name}.log").write_text(log)
    if rc != 0:
        print(f"paper: failed (exit {rc}), see {dest.parent / (dest.name + '.log')}", file=sys.stderr)
        return 1
    print(f"seeds {', '.join(map(str, seeds))}: {dest}/reports/index.html", flush=True)
    table = headline(dest)
    (dest / "headline.md").write_text(table)
    print(table, end="")
    if to_bundle:
        ship(bundle, dest)
        (bundle / "headline.md").write_text(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline paper", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="rebuild metrics, figures and reports from the bundle (no training)")
    b.add_argument("--bundle", type=Path, default=None, help="default: the recipe's bundle (results/paper/)")
    b.add_argument("--recipe", default=None,
                   help="a recipe of configs/recipes/: its bundle (results/<recipe>/; branchynet: results/paper/)")
    b.add_argument("--dest", type=Path, default=None, help="default: build/paper (build/<recipe> with --recipe)")
    b.add_argument("-S", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a downstream param, e.g. -S network.uplink_mbps=5")
    b.add_argument("--certify", action="store_true",
                   help="also the certified thresholds of the first seed (stage certify: about 2 more minutes)")
    b.add_argument("--no-shift", dest="shift", action="store_false",
                   help="leave the distribution-shift stages out even where the bundle ships weights (they add about "
                   "2 minutes on a 2-core CPU)")
    b.add_argument("--ship", action="store_true",
                   help="copy the analysis (tables, JSON, the first seed's report) back into the bundle")
    i = sub.add_parser("import", help="make the bundle from benchmarks/device_gpu.sh's output")
    i.add_argument("device_out", type=Path)
    i.add_argument("--bundle", type=Path, default=BUNDLE)
    i.add_argument("--commit", default="unknown", help="the commit the device ran (its copy has no .git)")
    i.add_argument("--add", action="store_true", help="keep the bundle's seeds and add these (seeds of one recipe "
                   "finished on different machines); a seed it already has is refused")
    args = ap.parse_args(argv)
    try:
        if args.command == "import":
            import_device_output(args.device_out, args.bundle, args.commit, args.add)
            print(f"bundle written: {args.bundle}")
            return 0
        bundle, dest = args.bundle, args.dest
        if args.recipe:
            from pipeline.tools.recipes import bundle_dir

            bundle = bundle or bundle_dir(args.recipe)
            dest = dest or ROOT / "build" / ("paper" if bundle == BUNDLE else args.recipe)
            if not bundle.is_dir():
                raise BundleError(f"recipe {args.recipe!r} has no shipped bundle yet ({bundle.relative_to(ROOT)}); "
                                  f"bundles: {', '.join(sorted(p.name for p in (ROOT / 'results').iterdir() if (p / 'params.yaml').is_file()))}")
        return build((bundle or BUNDLE).resolve(), (dest or ROOT / "build" / "paper").resolve(),
                     set_args_overrides(args.set), args.certify, args.ship, args.shift)
    except (BundleError, ValueError) as e:
        print(f"paper: {e}", file=sys.stderr)
        return 2
