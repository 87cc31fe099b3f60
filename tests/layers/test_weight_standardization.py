"""Scaled Weight Standardization (NFNets §3, official ``base.WSConv2D``) and TF "SAME" padding."""
import math

import pytest
import torch
import torch.nn.functional as F

from nfrepro.layers.weight_standardization import WS_EPS, WSConv2d, standardize_weight


def test_zero_mean_and_variance_one_over_fan_in_per_output_unit():
    w = torch.randn(8, 6, 3, 3, dtype=torch.float64) * 3 + 1
    w_hat = standardize_weight(w)
    fan_in = 6 * 3 * 3
    rows = w_hat.reshape(8, -1)
    assert torch.allclose(rows.mean(1), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    # population variance (ddof 0), as the official jnp.var; so the squared row norm is exactly 1
    assert torch.allclose(rows.var(1, unbiased=False), torch.full((8,), 1 / fan_in, dtype=torch.float64))
    assert torch.allclose(rows.square().sum(1), torch.ones(8, dtype=torch.float64))


def test_gain_scales_each_output_unit():
    w = torch.randn(4, 3, 1, 1, dtype=torch.float64)
    gain = torch.tensor([1.0, 2.0, 0.5, -1.0], dtype=torch.float64)
    assert torch.allclose(standardize_weight(w, gain), gain.view(4, 1, 1, 1) * standardize_weight(w))


def test_eps_floor_on_n_times_var():
    """scale = rsqrt(max(N var, 1e-4)): a near-constant row is multiplied by exactly 1/sqrt(1e-4) = 100."""
    assert WS_EPS == 1e-4
    w = torch.ones(2, 4, 1, 1, dtype=torch.float64)
    w[1] += 1e-4 * torch.tensor([1.0, -1.0, 2.0, -2.0]).view(4, 1, 1)  # N var = 4 * 2.5e-9 << 1e-4
    w_hat = standardize_weight(w)
    assert torch.isfinite(w_hat).all()
    assert torch.equal(w_hat[0], torch.zeros(4, 1, 1, dtype=torch.float64))  # constant row -> 0, not NaN
    centred = w[1] - w[1].mean()
    assert torch.allclose(w_hat[1], centred * 100.0)


def test_conv_parameters_and_init():
    conv = WSConv2d(64, 32, 3, groups=2)
    assert conv.gain.shape == (32,) and conv.gain.ndim == 1  # 1-d: one AGC unit, as the official code
    assert torch.equal(conv.gain, torch.ones(32)) and torch.equal(conv.bias, torch.zeros(32))
    fan_in = 32 * 9
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)
    x = torch.randn(2, 64, 7, 7)
    expected = F.conv2d(x, standardize_weight(conv.weight, conv.gain), conv.bias, padding=1, groups=2)
    assert torch.allclose(conv(x), expected, atol=1e-6)


def test_builds_on_meta_device():
    with torch.device("meta"):
        conv = WSConv2d(16, 32, 3, stride=2)
    assert conv.weight.is_meta and conv(torch.empty(1, 16, 8, 8, device="meta")).shape == (1, 32, 4, 4)


@pytest.mark.parametrize("floored", [False, True])
def test_fused_backward_matches_autograd_of_the_reference(floored):
    """The hand-written backward equals autograd's derivation (gradcheck and against the reference)."""
    from nfrepro.layers.weight_standardization import standardize_weight_reference
    from nfrepro.layers.ws_fast import _StandardizeWeight

    torch.manual_seed(0)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    if floored:  # a near-constant row: N var < 1e-4, the floor holds the scale constant
        w[1] = 1.0 + 1e-5 * torch.randn(4, 3, 3, dtype=torch.float64)
    w.requires_grad_()
    g = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, g: _StandardizeWeight.apply(w, g, WS_EPS)[0], (w, g))
    out, ref = standardize_weight(w, g), standardize_weight_reference(w, g)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)
    dy = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (w, g), dy), torch.autograd.grad(ref, (w, g), dy), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_per_sample_gradients_with_torch_func():
    """torch.func.grad under vmap runs the fused Function (setup_context + generated vmap rule)
    and equals one backward per example."""
    from torch.func import functional_call, grad, vmap

    from nfrepro.layers.weight_standardization import WSConv2d
    torch.manual_seed(0)
    conv = WSConv2d(3, 4, 3).double()
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    params = {k: v.detach() for k, v in conv.named_parameters()}

    def loss(p, xi):
        return functional_call(conv, p, (xi[None],)).square().sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    for i in range(5):
        expected = torch.autograd.grad(loss(dict(conv.named_parameters()), x[i]), list(conv.parameters()))
        for (name, _), e in zip(conv.named_parameters(), expected, strict=True):
            assert torch.allclose(per_sample[name][i], e, rtol=1e-10, atol=1e-12)


