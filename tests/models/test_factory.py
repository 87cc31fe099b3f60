"""create_model's timm options, and every family as an ordinary torch citizen (pickle, deepcopy,
FX feature extraction, torch.compile without graph breaks, torch.export, torch.jit.trace at any input
size; torch.jit.script refused in one line)."""
import copy
import io
import pickle
import warnings

import pytest
import torch

import nfrepro

TINY = {
    "nfnet_f0": dict(depths=(1, 1, 1, 1), channels=(16, 32, 32, 64), group_size=8, num_classes=3),
    "nf_resnet26": dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64), num_classes=3),
}


def tiny(name):
    torch.manual_seed(0)
    return nfrepro.create_model(name, **TINY[name]).eval()


def test_drop_path_rate_is_the_stochastic_depth_rate():
    a = nfrepro.create_model("nfnet_f0", drop_path_rate=0.5, **TINY["nfnet_f0"])
    assert a.blocks[2].stoch_depth.drop_rate == pytest.approx(0.5 * 2 / 4)
    b = nfrepro.create_model("nf_resnet26", drop_path_rate=0.4, **TINY["nf_resnet26"])
    assert b.blocks[3].stoch_depth.drop_rate == pytest.approx(0.4 * 3 / 4)
    with pytest.raises(ValueError, match="name the same rate"):
        nfrepro.create_model("nf_resnet26", drop_path_rate=0.4, stochdepth_rate=0.1)
    with pytest.raises(ValueError, match="downloads nothing"):
        nfrepro.create_model("nf_resnet26", pretrained=True)


@pytest.mark.parametrize("name", list(TINY))
def test_pickle_torch_save_and_deepcopy(name):
    model, x = tiny(name), torch.randn(1, 3, 32, 32)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    copies = (torch.load(buf, weights_only=False), pickle.loads(pickle.dumps(model)), copy.deepcopy(model))
    for other in copies:
        assert torch.equal(other(x), model(x))


@pytest.mark.parametrize("name", list(TINY))
def test_torchvision_feature_extractor_traces(name):
    fe = pytest.importorskip("torchvision.models.feature_extraction")
    model, x = tiny(name), torch.randn(2, 3, 33, 31)   # odd sizes: TF SAME padding differs per side
    extractor = fe.create_feature_extractor(model, {"blocks.1": "mid", "final_act": "last"})
    out = extractor(x)
    # the trace records F.gelu; eager NFNets run the same GELU in other CPU ops (models.gelu): rounding
    assert torch.allclose(out["last"], model.forward_features(x), rtol=0, atol=1e-6)
    assert out["mid"].shape[1] == model.feature_info.channels(2)


@pytest.mark.parametrize("name", list(TINY))
def test_compile_has_no_graph_break_and_export_works(name):
    model, x = tiny(name), torch.randn(2, 3, 32, 32)
    torch._dynamo.reset()
    model.train()   # the fused WS Function runs (grad enabled), stochastic depth too
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model.eval(), fullgraph=True, backend="aot_eager")  # no C++ toolchain needed
    assert torch.allclose(compiled(x), model(x), atol=1e-5)
    program = torch.export.export(model, (x,))
    assert torch.allclose(program.module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_jit_trace_pads_every_input_size(name):
    """TF "SAME" padding is computed from the traced sizes (0-d tensors under torch.jit.trace), not
    baked in: a trace taken at 64 x 64 is exact at 80 x 48 and at odd sizes, with no TracerWarning."""
    torch.manual_seed(0)
    model = nfrepro.create_model(name, skip_gain_init=1.0, **TINY[name]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64))
    for shape in ((2, 3, 80, 48), (1, 3, 33, 31)):
        x = torch.randn(shape)
        with torch.no_grad():
            ref = model(x)   # eager NFNets run their GELU in other ops than the trace's F.gelu: rounding
            assert (traced(x) - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


@pytest.mark.parametrize("name", list(TINY))
def test_jit_script_is_refused_in_one_line_naming_the_alternatives(name):
    for model in (tiny(name), nfrepro.create_model(name, features_only=True, **TINY[name])):
        refusal = r"^torch.jit.script cannot .*torch.compile.*torch.export"
        with pytest.raises(RuntimeError, match=refusal) as err:
            torch.jit.script(model)
        assert "\n" not in str(err.value)
