"""The real edge and cloud processes (issue 16): over loopback, over namespaces shaped by tc, bad
input, and a killed stage that must leave no process or namespace behind. Tiny random model,
a dozen samples: each test takes seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eeoffload import wire
from eeoffload.model import BAlexNet
from pipeline.link import netns
from pipeline.link.runner import Job, LinkConfig, LinkError, run_pair
from pipeline.tools.scratch import scratch_env
from tests.link_project import BRANCHES, make_project

ROOT = Path(__file__).resolve().parent.parent
PERMITTED, WHY = netns.namespaces_permitted()
needs_netns = pytest.mark.skipif(not PERMITTED, reason=f"network namespaces not permitted here: {WHY}")
TEMPS = {"conventional": [1.0, 1.0, 1.0], "calibrated": [0.5, 0.5, 1.0]}


def tiny_job(tmp_path: Path, n: int = 8, encoding: str = "fp16", p_tar: float = 0.2) -> tuple[Job, BAlexNet]:
    torch.manual_seed(0)
    model = BAlexNet(BRANCHES).eval()
    path = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "branches": BRANCHES}, path)
    rng = np.random.default_rng(0)
    images = {"images": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
              "labels": rng.integers(0, 10, n).astype(np.int64), "sample_id": np.arange(n, dtype=np.int64)}
    return Job(path, BRANCHES, images, TEMPS, p_tar=p_tar, encoding=encoding), model


def in_process_classes(model: BAlexNet, images: np.ndarray, temps: list[float],
                       p_tar: float) -> tuple[np.ndarray, np.ndarray]:
    """(exit 1..n, class) per sample from the whole model in one process (paper section III)."""
    from eeoffload.training import images_to_tensor

    with torch.no_grad():
        exits = [z.numpy() for z in model.reference_forward(images_to_tensor(images))]
    exit_of, classes = [], []
    for s in range(len(images)):
        for k, z in enumerate(exits):
            p = np.exp(z[s] / temps[k] - (z[s] / temps[k]).max())
            if k == len(exits) - 1 or (p / p.sum()).max() >= p_tar:
                exit_of.append(k + 1)
                classes.append(int(z[s].argmax()))
                break
    return np.array(exit_of), np.array(classes)


def test_loopback_pair_answers_every_sample_like_the_in_process_model(tmp_path: Path) -> None:
    job, model = tiny_job(tmp_path, encoding="fp32")
    result = run_pair(job, LinkConfig(method="loopback", uplink_mbps=50.0, throughput_seconds=0.2))
    records = result.records
    assert result.method["link"] == "loopback, rate applied in the sender"
    assert len(records) == 2 * len(job.images["labels"])  # every sample answered, both calibrations
    for calibration, temps in TEMPS.items():
        got = records[records["calibration"] == calibration].sort_values("position")
        exits, classes = in_process_classes(model, job.images["images"], temps, job.p_tar)
        np.testing.assert_array_equal(got["exit"], exits)
        np.testing.assert_array_equal(got["predicted"], classes)
    off = records[records["offloaded"]]
    assert len(off) > 0
    elements = 64 * 16 * 16  # relu2's output for one sample
    assert (off["payload_bytes"] == wire.uncompressed_bytes(elements, 4, "fp32")).all()
    assert (off["http_bytes"] > off["payload_bytes"]).all()
    assert (records.loc[~records["offloaded"], "payload_bytes"] == 0).all()
    # the sender's rate limit: an offloaded sample cannot beat bytes * 8 / rate
    assert (off["request_ms"] >= off["http_bytes"] * 8 / 50e6 * 1e3 * 0.99).all()
    assert result.throughput["mbps"] <= 50.0 * 1.02  # never faster than the set rate


def test_loopback_pair_with_int8_counts_one_byte_per_element(tmp_path: Path) -> None:
    job, _ = tiny_job(tmp_path, n=3, encoding="int8", p_tar=2.0)  # p_tar 2: every sample offloaded
    records = run_pair(job, LinkConfig(method="loopback", uplink_mbps=50.0, throughput_seconds=0.1)).records
    assert records["offloaded"].all()
    assert (records["payload_bytes"] == wire.uncompressed_bytes(64 * 16 * 16, 4, "int8")).all()


@needs_netns
def test_namespaces_and_tc_shape_the_uplink(tmp_path: Path) -> None:
    job, _ = tiny_job(tmp_path, n=2)
    result = run_pair(job, LinkConfig(method="netns", uplink_mbps=4.0, throughput_seconds=0.6))
    assert result.method["link"] == "netns+veth, tc tbf"
    assert abs(result.throughput["mbps"] / 4.0 - 1) <= 0.15, result.throughput
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(f"eeo{os.getpid()}")]


@pytest.mark.parametrize("method", ["netns", "loopback"])
def test_rtt_is_added_and_labelled(tmp_path: Path, method: str) -> None:
    if method == "netns" and not PERMITTED:
        pytest.skip(f"network namespaces not permitted here: {WHY}")
    job, _ = tiny_job(tmp_path, n=2, p_tar=2.0)
    result = run_pair(job, LinkConfig(method=method, uplink_mbps=50.0, rtt_ms=20.0, throughput_seconds=0.1))
    off = result.records
    if result.method["delay"] == "application":  # no netem in this kernel: slept in the edge, labelled
        assert (off["delay_ms"] == 20.0).all()
        assert (off["e2e_ms"] >= off["edge_ms"] + off["request_ms"] + 20.0).all()
    else:
        assert result.method["delay"] == "netem" and (off["request_ms"] >= 20.0).all()


def test_unknown_encoding_is_one_clear_error(tmp_path: Path) -> None:
    job, _ = tiny_job(tmp_path, encoding="bf16")
    with pytest.raises(LinkError, match=r"link.encoding: unknown encoding 'bf16'; allowed: fp32 \| fp16 \| int8"):
        run_pair(job, LinkConfig(method="loopback"))


def test_unreachable_cloud_is_one_clear_error(tmp_path: Path) -> None:
    from pipeline.link.runner import _free_port

    url = f"http://127.0.0.1:{_free_port()}"
    cfg = {"mode": "throughput", "url": url, "connect_timeout_s": 1.0, "request_timeout_s": 1.0, "throughput_bytes": 10,
           "out_path": str(tmp_path / "out.json")}
    (tmp_path / "edge.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, "-m", "pipeline.link.edge", str(tmp_path / "edge.json")],
                          env=scratch_env(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: cloud process unreachable at {url} after 1 s")


def test_cloud_that_dies_is_reported(tmp_path: Path) -> None:
    job, _ = tiny_job(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(LinkError, match=r"cloud process exited with status 2: .*model.pt: not a readable weights file"):
        run_pair(job, LinkConfig(method="loopback", connect_timeout_s=20))


def stage(root: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {**scratch_env(ROOT), "TMPDIR": str(root)}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "measure_link", "tiny"], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("key, value, message", [
    ("encoding", "bf16", "error: params.yaml: link.encoding = 'bf16'; allowed: fp32 | fp16 | int8"),
    ("uplink_trace", "bad.csv", "error: link.uplink_trace: bad.csv: row 3: time_s must increase strictly (1 then 1)"),
    ("uplink_trace", "missing.csv", "error: link.uplink_trace: missing.csv: file not found"),
])
def test_stage_bad_input_exits_2_with_one_line(tmp_path: Path, key: str, value: str, message: str) -> None:
    root = make_project(tmp_path / "p", link={key: value})
    (root / "bad.csv").write_text("time_s,mbps\n0,18.8\n1,10\n1,12\n")
    out, err = stage(root).communicate(timeout=60)
    assert err.strip() == message


def leftovers(root: Path, pid: int) -> list[str]:
    found = [ns for ns in netns.list_namespaces() if ns in (f"eeo{pid}e", f"eeo{pid}c")]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(root) in cmdline and "pipeline.link" in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.parametrize("method, sig", [("netns", signal.SIGKILL), ("loopback", signal.SIGKILL),
                                         ("netns", signal.SIGTERM)])
def test_killed_stage_leaves_no_process_or_namespace(tmp_path: Path, method: str, sig: int) -> None:
    if method == "netns" and not PERMITTED:
        pytest.skip(f"network namespaces not permitted here: {WHY}")
    root = make_project(tmp_path / "p", n_test=200, link={"method": method, "n_samples": 200},
                        network={"uplink_mbps": 2.0})
    proc = stage(root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("pipeline.link.edge" in x for x in leftovers(root, proc.pid)):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert leftovers(root, proc.pid), "the edge process never started"
    proc.send_signal(sig)
    proc.communicate(timeout=10)
    end = time.monotonic() + 10
    while leftovers(root, proc.pid) and time.monotonic() < end:
        time.sleep(0.2)
    assert leftovers(root, proc.pid) == []
    assert not [p for p in root.iterdir() if p.name.startswith("eeo-link-")]  # the work folder is gone too


def test_without_namespaces_auto_falls_back_to_loopback_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.link import runner

    monkeypatch.setattr(netns, "namespaces_permitted", lambda: (False, "not root"))
    assert runner.choose_method("auto") == ("loopback", "not root")
    assert runner.choose_method("loopback") == ("loopback", "link.method = loopback")
    with pytest.raises(LinkError, match="link.method = netns but network namespaces are not permitted here: not root"):
        runner.choose_method("netns")
