"""Rebuild pipeline/templates/dvc_plots.html: the HTML template that makes DVC's plots work offline.

    python -m pipeline vega-template   (needs npm and the npm registry; the result is committed)

dvc-render's default page loads Vega, Vega-Lite and Vega-Embed from a CDN. This template inlines
the same versions, fetched with ``npm pack`` from the npm registry, and has no ``{scripts}``
placeholder, so ``dvc plots show/diff --html-template pipeline/templates/dvc_plots.html`` writes a
page that renders with no network.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "dvc_plots.html"
#: The versions dvc-render's default page loads (dvc_render/vega.py), each BSD-3-Clause.
LIBRARIES = (("vega", "5.20.2", "vega.min.js"), ("vega-lite", "5.2.0", "vega-lite.min.js"),
             ("vega-embed", "6.18.2", "vega-embed.min.js"))
HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots (offline)</title>
<!-- HTML template for `dvc plots show/diff --html-template`: Vega, Vega-Lite and Vega-Embed inlined from
     the npm registry (vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2: the versions dvc-render loads from a CDN;
     each BSD-3-Clause, (c) the University of Washington Interactive Data Lab), so the page needs no network.
     Rebuilt by `python -m pipeline vega-template` (npm pack + these files). -->
"""
TAIL = """<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m pipeline vega-template", description=__doc__.splitlines()[0]).parse_args(argv)
    parts = [HEAD]
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, script in LIBRARIES:
            out = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            with tarfile.open(Path(tmp) / out) as tar:
                member = tar.extractfile(f"package/build/{script}")
                assert member is not None
                code = member.read().decode("utf-8")
            parts.append(f"<script>/* {name}@{version} (npm), BSD-3-Clause */\n{code}\n</script>\n")
    parts.append(TAIL)
    TEMPLATE.write_text("".join(parts), encoding="utf-8")
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size / 1e3:.0f} kB)")
