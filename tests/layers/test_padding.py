"""TF "SAME" padding for convolutions and max-pooling (official ``base.WSConv2D``, ``hk.max_pool``)."""
import math

import pytest
import torch
import torch.nn.functional as F

from nfrepro.layers.padding import SamePadConv2d, SamePadMaxPool2d, same_padding


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (8, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (8, 3, 1, (1, 1)),
    (8, 1, 2, (0, 0)), (9, 2, 2, (0, 1)), (8, 5, 1, (2, 2)),
])
def test_tf_same_padding_amounts(size, kernel, stride, expected):
    """TF SAME: output ceil(size / stride); the odd pixel of padding goes after (bottom/right)."""
    assert same_padding(size, kernel, stride, 1) == expected


@pytest.mark.parametrize("size", [8, 9])
def test_strided_conv_pads_like_tensorflow(size):
    conv = SamePadConv2d(3, 4, 3, stride=2)
    x = torch.randn(1, 3, size, size)
    before, after = same_padding(size, 3, 2, 1)
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias, stride=2)
    out = conv(x)
    assert out.shape[-1] == math.ceil(size / 2)
    assert torch.allclose(out, expected, atol=1e-6)


def test_static_padding_for_stride_one_and_integer_padding():
    assert SamePadConv2d(3, 4, 3).padding == (1, 1) and not SamePadConv2d(3, 4, 3).tf_same
    conv = SamePadConv2d(3, 4, 3, padding=0)
    assert conv(torch.randn(1, 3, 8, 8)).shape[-1] == 6


def test_same_max_pool_pads_like_tensorflow():
    x = -(torch.arange(16.0).view(1, 1, 4, 4) + 1)  # all negative: zero padding would show
    out = SamePadMaxPool2d(3, 2)(x)
    # TF SAME on 4 px, k 3, s 2: pad 0 before, 1 after; windows rows/cols {0,1,2} and {2,3}
    assert out.flatten().tolist() == [-1.0, -3.0, -9.0, -11.0]


def test_fx_symbolic_trace_keeps_the_values():
    """pad_same is an FX leaf (torch.fx.wrap): tracing works and the traced module pads per input."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(SamePadConv2d(3, 4, 3, stride=2), SamePadMaxPool2d(3, 2))
    traced = torch.fx.symbolic_trace(net)
    assert any(n.target.__name__ == "pad_same" for n in traced.graph.nodes if n.op == "call_function")
    for size in (8, 9):   # one graph, padding computed on each input's real shape
        x = torch.randn(1, 3, size, size)
        assert torch.equal(traced(x), net(x))


def test_no_padding_needed_returns_the_input_itself():
    """A 1x1 stride-2 window on an even input needs no "SAME" padding: no copy of the input."""
    from nfrepro.layers.padding import pad_same
    x = torch.randn(2, 3, 8, 8)
    assert pad_same(x, (1, 1), (2, 2)) is x
    assert pad_same(x, (3, 3), (2, 2)).shape[-1] == 9


def test_padding_amounts_from_a_traced_size_are_the_same():
    """torch.jit.trace hands out x.shape[i] as a 0-d tensor: the amounts are then tensors (so the trace
    recomputes them for each input), equal to the integer ones."""
    for size in range(1, 14):
        for kernel, stride, dilation in ((3, 2, 1), (1, 2, 1), (2, 2, 1), (3, 1, 2), (7, 2, 1), (3, 4, 1)):
            got = same_padding(torch.tensor(size), kernel, stride, dilation)
            assert all(isinstance(v, torch.Tensor) for v in got)
            assert [int(v) for v in got] == list(same_padding(size, kernel, stride, dilation))
