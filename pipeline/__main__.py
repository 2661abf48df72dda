"""``python -m pipeline <command> ...``: the project's one command line (pipeline/cli.py). Run by a Python
without the project's packages (dvc.yaml's bare ``python`` outside the venv), it runs itself again
with the project's interpreter (pipeline/core/interpreter.py)."""

from pipeline.core.interpreter import reexec_if_needed

reexec_if_needed()

from pipeline.cli import main  # noqa: E402 (after the interpreter check)

main()
