"""``python -m pipeline <stage> ...``: the stages' command line (pipeline/cli.py)."""

from pipeline.cli import main

main()
