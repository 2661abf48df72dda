"""Which Python runs ``python -m pipeline <stage>``: dvc.yaml's commands say bare ``python``, which
is the venv's only while the venv is activated. Called without it (``.venv/bin/dvc repro`` in a
fresh shell), ``python`` is the system's and the stage would fail with ``ModuleNotFoundError: No
module named 'yaml'``; :func:`reexec_if_needed` runs the stage again with the project's
interpreter instead: the one that made a scratch copy (``SOURCE.json``'s ``python``), else the
project's ``.venv/bin/python``.

Standard library only, and syntax any Python 3 reads: it runs under whatever ``python`` is first
on PATH. A machine with the stages' packages and no venv (the GPU box, ``python -m pipeline
plain-run``) passes the check and runs with its own interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

#: What ``python -m pipeline`` needs beyond the standard library before any stage runs.
NEEDED = ("yaml", "numpy", "pandas")
#: Set in the re-executed process, so that it never runs itself again.
REEXEC_ENV = "EEOFFLOAD_REEXEC"
#: The project this package lives in (a scratch copy: that copy).
ROOT = Path(__file__).resolve().parents[2]


def missing_packages() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def project_python(root: Path = ROOT) -> Path | None:
    """The project's interpreter: SOURCE.json's ``python`` (pipeline.tools.scratch records the one that made
    the copy), else ``<root>/.venv/bin/python``; None if neither exists."""
    candidates = []
    try:
        candidates.append(Path(json.loads((root / "SOURCE.json").read_text(encoding="utf-8"))["python"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    candidates.append(root / ".venv" / "bin" / "python")
    for python in candidates:
        if python.is_file() and os.access(python, os.X_OK):
            return python
    return None


def reexec_if_needed(argv: list[str] | None = None) -> None:
    """Return if this interpreter has the packages; else exec ``<project python> -m pipeline ARGV``
    (the project's code first on PYTHONPATH, as pipeline.tools.scratch runs it), or exit 2 saying what to do."""
    missing = missing_packages()
    if not missing:
        return
    argv = sys.argv[1:] if argv is None else argv
    python = project_python()
    if python is None or os.environ.get(REEXEC_ENV):
        sys.stderr.write(f"error: {sys.executable} lacks {', '.join(missing)}: activate the project's venv "
                         f"(`. .venv/bin/activate`) or put its bin/ first on PATH\n")
        raise SystemExit(2)
    env = dict(os.environ)
    env[REEXEC_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    sys.stderr.write(f"python -m pipeline: {sys.executable} lacks {', '.join(missing)}; running with {python}\n")
    sys.stderr.flush()
    os.execve(str(python), [str(python), "-m", "pipeline", *argv], env)
