"""Stage report: reports/index.html, one self-contained page (images inline, CSS inline, no script).

    python -m pipeline report

Renders the values :mod:`pipeline.report_context` computes from the pipeline's outputs (the
tables, the claims) with the template pipeline/templates/report.html.j2. The page references
nothing outside itself: every image is a ``data:`` URI and the only links are in-page anchors.
This stage records no timing (it reads reports/timings/).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2

from pipeline.core import registry
from pipeline.core.atomic import atomic_path
from pipeline.core.io import read_params
from pipeline.report_context import build_context

OUT = registry.REPORT_HTML
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


def fmt(x: Any, digits: int = 3, undefined: str = "–") -> str:
    """A number with ``digits`` decimals; an undefined one (None, NaN, evaluate's "undefined") as
    ``undefined`` (a dash, or the word where a note does not explain the dash: the headline)."""
    if x is None or x == "undefined":
        return undefined
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if f != f:  # NaN
        return undefined
    return f"{f:.{digits}f}"


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env.get_template(TEMPLATE).render(**context)


def main() -> None:
    html = render(build_context(read_params()))  # validates every section first (the page shows them all)
    with atomic_path(OUT) as tmp:
        tmp.write_text(html, encoding="utf-8")
        os.chmod(tmp, 0o644)  # a page to open or serve: readable by all, like the figures
