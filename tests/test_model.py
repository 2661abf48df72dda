"""B-AlexNet shapes, branch placement and the training pieces."""

from __future__ import annotations

import pytest
import torch

from eeoffload.layout import BRANCHABLE_LAYERS, ModelSpec
from eeoffload.model import BAlexNet, BranchPlacementError, trunk_output_shapes
from eeoffload.training import augment_batch, images_to_tensor, weighted_exit_loss


def test_trunk_shapes_follow_chainer_ceil_pooling() -> None:
    shapes = trunk_output_shapes()
    assert shapes["conv1"] == (32, 32, 32)
    assert shapes["pool1"] == (32, 16, 16)
    assert shapes["pool2"] == (64, 8, 8)
    assert shapes["pool5"] == (64, 4, 4)
    assert shapes["fc3"] == (10,)


@pytest.mark.parametrize("layer", BRANCHABLE_LAYERS)
def test_every_relu_and_pool_accepts_a_branch(layer: str) -> None:
    model = BAlexNet([layer]).eval()
    exits = model(torch.zeros(2, 3, 32, 32))
    assert [tuple(z.shape) for z in exits] == [(2, 10), (2, 10)]


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(arch="alexnet224"), ModelSpec(batch_norm=True, width=2)],
                         ids=["balexnet32", "alexnet224", "balexnet32-bn-w2"])
def test_layout_names_match_the_model(spec: ModelSpec) -> None:
    from torch import nn

    from eeoffload.layout import BRANCHABLE_LAYERS, TRUNK_LAYERS, branchable_layers, trunk_layers_of
    from eeoffload.model import trunk_layers_for

    layers = trunk_layers_for(spec)
    assert tuple(name for name, _ in layers) == trunk_layers_of(spec.arch, spec.batch_norm)
    assert branchable_layers(spec.arch) == tuple(n for n, m in layers if isinstance(m, (nn.ReLU, nn.MaxPool2d)))
    model = BAlexNet(["relu1"], spec=spec)
    assert tuple(n for n, _ in model.trunk.named_children()) == trunk_layers_of(spec.arch, spec.batch_norm)
    assert model.spec == spec and model.input_shape == (3, 32, 32)
    if spec == ModelSpec():
        assert tuple(name for name, _ in layers) == TRUNK_LAYERS
        assert branchable_layers("balexnet32") == BRANCHABLE_LAYERS


def test_branchable_layers_are_relus_and_pools() -> None:
    assert list(BRANCHABLE_LAYERS) == ["relu1", "pool1", "relu2", "pool2", "relu3", "relu4", "relu5", "pool5",
                                   "relu6", "relu7"]


def test_two_branch_order_and_partition() -> None:
    model = BAlexNet(["relu2", "relu1"])
    assert model.branch_points == ["relu1", "relu2"]
    assert model.partition_layer == "relu2"
    assert model.num_exits == 3


@pytest.mark.parametrize("branches", [["conv1"], ["relu9"], [], ["relu1", "relu1"]])
def test_bad_placements_are_clear_errors(branches: list[str]) -> None:
    with pytest.raises(BranchPlacementError):
        BAlexNet(branches)


def test_augment_keeps_shape_and_is_seeded() -> None:
    x = torch.randn(4, 3, 32, 32)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)


def test_augment_is_a_padded_crop_and_flip_per_image() -> None:
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    out = augment_batch(x, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)  # the same draws, in augment_batch's order
    dy, dx = torch.randint(0, 9, (16,), generator=gen), torch.randint(0, 9, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        crop = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(out[i], crop.flip(2) if flip[i] else crop)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_weighted_loss_skips_zero_weights() -> None:
    z = [torch.randn(5, 10, requires_grad=True), torch.randn(5, 10, requires_grad=True)]
    y = torch.randint(0, 10, (5,))
    loss = weighted_exit_loss(z, y, [0.0, 1.0])
    loss.backward()
    assert z[0].grad is None and z[1].grad is not None


def test_images_to_tensor_normalises() -> None:
    import numpy as np

    imgs = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    x = images_to_tensor(imgs)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor(-0.4914 / 0.2470), atol=1e-4)