def test_standardized_weight_keeps_the_parameters_memory_format():
    """A channels-last parameter gives a channels-last standardized weight, forward and gradient,
    with the same values as the NCHW one: a reshaped O x N result would hand the conv an NCHW
    weight (which made a 1-channel stem, and everything after it, run NCHW)."""
    torch.manual_seed(0)
    for shape in [(16, 1, 3, 3), (16, 8, 3, 3), (32, 16, 1, 1)]:
        w = torch.randn(*shape, dtype=torch.float64)
        g = torch.rand(shape[0], dtype=torch.float64) + 0.5
        w_cl = w.to(memory_format=torch.channels_last).requires_grad_()
        w_nchw = w.clone().requires_grad_()
        out_cl, out = standardize_weight(w_cl, g), standardize_weight(w_nchw, g)
        assert out_cl.stride() == w_cl.stride()
        assert torch.allclose(out_cl, out, rtol=1e-12, atol=1e-14)
        dy = torch.randn_like(out)
        (grad_cl,), (grad,) = torch.autograd.grad(out_cl, w_cl, dy), torch.autograd.grad(out, w_nchw, dy)
        assert torch.allclose(grad_cl, grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_input_scale_is_folded_into_the_weight(stride):
    """A conv built with ``input_scale=s`` computes ``conv(s * x)``, for the WS conv and the plain
    TF-SAME conv (zero padding commutes with the scaling; the bias does not see it), gradients too."""
    import copy

    from nfrepro.layers.padding import SamePadConv2d
    torch.manual_seed(0)
    for cls in (WSConv2d, SamePadConv2d):
        conv = cls(3, 4, 3, stride=stride, input_scale=1.7).double()
        with torch.no_grad():
            conv.bias.uniform_(-1, 1)
        unscaled = copy.deepcopy(conv)
        unscaled.input_scale = 1.0
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        out, ref = conv(x), unscaled(1.7 * x)
        assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
        dy = torch.randn_like(out)
        for a, b in zip(torch.autograd.grad(out, list(conv.parameters()), dy),
                        torch.autograd.grad(ref, list(unscaled.parameters()), dy), strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert "input_scale=1.7" in repr(conv)


def test_training_path_takes_native_batch_norm_unless_a_row_is_floored():
    """CPU training: PyTorch's batch norm over the weight rows when no row is at the floor (same values
    and gradients as the reference); a floored row sends the whole weight to the autograd Function."""
    from nfrepro.layers.weight_standardization import standardize_weight_reference

    torch.manual_seed(1)
    w = torch.randn(6, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.rand(6, dtype=torch.float64, requires_grad=True)
    out = standardize_weight(w, g)
    assert "BatchNorm" in type(out.grad_fn).__name__ or "BatchNorm" in str(out.grad_fn.next_functions)
    ref = standardize_weight_reference(w, g)
    dy = torch.randn_like(out)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)
    for a, b in zip(torch.autograd.grad(out, (w, g), dy), torch.autograd.grad(ref, (w, g), dy), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    floored = w.detach().clone()
    near_constant = 0.5 + 1e-5 * torch.randn(3, 3, 3, dtype=torch.float64)
    for row in (0.5, near_constant):  # N var = 0, and 0 < N var < 1e-4
        floored[2] = row
        w2 = floored.clone().requires_grad_()
        out, ref = standardize_weight(w2, g), standardize_weight_reference(w2, g)
        assert "StandardizeWeight" in str(out.grad_fn) + str(out.grad_fn.next_functions)
        assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)
        grads = torch.autograd.grad(out, (w2, g), dy), torch.autograd.grad(ref, (w2, g), dy)
        for a, b in zip(*grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
