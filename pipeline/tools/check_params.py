"""``python -m pipeline check-params [params.yaml]``: every section of a params file validated at
once, plus the rules that span sections (for flows and CI); exit status 0 when valid, 2 with one
line naming the key and what is allowed otherwise. The stage ``validate`` does the same for the
project's params.yaml before any stage runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.io import PARAMS_FILE, read_params, run_stage
from pipeline.core.params import validate_params


def check(path: str) -> None:
    p = validate_params(read_params(Path(path)))
    print(f"{path}: valid; variants {', '.join(p.variants)}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline check-params", description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="?", default=str(PARAMS_FILE), help="a params file (default: params.yaml)")
    run_stage("params", check, ap.parse_args(argv).params, record_timing=False)
    return 0
