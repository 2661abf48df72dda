"""``python -m pipeline overlay <overlay.yaml>``: an overlay (configs/*.yaml) as ``dvc exp run -S``
arguments on one line, shell-quoted (``make quick``).
"""

from __future__ import annotations

import argparse
import shlex

from pipeline.core.overlay import load_overlay, set_args


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline overlay", description=__doc__.splitlines()[0])
    ap.add_argument("overlay", help="an overlay file, e.g. configs/quick.yaml")
    print(" ".join(shlex.quote(a) for a in set_args(load_overlay(ap.parse_args(argv).overlay))))
    return 0
