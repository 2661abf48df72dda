"""What the report shows of stage measure_link: an HTML fragment and one claims-table row.

    from pipeline.link.report_fragment import link_fragment, link_claim
    html = link_fragment("one_branch")          # "" when the stage has not run for this variant
    row = link_claim("one_branch")              # {id, figure, claim, variant, verdict, evidence}

The fragment is self-contained (tables and inline base64 PNGs): the method label, the throughput
check, model vs measurement per exit and per offloaded sample (error in ms and %), the
missed-deadline curves of Fig. 5 from the model beside those from the measured latencies, the
constant-rate vs trace comparison, and the bytes and final-exit accuracy of each encoding. Both
read the stage's outputs through :func:`pipeline.measure_link.paths` (cwd = project root, or
``root``). matplotlib is imported only here, lazily (Agg backend).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.registry import link_dir

CLAIM_ID = "link_model"
CLAIM_FIGURE = "Fig. 5 (latency model)"
STYLES = {("conventional", "modelled"): ("tab:red", "-"), ("conventional", "measured"): ("tab:red", "--"),
          ("calibrated", "modelled"): ("tab:blue", "-"), ("calibrated", "measured"): ("tab:blue", "--")}


def _load(variant: str, root: Path) -> dict[str, Any] | None:
    out = root / link_dir(variant)
    files = {name: out / f"{name}.parquet" for name in ("samples", "deadline", "encodings")}
    if not (out / "summary.json").is_file() or not all(f.is_file() for f in files.values()):
        return None
    data: dict[str, Any] = {name: pd.read_parquet(f) for name, f in files.items()}
    data["summary"] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


def _png(fig: Any) -> str:
    from eeoffload.figures import inline_img

    return inline_img(fig, alt="figure")


def _figure(deadline: pd.DataFrame, sources: list[str], titles: list[str], suptitle: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p_tars = sorted(deadline["p_tar"].unique())
    fig, axes = plt.subplots(len(sources), len(p_tars), figsize=(3.6 * len(p_tars), 2.9 * len(sources)),
                             sharey=True, squeeze=False)
    for r, (source, title) in enumerate(zip(sources, titles)):
        for c, p in enumerate(p_tars):
            ax = axes[r][c]
            for (cal, src), (color, style) in STYLES.items():
                kind = "measured" if source.startswith("measured") else "modelled"
                rows = deadline[(deadline["source"] == source) & (deadline["calibration"] == cal)
                                & (deadline["p_tar"] == p)].sort_values("t_tar_ms")
                if src == kind and len(rows):
                    ax.plot(rows["t_tar_ms"], rows["missed_deadline"], color=color, linestyle=style,
                            drawstyle="steps-post", label=cal)
            ax.set_title(f"{title}, $p_{{tar}}$ = {p:g}", fontsize=9)
            ax.set_xlabel("deadline $t_{tar}$ (ms, mean per sample)")
            ax.set_ylim(-0.02, 1.02)
            if c == 0:
                ax.set_ylabel("missed-deadline prob.")
            ax.legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0, classes="link-table")


def link_fragment(variant: str, root: Path = Path(".")) -> str:
    """The HTML fragment for one variant ("" if the stage's outputs are missing)."""
    data = _load(variant, root)
    if data is None:
        return ""
    s, deadline = data["summary"], data["deadline"]
    tp, off = s["throughput"], s["offloaded"]
    parts = [f"<h3>Measured link: {html.escape(variant)}</h3>",
             f"<p><b>Method:</b> {html.escape(s['label'])}; encoding {s['encoding']} + {s['compressor']}; "
             f"uplink {s['uplink_mbps']:g} Mbps, RTT {s['rtt_ms']:g} ms; {s['n_samples']} test samples per "
             f"calibration at p_tar {s['p_tar']:g}; edge {s['method']['edge_threads']} thread(s), cloud "
             f"{s['method']['cloud_threads']}.</p>",
             f"<p><b>Throughput check:</b> {tp['measured_mbps']} Mbps measured of {tp['set_mbps']:g} set "
             f"(ratio {tp['ratio']}, {'within' if tp['within_15pct'] else 'NOT within'} 15%).</p>",
             f"<p><b>Offloaded sample:</b> measured {off.get('measured_ms')} ms, modelled {off.get('modelled_ms')} ms "
             f"(error {off.get('error_ms')} ms, {off.get('error_pct')}%; n = {off.get('n')}); transfer measured "
             f"{off.get('measured_transfer_ms')} ms vs bytes x 8 / rate {off.get('modelled_transfer_ms')} ms; "
             f"bytes on the wire {s['bytes']['payload_bytes']} payload, {s['bytes']['http_bytes']} with HTTP "
             f"headers (model: {s['bytes']['model_upload_bytes']:g}).</p>"]
    fr = s.get("framing") or {}
    if fr:
        parts.append(f"<p><b>What the model leaves out:</b> fed the HTTP bytes x {fr['frame_overhead']} "
                     f"(TCP/IP/Ethernet framing, {fr['wire_bytes']} bytes per sample) the model gives "
                     f"{fr['modelled_ms']} ms "
                     f"(error {fr['error_pct']}%); the rest is the reply, HTTP handling and scheduling.</p>")
    for cal, rows in s["per_exit"].items():
        parts += [f"<p>Per exit, {cal}:</p>", _table(pd.DataFrame(rows))]
    parts.append(_figure(deadline, ["modelled", "measured"], ["model", "measured"],
                         f"Fig. 5, {variant}: missed deadline from the latency model (top) "
                         "and from measured latencies (bottom)"))
    if "trace" in s:
        tr = s["trace"]
        parts.append(f"<p><b>Time-varying uplink</b> ({html.escape(str(tr['path']))}, period {tr['period_s']:g} s, "
                     f"mean {tr['mean_mbps']} Mbps): offloaded sample measured "
                     f"{tr['offloaded'].get('measured_ms')} ms, "
                     f"modelled {tr['offloaded'].get('modelled_ms')} ms ({tr['offloaded'].get('error_pct')}%).</p>")
        parts.append(_table(pd.DataFrame(tr["missed_deadline_change"])))
        sources = [x for x in ("modelled", "modelled_trace", "measured_trace") if x in set(deadline["source"])]
        parts.append(_figure(deadline, sources, [x.replace("_", ", ") for x in sources],
                             f"{variant}: constant-rate model vs the trace (model and measurement)"))
    parts += ["<p>Encodings: bytes per offloaded sample and final-exit accuracy on the decoded tensor "
              "(sample of the test split):</p>", _table(data["encodings"])]
    return "\n".join(parts)


def link_claim(variant: str, root: Path = Path(".")) -> dict[str, str]:
    """The claims-table row: the model predicts the measured offload latency within
    ``link.tolerance_pct`` % (fixed in params.yaml before any measurement; docs/link.md)."""
    from eeoffload.claims import DOES_NOT_HOLD, HOLDS, NOT_APPLICABLE

    data = _load(variant, root)
    if data is None:
        return {"id": CLAIM_ID, "figure": CLAIM_FIGURE,
                "claim": "the latency model predicts the measured offload latency", "variant": variant,
                "verdict": NOT_APPLICABLE, "evidence": "stage measure_link has not run"}
    s = data["summary"]
    off, x = s["offloaded"], s["claim"]["tolerance_pct"]
    claim = f"the latency model predicts the measured offload latency within {x:g}%"
    if not off or off.get("error_pct") is None:
        return {"id": CLAIM_ID, "figure": CLAIM_FIGURE, "claim": claim, "variant": variant,
                "verdict": NOT_APPLICABLE, "evidence": "no sample was offloaded"}
    evidence = (f"measured {off['measured_ms']:.2f} ms vs modelled {off['modelled_ms']:.2f} ms per offloaded sample "
                f"(error {off['error_pct']:+.1f}%, n = {off['n']}); {s['label']}, {s['uplink_mbps']:g} Mbps, "
                f"{s['encoding']}")
    return {"id": CLAIM_ID, "figure": CLAIM_FIGURE, "claim": claim, "variant": variant,
            "verdict": HOLDS if s["claim"]["holds"] else DOES_NOT_HOLD, "evidence": evidence}
