"""Stage report: reports/index.html from synthetic metrics: self-contained, every figure, computed claims;
and the page opened in headless Chromium (no image fails to load, a screenshot is taken)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from eeoffload import claims as C
from tests.synthetic_metrics import EXTRA_FIGURES, PAPER_FIGURES, make_project, write_synthetic_inputs
from tests.synthetic_metrics import run_stage as stage

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio"]


class Page(HTMLParser):
    """Every tag's attributes, the claims table's rows and the text of <style> blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.claim_rows: list[list[str]] = []
        self._in_claims = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table" and a.get("id") == "claims-table":
            self._in_claims = True
        elif self._in_claims and tag == "tr":
            self._row = []
        elif self._in_claims and tag in ("td", "th"):
            self._cell = []
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._in_claims:
            self._in_claims = False
        elif self._in_claims and tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif self._in_claims and tag == "tr" and self._row is not None:
            self.claim_rows.append(self._row)
            self._row = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.style += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("report"))
    for name in ("plots", "report"):
        proc = stage(root, name)
        assert proc.returncode == 0, proc.stderr
    return root


def test_report_is_self_contained(reported: Path) -> None:
    page = parse(reported / "reports" / "index.html")
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "data", "action", "poster"):
            value = attrs.get(key, "")
            assert "http://" not in value and "https://" not in value, (tag, key, value[:80])
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
        if tag == "a":
            assert attrs["href"].startswith("#")
        assert not (tag == "script" and "src" in attrs)
        assert not (tag == "link" and "stylesheet" in attrs.get("rel", ""))
    assert "url(" not in page.style and "@import" not in page.style


def test_report_has_every_figure(reported: Path) -> None:
    page = parse(reported / "reports" / "index.html")
    imgs = {a["data-figure"]: a["src"] for t, a in page.tags if t == "img"}
    assert list(imgs) == PAPER_FIGURES + EXTRA_FIGURES
    for name, src in imgs.items():
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png == (reported / "reports" / "figures" / f"{name}.png").read_bytes()
    captions = [a for t, a in page.tags if t == "figcaption"]
    assert len(captions) == len(imgs)


def test_report_claims_table_is_computed(reported: Path, tmp_path: Path) -> None:
    page = parse(reported / "reports" / "index.html")
    header, *rows = page.claim_rows
    assert header == ["#", "figure", "claim", "variant", "this run", "verdict"]
    off = {v: pd.read_parquet(reported / "reports" / "metrics" / v / "offload.parquet") for v in ("one_branch", "two_branch")}
    dl = {v: pd.read_parquet(reported / "reports" / "metrics" / v / "deadline.parquet") for v in ("one_branch", "two_branch")}
    want = C.claims_table(off, dl, "one_branch", "two_branch")
    assert [r[0] for r in rows] == list(want["id"])
    assert [r[5] for r in rows] == list(want["verdict"])
    assert [r[4] for r in rows] == [" ".join(n.split()) for n in want["numbers"]]
    assert set(want["verdict"]) == {C.HOLDS}  # the synthetic data is shaped like the paper's

    # The same report on metrics where calibration does worse: the verdicts follow the data.
    other = tmp_path / "p"
    shutil.copytree(reported, other)
    write_synthetic_inputs(other, shape="inverted")
    proc = stage(other, "report")
    assert proc.returncode == 0, proc.stderr
    verdicts = [r[5] for r in parse(other / "reports" / "index.html").claim_rows[1:]]
    assert verdicts.count(C.DOES_NOT_HOLD) >= 8


def test_report_summary(reported: Path) -> None:
    text = (reported / "reports" / "index.html").read_text(encoding="utf-8")
    for needle in ("18.8 Mbps", "Synthetic GPU", "Synthetic CPU", "commit", "temperature scaling, one T per exit", "train", "600.0",
                   "ECE before", "ECE after"):
        assert needle in html.unescape(text), needle
    # Not a git repository: the commit is unknown rather than an error.
    assert "<code>unknown</code>" in text
    # The report records no timing of its own (it reads that folder).
    assert not (reported / "reports" / "timings" / "report.json").exists()


