"""Architectures selectable by params (``ModelSpec``): the default is the original B-AlexNet weight
for weight; alexnet224 is torchvision's AlexNet layout; both heads; torchvision weights; the
balexnet32 deviations; the LRN under autocast; what the latency profile and the link read."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from eeoffload.layers import _LRN, LocalResponseNorm
from eeoffload.layout import ModelSpec, validate_branches
from eeoffload.model import (BAlexNet, BranchPlacementError, build_model, branchynet_b1_head, trunk_output_shapes)
from eeoffload.model_alexnet224 import load_torchvision_alexnet

A224 = ModelSpec(arch="alexnet224")


def _original_construction(branches: list[str]) -> dict[str, torch.Tensor]:
    """The state dict of B-AlexNet as first written (before ModelSpec), module for module in its
    construction order: the trunk, a throwaway trunk for the shapes, then each head (README)."""
    def trunk() -> list[tuple[str, nn.Module]]:
        return [("conv1", nn.Conv2d(3, 32, 5, padding=2)), ("conv2", nn.Conv2d(32, 64, 5, padding=2)),
                ("conv3", nn.Conv2d(64, 96, 3, padding=1)), ("conv4", nn.Conv2d(96, 96, 3, padding=1)),
                ("conv5", nn.Conv2d(96, 64, 3, padding=1)), ("fc1", nn.Linear(1024, 256)),
                ("fc2", nn.Linear(256, 128)), ("fc3", nn.Linear(128, 10))]

    state = {f"trunk.{n}.{k}": v for n, m in trunk() for k, v in m.state_dict().items()}
    trunk()  # the shapes' trunk
    shapes = {"relu1": (32, 32), "pool1": (32, 16), "relu2": (64, 16), "pool2": (64, 8), "relu3": (96, 8),
              "relu4": (96, 8), "relu5": (64, 8), "pool5": (64, 4), "relu6": (256, 0), "relu7": (128, 0)}
    order = [b for b in shapes if b in branches]
    for b in order:
        c, size = shapes[b]
        if size == 0:
            head = [("fc", nn.Linear(c, 10))]
        else:
            conv = nn.Conv2d(c, 32, 3, padding=1)
            size = size if size <= 4 else (size + 1) // 2
            size = size if size <= 4 else (size + 1) // 2
            head = [("conv", conv), ("fc", nn.Linear(32 * size * size, 10))]
        state.update({f"branches.{b}.{n}.{k}": v for n, m in head for k, v in m.state_dict().items()})
    return state


@pytest.mark.parametrize("branches", [["relu1"], ["relu1", "relu2"], ["pool2", "relu5", "relu7"]])
def test_default_spec_draws_the_original_weights(branches: list[str]) -> None:
    torch.manual_seed(7)
    expected = _original_construction(branches)
    after_expected = torch.rand(3)
    for make in (lambda: build_model(ModelSpec(), branches), lambda: BAlexNet(branches)):
        torch.manual_seed(7)
        state = make().state_dict()
        assert torch.equal(torch.rand(3), after_expected)  # the same number of draws
        assert state.keys() == expected.keys()
        for key in expected:
            assert torch.equal(state[key], expected[key]), key


def test_alexnet224_shapes_follow_torchvision() -> None:
    shapes = trunk_output_shapes(A224)
    assert shapes["resize"] == (3, 224, 224)
    assert shapes["relu1"] == (64, 55, 55) and shapes["pool1"] == (64, 27, 27)
    assert shapes["relu2"] == (192, 27, 27) and shapes["pool2"] == (192, 13, 13)
    assert shapes["relu5"] == (256, 13, 13) and shapes["pool5"] == (256, 6, 6)
    assert shapes["flatten"] == (9216,) and shapes["relu7"] == (4096,) and shapes["fc3"] == (10,)


def test_alexnet224_trunk_is_torchvision_alexnet() -> None:
    """Same seed, same weights; same logits as torchvision's AlexNet on the resized input."""
    from torchvision.models import alexnet

    torch.manual_seed(3)
    ours = BAlexNet(["pool1"], spec=A224).eval()
    torch.manual_seed(3)
    tv = alexnet(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    resized = nn.functional.interpolate(x, size=224, mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[-1], tv(resized), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.trunk.conv1.weight, tv.features[0].weight, rtol=0, atol=0)


def test_partition_sizes_follow_the_architecture() -> None:
    from eeoffload.latency_measure import layer_inputs, output_elements

    elements = output_elements(BAlexNet(["relu1", "pool1"], spec=A224))
    assert elements["resize"] == 3 * 224 * 224
    assert elements["relu1"] == 193600 and elements["pool1"] == 46656
    assert elements["branch1"] == elements["branch2"] == 10
    assert layer_inputs(BAlexNet(["pool1"], spec=A224), "cpu")[0][3].shape == (1, 3, 32, 32)
    small = output_elements(BAlexNet(["relu1", "relu2"]))
    assert small["relu1"] == 32 * 32 * 32 and small["relu2"] == 64 * 16 * 16


def test_edge_and_cloud_parts_split_alexnet224_at_its_partition_layer() -> None:
    from eeoffload.partition import CloudPart, EdgePart

    model = BAlexNet(["pool1", "pool2"], spec=A224).eval()
    x = torch.randn(1, 3, 32, 32)
    result = EdgePart(model).run(x, [1.0, 1.0], p_tar=1.1)  # never confident: offloaded
    assert result.exit == 3 and result.partition.shape == (1, 192, 13, 13)
    with torch.no_grad():
        torch.testing.assert_close(CloudPart(model).run(result.partition), model.reference_forward(x)[-1])


@pytest.mark.parametrize(("in_shape", "pooled", "fc_in"), [
    ((64, 27, 27), 13, 512),  # alexnet224 pool1: the authors' Linear(512, 10)
    ((192, 13, 13), 6, 128),  # alexnet224 pool2
    ((32, 32, 32), 15, 800),  # balexnet32 relu1
    ((64, 16, 16), 7, 128),  # balexnet32 relu2
])
def test_branchynet_b1_head_shapes(in_shape: tuple[int, int, int], pooled: int, fc_in: int) -> None:
    head = branchynet_b1_head(in_shape)
    assert [n for n, _ in head.named_children()] == ["relu_a", "pool_a", "lrn", "conv1", "relu1", "conv2", "relu2",
                                                    "pool_b", "flatten", "fc"]
    x = torch.randn(2, *in_shape)
    assert head[:2](x).shape == (2, in_shape[0], pooled, pooled)
    assert head.conv1.in_channels == in_shape[0] and head.conv2.in_channels == 32 == head.conv2.out_channels
    assert head.fc.in_features == fc_in and head(x).shape == (2, 10)
    assert (head.lrn.size, head.lrn.alpha, head.lrn.beta, head.lrn.k) == (3, 5e-5, 0.75, 1.0)  # the authors' torch LRN


@pytest.mark.parametrize(("spec", "branches"), [
    (ModelSpec(head="branchynet_b1"), ["relu1", "relu2", "pool5", "relu6"]),
    (ModelSpec(arch="alexnet224", head="branchynet_b1"), ["pool1", "pool2"]),
])
def test_models_with_the_branchynet_head_give_every_exit(spec: ModelSpec, branches: list[str]) -> None:
    model = build_model(spec, branches).eval()
    assert [tuple(z.shape) for z in model(torch.zeros(2, 3, 32, 32))] == [(2, 10)] * (len(branches) + 1)
    assert model.branches["relu6" if "relu6" in branches else "pool1"][-1].out_features == 10


def test_ours_head_on_alexnet224_shapes() -> None:
    model = BAlexNet(["relu1", "relu7"], spec=A224)
    assert model.branches["relu1"].fc.in_features == 32 * 13 * 13  # 55 -> 27 -> 13 (ceil pools 3/2)
    assert model.branches["relu7"].fc.in_features == 4096


def _torchvision_state(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=num_classes).state_dict()  # no download


def test_torchvision_weights_load_into_the_trunk(tmp_path: Path) -> None:
    state = _torchvision_state()
    model = BAlexNet(["pool1"], spec=A224)
    fc3 = model.trunk.fc3.weight.detach().clone()
    assert load_torchvision_alexnet(model, state) == ["classifier.6.weight", "classifier.6.bias"]
    assert torch.equal(model.trunk.conv1.weight, state["features.0.weight"])
    assert torch.equal(model.trunk.conv5.bias, state["features.10.bias"])
    assert torch.equal(model.trunk.fc2.weight, state["classifier.4.weight"])
    assert torch.equal(model.trunk.fc3.weight, fc3)  # the 10-class head stays as initialised
    # through build_model and a file
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    built = build_model(ModelSpec(arch="alexnet224", init_weights=str(path)), ["pool1"])
    assert torch.equal(built.trunk.fc1.weight, state["classifier.1.weight"])
    # a 10-class head loads too
    ten = _torchvision_state(10)
    assert load_torchvision_alexnet(model.trunk, ten) == []
    assert torch.equal(model.trunk.fc3.weight, ten["classifier.6.weight"])


def test_torchvision_weights_mismatch_is_one_clear_error() -> None:
    state = _torchvision_state()
    model = BAlexNet(["pool1"], spec=A224)
    before = model.trunk.conv1.weight.detach().clone()
    wrong = dict(state, **{"features.3.weight": torch.zeros(192, 32, 5, 5)})
    match = r"'features.3.weight' has shape \(192, 32, 5, 5\), expected \(192, 64, 5, 5\)"
    with pytest.raises(ValueError, match=match):
        load_torchvision_alexnet(model, wrong)
    assert torch.equal(model.trunk.conv1.weight, before)  # nothing copied
    with pytest.raises(ValueError, match=r"missing key 'classifier.4.bias'"):
        load_torchvision_alexnet(model, {k: v for k, v in state.items() if k != "classifier.4.bias"})
    with pytest.raises(ValueError, match=r"'classifier.6.weight' has shape \(7, 4096\)"):
        load_torchvision_alexnet(model, dict(state, **{"classifier.6.weight": torch.zeros(7, 4096)}))
    with pytest.raises(ValueError, match="unexpected key 'module.features.0.weight'"):
        load_torchvision_alexnet(model, dict(state, **{"module.features.0.weight": state["features.0.weight"]}))


def test_specs_that_cannot_be_built_are_value_errors() -> None:
    with pytest.raises(ValueError, match="alexnet224 only"):
        build_model(ModelSpec(init_weights="x.pth"), ["relu1"])
    with pytest.raises(ValueError, match="not supported for alexnet224"):
        build_model(ModelSpec(arch="alexnet224", batch_norm=True), ["pool1"])
    with pytest.raises(ValueError, match="not supported for alexnet224"):
        build_model(ModelSpec(arch="alexnet224", width=2), ["pool1"])
    with pytest.raises(ValueError, match="width"):
        build_model(ModelSpec(width=0), ["relu1"])
    with pytest.raises(ValueError, match="head"):
        build_model(ModelSpec(head="nope"), ["relu1"])


def test_branch_placement_errors_name_the_arch_placements() -> None:
    with pytest.raises(BranchPlacementError, match="allowed placements: relu1, pool1, relu2"):
        validate_branches(["resize"], "alexnet224")
    with pytest.raises(BranchPlacementError, match="unknown branch placement 'lrn1'; allowed placements: relu1, pool1"):
        validate_branches(["lrn1"])
    assert validate_branches(["pool2", "relu1"], "alexnet224") == ["relu1", "pool2"]


def test_batch_norm_and_width_deviations() -> None:
    model = build_model(ModelSpec(batch_norm=True, width=2), ["relu1", "relu2"])
    t = model.trunk
    channels = [t.conv1.out_channels, t.conv2.out_channels, t.conv3.out_channels, t.conv5.out_channels]
    assert channels == [64, 128, 192, 128]
    assert t.fc1.in_features == 128 * 4 * 4
    assert [type(m) for m in (t.bn1, t.bn5)] == [nn.BatchNorm2d] * 2 and t.bn2.num_features == 128
    names = [n for n, _ in t.named_children()]
    assert names[:3] == ["conv1", "bn1", "relu1"]
    head = model.branches["relu1"]
    assert [n for n, _ in head.named_children()] == ["pool_a", "lrn", "conv", "bn", "relu", "pool_b", "flatten", "fc"]
    assert head.conv.in_channels == 64
    b1 = build_model(ModelSpec(batch_norm=True, head="branchynet_b1"), ["relu1"]).branches["relu1"]
    assert isinstance(b1.bn1, nn.BatchNorm2d) and isinstance(b1.bn2, nn.BatchNorm2d)
    assert [tuple(z.shape) for z in model(torch.randn(4, 3, 32, 32))] == [(4, 10)] * 3  # train mode: BN batch stats


def test_lrn_under_autocast_computes_in_float32() -> None:
    lrn = LocalResponseNorm(**_LRN)
    x = torch.randn(2, 16, 8, 8) * 5
    expected = lrn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lrn(x)
        y_from_bf16 = lrn(x.to(torch.bfloat16))
    assert y.dtype == torch.float32 and torch.equal(y, expected)
    assert y_from_bf16.dtype == torch.float32
    torch.testing.assert_close(y_from_bf16, lrn(x.to(torch.bfloat16).float()), rtol=0, atol=0)


def test_model_under_autocast_trains_in_bf16() -> None:
    model = BAlexNet(["relu1"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exits = model(torch.randn(2, 3, 32, 32))
    sum(z.float().sum() for z in exits).backward()
    assert model.trunk.conv1.weight.grad is not None


def test_load_model_rebuilds_the_saved_spec(tmp_path: Path) -> None:
    from pipeline.core.io import StageError
    from pipeline.core.splits import load_model

    spec = ModelSpec(batch_norm=True, width=2, head="branchynet_b1")
    trained = build_model(spec, ["relu1"])
    path = tmp_path / "m.pt"
    torch.save({"state_dict": trained.state_dict(), "branches": ["relu1"], "model": spec.as_dict()}, path)
    loaded = load_model(path, ["relu1"])
    assert loaded.spec == spec
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), trained.state_dict().values()))
    assert load_model(path, ["relu1"], spec).spec == spec
    with pytest.raises(StageError, match="params say"):
        load_model(path, ["relu1"], ModelSpec())
    old = tmp_path / "old.pt"  # written before architectures were selectable: no "model"
    torch.save({"state_dict": BAlexNet(["relu1"]).state_dict(), "branches": ["relu1"]}, old)
    assert load_model(old, ["relu1"]).spec == ModelSpec()
    torch.save({"state_dict": OrderedDict(), "branches": ["relu1"], "model": {"arch": "vgg"}}, old)
    with pytest.raises(StageError, match="cannot build"):
        load_model(old, ["relu1"])
