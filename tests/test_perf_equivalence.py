"""The faster LRN in eeoffload.model computes what torch.nn.LocalResponseNorm computes (values and
gradients, within float tolerance), alone and inside the whole B-AlexNet training step."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from tests.model_oracles import with_torch_lrn
from eeoffload.layout import BRANCHABLE_LAYERS, ModelSpec
from eeoffload.model import _LRN, BAlexNet, Flatten, LocalResponseNorm, build_model
from eeoffload.training import weighted_exit_loss


def _values_and_grad(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    y = module(x)
    (gx,) = torch.autograd.grad(y, x, g)
    return y.detach(), gx


@pytest.mark.parametrize("shape", [(4, 32, 16, 16), (3, 64, 8, 8), (2, 3, 5, 7), (2, 1, 4, 4)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("params", [_LRN, {"size": 4, "alpha": 0.3, "beta": 0.6, "k": 1.0}])
def test_lrn_matches_torch(shape: tuple[int, ...], channels_last: bool, params: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 10
    g = torch.randn(shape, generator=gen)
    if channels_last:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    y_ref, gx_ref = _values_and_grad(nn.LocalResponseNorm(**params), x, g)
    y, gx = _values_and_grad(LocalResponseNorm(**params), x, g)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)


def test_lrn_gradcheck_double() -> None:
    x = torch.randn(2, 7, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LocalResponseNorm(**_LRN), (x,))
    x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNorm(size=3, alpha=0.5, beta=0.75, k=1.0), (x,))


def test_lrn_non_4d_falls_back_to_torch() -> None:
    x = torch.randn(2, 8, 5)
    torch.testing.assert_close(LocalResponseNorm(**_LRN)(x), nn.LocalResponseNorm(**_LRN)(x))


@pytest.mark.parametrize("branches", [["relu1"], ["relu1", "relu2"]])
def test_model_training_step_unchanged(branches: list[str]) -> None:
    """Same weights, same batch: exits, loss and every parameter gradient agree with torch's LRN."""
    torch.manual_seed(0)
    fast = BAlexNet(branches).to(memory_format=torch.channels_last).eval()  # eval: no dropout draws
    ref = with_torch_lrn(fast)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in ref.modules()) == len(branches) + 2
    assert fast.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    weights = [1.0] * len(branches) + [0.3]
    results = []
    for model in (fast, ref):
        model.zero_grad(set_to_none=True)
        exits = model(x)
        loss = weighted_exit_loss(exits, y, weights)
        loss.backward()
        results.append((exits, loss, {n: p.grad for n, p in model.named_parameters()}))
    (e1, l1, g1), (e2, l2, g2) = results
    for a, b in zip(e1, e2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    for name in g2:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-5, msg=name)


def _step(model: BAlexNet, forward, x: torch.Tensor, y: torch.Tensor) -> tuple[list, torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    exits = forward(x)
    loss = weighted_exit_loss(exits, y, [1.0] * len(exits))
    loss.backward()
    return [e.detach() for e in exits], loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("branches", [[name] for name in BRANCHABLE_LAYERS]
                         + [["relu1", "relu2"], ["relu1", "pool1"], ["relu2", "relu5", "relu7"]])
def test_planned_forward_equals_the_definition(branches: list[str]) -> None:
    """forward (shared head layers, pool before ReLU, in-place ReLU) == reference_forward: same
    exits, loss and parameter gradients, for every branch placement."""
    torch.manual_seed(0)
    model = BAlexNet(branches).to(memory_format=torch.channels_last).eval()  # eval: no dropout draws
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    _assert_planned_equals_definition(model, x, y)


def _assert_planned_equals_definition(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """forward and reference_forward give the same exits, loss and parameter gradients."""
    e1, l1, g1 = _step(model, model.forward, x, y)
    e2, l2, g2 = _step(model, model.reference_forward, x, y)
    for a, b in zip(e1, e2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-6)
    for name in g2:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("spec", "branches", "batch"), [
    (ModelSpec(arch="alexnet224"), ["relu1", "pool2"], 2),
    (ModelSpec(arch="alexnet224", head="branchynet_b1"), ["pool1", "relu5", "relu7"], 2),
    (ModelSpec(batch_norm=True), ["relu1", "relu2"], 8),
    (ModelSpec(batch_norm=True, width=2, head="branchynet_b1"), ["relu1", "pool2", "relu6"], 8),
    (ModelSpec(head="branchynet_b1"), ["relu1", "pool1", "relu2", "pool5"], 8),
], ids=["alexnet224", "alexnet224-b1", "bn", "bn-w2-b1", "b1"])
def test_planned_forward_equals_the_definition_for_every_spec(spec: ModelSpec, branches: list[str], batch: int) -> None:
    """The same for the other architectures, heads and deviations (eval mode: no dropout draws,
    BatchNorm on its running statistics)."""
    torch.manual_seed(0)
    model = build_model(spec, branches).to(memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    _assert_planned_equals_definition(model, x, y)


def test_plan_shares_the_pool_and_lrn_of_a_relu1_branch() -> None:
    plan = BAlexNet(["relu1"]).plan
    assert plan[1].layers == ("pool1", "relu1")  # pool first, then the ReLU on a 4x smaller map
    assert [s.taps for s in plan if s.taps] == [(("relu1", 2),)]  # the head's pool and LRN are lrn1's
    assert [s.layers[0] for s in plan if s.taps] == ["lrn1"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_flatten_equals_torch_and_keeps_the_gradient_layout(channels_last: bool) -> None:
    x = torch.randn(4, 8, 3, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 72)
    y_ref, gx_ref = _values_and_grad(nn.Flatten(), x, g)
    y, gx = _values_and_grad(Flatten(), x, g)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    assert gx.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