def test_report_missing_input_names_the_file(reported: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(reported, root)
    (root / "reports" / "calibration" / "two_branch" / "seed0_exits.parquet").unlink()
    before = (root / "reports" / "index.html").read_bytes()
    proc = stage(root, "report")
    assert proc.returncode == 2
    assert "reports/calibration/two_branch/seed0_exits.parquet" in proc.stderr and "Traceback" not in proc.stderr
    assert (root / "reports" / "index.html").read_bytes() == before


# --------------------------------------------------------------------------- headless Chromium

# Appended to a copy of the report: on load, list every image that did not decode. A deliberately
# broken image is added so the test also proves the check can fail.
PROBE = """
<img id="probe-broken" src="data:image/png;base64,AAAA" alt="deliberately broken">
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.id || i.getAttribute('data-figure') || i.alt; });
  var out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = 'IMAGE-CHECK ' + JSON.stringify({total: imgs.length, broken: broken}) + ' END';
  document.body.appendChild(out);
});
</script>
"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], text=True,
                          capture_output=True, timeout=120, env=dict(os.environ, HOME=str(tmp)))


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"Debian chromium is not installed ({CHROMIUM} absent): apt-get install chromium")
def test_report_in_headless_chromium(reported: Path, tmp_path: Path) -> None:
    page = reported / "reports" / "index.html"
    text = page.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    proc = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=20000", probe.as_uri())
    m = re.search(r"IMAGE-CHECK (\{.*?\}) END", html.unescape(proc.stdout))
    assert m, f"no image check in the DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(m.group(1))
    n_figures = len(PAPER_FIGURES + EXTRA_FIGURES)
    assert result == {"total": n_figures + 1, "broken": ["probe-broken"]}

    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 50_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 4000)


def test_report_commit_is_the_projects_in_a_scratch_copy(tmp_path: Path) -> None:
    """A scratch copy (make smoke, tests) shows the commit of the project it was copied from."""
    from pipeline.core.io import git_commit, project_commit
    from pipeline.tools.scratch import ROOT as PROJECT
    from pipeline.tools.scratch import make_scratch_project

    copy = make_scratch_project(tmp_path / "p", vcs=False)
    shown = project_commit(copy)
    assert shown.startswith(git_commit(PROJECT).split()[0]) and str(PROJECT) in shown
    assert project_commit(tmp_path) == "unknown"  # neither a copy nor a repository


def test_report_intervals_are_clipped_to_probabilities(reported: Path, tmp_path: Path) -> None:
    """Every interval the claims table shows lies in [0, 1], as the page says, even where the seeds'
    t-interval (metrics files, raw) reaches past the bounds: e.g. C9 showed 0.667 [0.083, 1.250]."""
    other = tmp_path / "p"
    shutil.copytree(reported, other)
    for v in ("one_branch", "two_branch"):
        for name, cols in (("offload", ("p_device", "acc_device", "acc_total", "outage")), ("deadline", ("missed_deadline",))):
            path = other / "reports" / "metrics" / v / f"{name}.parquet"
            df = pd.read_parquet(path)
            for col in cols:  # a wide t-interval over 3 seeds, unclipped as evaluate writes it
                df[f"{col}_seed_lo"], df[f"{col}_seed_hi"] = df[col] - 0.6, df[col] + 0.6
            df.to_parquet(path)
    proc = stage(other, "report")
    assert proc.returncode == 0, proc.stderr
    rows = parse(other / "reports" / "index.html").claim_rows[1:]
    intervals = [(float(a), float(b)) for r in rows for a, b in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", r[4])]
    assert intervals, rows
    assert all(0.0 <= a <= b <= 1.0 for a, b in intervals), [i for i in intervals if not 0 <= i[0] <= i[1] <= 1]
    assert any(b == 1.0 for _, b in intervals) and any(a == 0.0 for a, _ in intervals)


def test_report_fig4_caption_matches_its_legend(reported: Path) -> None:
    """The caption says what the legend shows (tests/test_figure_legends.py checks the figure's styles):
    not 'dashed and band: ... re-batchings' but dotted re-batchings, shaded Clopper-Pearson bands."""
    text = (reported / "reports" / "index.html").read_text(encoding="utf-8")
    captions = dict(re.findall(r'data-figure="([^"]+)">\s*<figcaption>(.*?)</figcaption>', text, flags=re.S))
    fig4 = " ".join(html.unescape(captions["fig4_outage"]).split())
    for needle in ("solid conventional", "dashed calibrated", "thin dotted lines: the mean over",
                   "shaded bands: the Clopper-Pearson 95% interval", "greyish where the two overlap", "hatched"):
        assert needle in fig4, fig4
    assert "dashed and band" not in fig4
    assert "greyish where the two overlap" in " ".join(captions["fig5_missed_deadline_one_branch"].split())


def test_report_headline_says_undefined_not_none(reported: Path, tmp_path: Path) -> None:
    """An undefined headline metric (null in reports/metrics.json: no sample kept on the device) reads
    "undefined" in the headline table, and so does its interval over two seeds (not "one seed"); never
    Python's None."""
    other = tmp_path / "p"
    shutil.copytree(reported, other)
    path = other / "reports" / "metrics.json"
    metrics = json.loads(path.read_text())
    m = metrics["one_branch"]["calibrated"]
    for key in [k for k in m if k.startswith("acc_device@0.85")]:
        m[key] = None
    m["n_seeds"] = 2  # two seeds, the metric undefined on them: not "one seed"
    path.write_text(json.dumps(metrics))
    proc = stage(other, "report")
    assert proc.returncode == 0, proc.stderr
    page = (other / "reports" / "index.html").read_text(encoding="utf-8")
    table = page[page.index('id="headline-table"'):]
    table = table[:table.index("</table>")]
    row = next(r for r in table.split("<tr>") if "one_branch</td><td>calibrated</td><td>acc_device@0.85<" in r)
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row.split("</td>")[3:5]]
    assert cells == ["undefined", "undefined (2 seeds)"], cells
    assert "None" not in re.sub(r"<[^>]+>", " ", table)
