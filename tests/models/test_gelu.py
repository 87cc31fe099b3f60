"""The tanh GELU in the sigmoid form (``nfrepro.models.gelu``) is F.gelu(approximate="tanh"): values,
hand-written gradients (gradcheck in float64), and PyTorch's kernel wherever the fast path is off."""
import pytest
import torch
import torch.nn.functional as F

import nfrepro
from nfrepro.layers.gains import ScaledActivation
from nfrepro.models.gelu import _GeluTanh, gelu_tanh


def reference(x):
    return F.gelu(x, approximate="tanh")


def test_gradcheck_in_float64():
    x = (3.0 * torch.randn(64, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _GeluTanh.apply(t)[0], (x,))


@pytest.mark.parametrize("dtype, values, grads", [(torch.float64, 1e-14, 1e-12), (torch.float32, 1e-6, 4e-6)])
def test_values_and_gradients_are_f_gelu_tanh(dtype, values, grads):
    """Against F.gelu's tanh form, its gradient computed in float64 (the truth, for both dtypes):
    float32 rounding only (F.gelu's own float32 gradient is about 1e-6 off that truth)."""
    x64 = torch.linspace(-10.0, 10.0, 40_001, dtype=torch.float64, requires_grad=True)
    reference(x64).sum().backward()
    x = x64.detach().to(dtype).requires_grad_()
    y = gelu_tanh(x)
    y.sum().backward()
    assert y.grad_fn is not None and "GeluTanh" in type(y.grad_fn).__name__   # the fast path ran
    assert (y.double() - reference(x64.detach())).abs().max().item() < values
    assert (x.grad.double() - x64.grad).abs().max().item() < grads


def test_upstream_gradients_layouts_and_tails():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    dy = torch.randn(2, 8, 5, 5)
    y = gelu_tanh(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.backward(dy)
    reference(ref).backward(dy)
    assert torch.allclose(x.grad, ref.grad, rtol=0, atol=1e-5)
    tails = torch.tensor([-1e4, -60.0, 60.0, 1e4], requires_grad=True)   # sigmoid saturates: no NaN
    gelu_tanh(tails).sum().backward()
    assert gelu_tanh(tails.detach()).tolist() == [0.0, 0.0, 60.0, 1e4] and tails.grad.tolist() == [0, 0, 1, 1]


def test_pytorchs_kernel_where_the_fast_path_is_off():
    x = torch.randn(4, 16)
    assert torch.equal(gelu_tanh(x.bfloat16()), reference(x.bfloat16()))
    traced = torch.jit.trace(lambda t: gelu_tanh(t), x)
    assert "gelu" in str(traced.graph) and torch.equal(traced(x), reference(x))
    graph = torch.fx.symbolic_trace(torch.nn.Sequential(ScaledActivation("gelu"))).graph
    assert any(n.target is F.gelu for n in graph.nodes)   # FX records one gelu op
    compiled = torch.compile(gelu_tanh, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), reference(x))


def test_per_sample_gradients_with_torch_func():
    from torch.func import grad, vmap
    x = torch.randn(5, 7, dtype=torch.float64)
    per_sample = vmap(grad(lambda xi: gelu_tanh(xi).square().sum()))(x)
    expected = torch.func.vmap(torch.func.grad(lambda xi: reference(xi).square().sum()))(x)
    assert torch.allclose(per_sample, expected, rtol=1e-10, atol=1e-12)


def test_nfnets_use_it_and_other_families_keep_theirs():
    model = nfrepro.create_model("nfnet_f0", depths=(1, 1, 1, 1), channels=(16, 32, 32, 64), group_size=8)
    acts = [m for m in model.modules() if isinstance(m, ScaledActivation)]
    assert acts and all(m.fn is gelu_tanh for m in acts)
    resnet = nfrepro.create_model("nf_resnet_small", activation="gelu")
    assert all(m.fn is not gelu_tanh for m in resnet.modules() if isinstance(m, ScaledActivation))
