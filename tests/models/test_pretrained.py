"""Loading DeepMind's NFNet weights: official Haiku names and layouts, timm checkpoints, errors.

No downloads: the official layout is rebuilt here from the official naming scheme
(``nfnet.NFNet``/``NFBlock`` as Haiku numbers modules), and timm's model is built with random weights.
"""

import numpy as np
import pytest
import torch

from nfrepro.models.nfnet import NFNet
from nfrepro.models.pretrained import (
    from_haiku,
    from_timm,
    haiku_shapes,
    load_pretrained,
    read_checkpoint,
    save_haiku,
    to_haiku,
)

TINY = dict(channels=(32, 64, 64, 64), depths=(1, 2, 2, 1), group_size=16, num_classes=10)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    model = NFNet("F0", **{**TINY, **kw})
    with torch.no_grad():  # make every parameter matter: no zero skip gains, no unit gains, no zero biases
        for name, p in model.named_parameters():
            if not name.endswith("weight"):
                p.uniform_(0.5, 1.5)
    return model.eval()


def official_shapes(widths, depths, group_size=128, num_classes=1000, in_chans=3):
    """Names and shapes of the official Haiku params, written from the official constructor's logic."""
    shapes = {}

    def conv(name, k, c_in, c_out):
        shapes[f"NFNet/~/{name}"] = {"w": (k, k, c_in, c_out), "gain": (c_out,), "bias": (c_out,)}

    stem = [(in_chans, 16, 3), (16, 32, 3), (32, 64, 3), (64, widths[0] // 2, 3)]
    for i, (c_in, c_out, k) in enumerate(stem):
        conv(f"stem_conv{i}", k, c_in, c_out)
    ch, index = widths[0] // 2, 0
    for width, depth in zip(widths, depths, strict=True):
        for j in range(depth):
            block = "nf_block" if index == 0 else f"nf_block_{index}"  # Haiku leaves the first one unnumbered
            mid = width // 2
            conv(f"{block}/~/conv0", 1, ch, mid)
            conv(f"{block}/~/conv1", 3, min(group_size, mid), mid)     # grouped: HW(I/groups)O
            conv(f"{block}/~/conv1b", 3, min(group_size, mid), mid)
            conv(f"{block}/~/conv2", 1, mid, width)
            if j == 0:
                conv(f"{block}/~/conv_shortcut", 1, ch, width)
            se = f"NFNet/~/{block}/~/squeeze_excite/~/"
            shapes[se + "linear"] = {"w": (width, width // 2), "b": (width // 2,)}
            shapes[se + "linear_1"] = {"w": (width // 2, width), "b": (width,)}
            shapes[f"NFNet/~/{block}"] = {"skip_gain": ()}
            ch, index = width, index + 1
    conv("final_conv", 1, ch, 2 * ch)
    shapes["NFNet/~/linear"] = {"w": (2 * ch, num_classes), "b": (num_classes,)}
    return shapes


def test_f0_names_and_shapes_are_the_official_ones():
    with torch.device("meta"):
        model = NFNet("F0")
    expected = official_shapes((256, 512, 1536, 1536), (1, 2, 6, 3))
    assert haiku_shapes(model) == expected
    assert sum(int(np.prod(s)) for m in expected.values() for s in m.values()) == 71_489_284


def test_synthetic_official_dict_loads_with_the_right_layouts():
    rng = np.random.default_rng(0)
    params = {m: {p: rng.standard_normal(s).astype(np.float32) for p, s in ps.items()}
              for m, ps in official_shapes((32, 64, 64, 64), (1, 2, 2, 1), group_size=16,
                                           num_classes=10).items()}
    model = load_pretrained(NFNet("F0", **TINY), params)
    w = params["NFNet/~/nf_block_2/~/conv1"]["w"]                       # HWIO
    assert np.array_equal(model.blocks[2].conv1.weight.detach().numpy(), w.transpose(3, 2, 0, 1))
    fc = params["NFNet/~/linear"]["w"]                                  # IO
    assert np.array_equal(model.fc.weight.detach().numpy(), fc.T)
    assert model.blocks[0].skip_gain.item() == params["NFNet/~/nf_block"]["skip_gain"]
    exported = to_haiku(model)
    assert exported.keys() == params.keys()
    assert all(np.array_equal(exported[m][p], params[m][p]) for m in params for p in params[m])


def test_round_trip_through_a_pickle_file(tmp_path):
    source, target = tiny(seed=0), tiny(seed=1)
    save_haiku(source, tmp_path / "F0_haiku.npz")         # a pickle despite the suffix, as the official files
    load_pretrained(target, tmp_path / "F0_haiku.npz")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    state = from_haiku(to_haiku(source))
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())


def test_flat_npz_and_our_own_state_dict(tmp_path):
    source = tiny(seed=0)
    flat = {f"{m}/{p}": a for m, ps in to_haiku(source).items() for p, a in ps.items()}
    np.savez(tmp_path / "flat.npz", **flat)
    loaded = load_pretrained(tiny(seed=1), tmp_path / "flat.npz")
    assert loaded.blocks[3].conv1.weight.equal(source.blocks[3].conv1.weight)
    torch.save(source.state_dict(), tmp_path / "ours.pth")
    assert read_checkpoint(tmp_path / "ours.pth").keys() == source.state_dict().keys()


def _timm_names(state):
    """Our state dict -> timm dm_nfnet names and layouts (only for the file-format tests below)."""
    inverse = {"conv0": "conv1", "conv1": "conv2", "conv1b": "conv2b", "conv2": "conv3",
               "conv_shortcut": "downsample.conv", "se.fc0": "attn_last.fc1", "se.fc1": "attn_last.fc2"}
    out = {}
    stages = [0, 1, 1, 2, 2, 3]  # TINY depths (1, 2, 2, 1)
    for key, t in state.items():
        if key.startswith("stem."):
            t = t.reshape(-1, 1, 1, 1) if key.endswith("gain") else t
            out[f"stem.conv{int(key[9]) + 1}{key[10:]}"] = t
        elif key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            i = int(i)
            b = i - stages.index(stages[i])
            module, _, name = rest.rpartition(".")
            new = "skipinit_gain" if rest == "skip_gain" else f"{inverse[module]}.{name}"
            if name == "gain" or (module.startswith("se") and name == "weight"):
                t = t.reshape(*t.shape, 1, 1, 1) if name == "gain" else t[:, :, None, None]
            out[f"stages.{stages[i]}.{b}.{new}"] = t
        else:
            out[key.replace("fc.", "head.fc.") if key.startswith("fc.") else key] = (
                t.reshape(-1, 1, 1, 1) if key.endswith("gain") else t)
    return out


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_files(tmp_path, suffix):
    source = tiny(seed=0)
    state = {k: v.contiguous() for k, v in _timm_names(source.state_dict()).items()}
    path = tmp_path / f"dm_nfnet_tiny{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file(state, str(path))
    target = load_pretrained(tiny(seed=1), path)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())


def test_mismatched_variant_names_the_variant():
    with torch.device("meta"):
        f0, f1 = NFNet("F0"), NFNet("F1")
    with pytest.raises(ValueError, match="looks like NFNet-F1.*model is NFNet-F0"):
        load_pretrained(f0, f1.state_dict())
    with pytest.raises(ValueError, match=r"depths \(1, 2, 2, 1\)"):
        load_pretrained(NFNet("F0", **{**TINY, "depths": (1, 1, 2, 1)}), to_haiku(tiny()))


def test_other_mismatches_raise_value_errors():
    params = to_haiku(tiny())
    with pytest.raises(ValueError, match="shape mismatch for fc.weight"):
        load_pretrained(NFNet("F0", **{**TINY, "num_classes": 5}), params)
    with pytest.raises(ValueError, match="missing|unexpected"):
        load_pretrained(NFNet("F0", **{**TINY, "extra_conv": False}), params)
    del params["NFNet/~/nf_block_1/~/squeeze_excite/~/linear_1"]
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(tiny(), params)
    with pytest.raises(ValueError, match="normalizer-free WS model"):
        load_pretrained(NFNet("F0", **TINY, norm="batch", use_ws=False), to_haiku(tiny()))
    with pytest.raises(ValueError, match="unrecognised checkpoint"):
        load_pretrained(tiny(), {"conv.weight": torch.zeros(1)})


def test_dill_pickles_need_dill(tmp_path):
    try:
        import dill  # noqa: F401
        pytest.skip("dill is installed")
    except ImportError:
        pass
    path = tmp_path / "F0_haiku.npz"
    path.write_bytes(b"cdill._dill\n_create_array\n.")  # a pickle that refers to dill's helpers
    with pytest.raises(ImportError, match="pip install dill"):
        load_pretrained(tiny(), path)


def timm_with_official_numerics(**kw):
    """timm's ``dm_nfnet_f0`` (random weights, eval) computing as the official code does.

    timm departs from the official numerics in two places (paper-facts, "Pitfalls"), undone here on
    the timm side only: its ScaledStdConv2dSame standardizes with ``F.batch_norm(..., eps=1e-5)``,
    i.e. ``(w - mean) / sqrt(var + 1e-5)`` (official: ``/ sqrt(max(N var, 1e-4))``), so we set its eps
    to 1e-12 (batch_norm refuses 0); and its GammaAct uses the exact erf GELU, replaced by the tanh
    form that ``jax.nn.gelu`` computes by default.
    """
    timm = pytest.importorskip("timm")
    from timm.layers.std_conv import ScaledStdConv2dSame
    from timm.models.nfnet import GammaAct

    torch.manual_seed(0)
    reference = timm.create_model("dm_nfnet_f0", pretrained=False, **kw).eval()
    for module in reference.modules():
        if isinstance(module, ScaledStdConv2dSame):
            module.eps = 1e-12
        if isinstance(module, GammaAct):
            module.act_fn = lambda x, inplace=False: torch.nn.functional.gelu(x, approximate="tanh")
    with torch.no_grad():  # random skip gains, gains and biases so that every block contributes
        for name, p in reference.named_parameters():
            if name.endswith(("skipinit_gain", ".gain", "bias")):
                p.uniform_(0.5, 1.5)
    return reference


@pytest.mark.slow
def test_logits_match_timm_dm_nfnet_f0():
    """Random timm ``dm_nfnet_f0`` weights converted into our F0 give the same logits (eval, 64 px)."""
    reference = timm_with_official_numerics()
    model = load_pretrained(NFNet("F0").eval(), reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, ours = reference(x), model(x)
    assert expected.abs().max() > 0.1
    assert (ours - expected).abs().max().item() < 1e-4


# ---------------------------------------------------------------- timm's training checkpoints
# dm_nfnet_f0 narrowed through timm's own config fields (F0's stem; fewer, narrower blocks), and ours alike
SMALL_TIMM = dict(depths=(1, 2, 1, 1), channels=(256, 64, 64, 128), group_size=16, num_features=256,
                  num_classes=10)
SMALL = dict(depths=(1, 2, 1, 1), channels=(256, 64, 64, 128), group_size=16, num_classes=10)


def test_timm_training_checkpoints_load_with_their_args_and_ema(tmp_path):
    """What timm's train.py writes (its CheckpointSaver: epoch, arch, optimizer, version, ``args``
    as an ``argparse.Namespace``, state_dict, state_dict_ema, metric, saver) loads under
    ``weights_only=True``; ``use_ema`` picks the EMA weights, as timm's ``load_checkpoint`` does."""
    import argparse
    import warnings

    from timm.utils import CheckpointSaver, ModelEmaV3

    import nfrepro

    reference = timm_with_official_numerics(**SMALL_TIMM)
    ema = ModelEmaV3(reference, decay=0.9)       # a copy of the weights before the step below
    opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 64, 64)
    reference(x).square().mean().backward()
    opt.step()
    args = argparse.Namespace(model="dm_nfnet_f0", lr=0.1, epochs=3, model_ema=True, device="cpu")
    saver = CheckpointSaver(reference, opt, args=args, model_ema=ema, checkpoint_dir=str(tmp_path))
    saver.save_checkpoint(epoch=3, metric=71.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3.pth.tar", "last.pth.tar",
                                                         "model_best.pth.tar"]
    path = tmp_path / "model_best.pth.tar"
    assert isinstance(torch.load(path, weights_only=False)["args"], argparse.Namespace)

    with pytest.warns(UserWarning, match="also holds EMA weights .*use_ema=True"):
        raw = load_pretrained(NFNet("F0", **SMALL).eval(), path)
    ema_model = nfrepro.create_model("nfnet_f0", pretrained=tmp_path / "checkpoint-3.pth.tar", use_ema=True,
                                     **SMALL).eval()
    for model, source in ((raw, reference), (ema_model, ema.module)):
        expected = from_timm(source.state_dict())
        assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
        with torch.no_grad():
            assert torch.allclose(model(x), source(x), atol=1e-4)   # the timm model's logits
    assert not torch.equal(raw.blocks[0].conv0.weight, ema_model.blocks[0].conv0.weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # use_ema=False: the raw weights, no warning
        load_pretrained(NFNet("F0", **SMALL), path, use_ema=False)


def test_use_ema_reads_our_checkpoints_and_falls_back_like_timm():
    a, b = tiny(seed=0), tiny(seed=1)
    ours = {"format": "nfrepro-checkpoint-v1", "model": a.state_dict(), "ema": b.state_dict()}
    picked = load_pretrained(tiny(seed=2), ours, use_ema=True)
    assert picked.blocks[1].conv1.weight.equal(b.blocks[1].conv1.weight)
    plain = load_pretrained(tiny(seed=2), {"state_dict": a.state_dict()}, use_ema=True)  # no EMA: the weights
    assert plain.blocks[1].conv1.weight.equal(a.blocks[1].conv1.weight)
    import nfrepro
    with pytest.raises(ValueError, match="pass pretrained=PATH"):
        nfrepro.create_model("nfnet_f0", use_ema=True)


class NotAWeight:
    """A class no weights file needs: ``weights_only`` must refuse it."""


def test_a_checkpoint_needing_another_class_is_refused_by_name(tmp_path):
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": tiny().state_dict(), "args": NotAWeight()}, path)
    with pytest.raises(ValueError, match=r"needs \S*NotAWeight to be unpickled.*weights_only=False"):
        load_pretrained(tiny(), path)


# ---------------------------------------------------------------- fine-tuning loads, formats by content
def test_to_timm_round_trips_timm_dm_nfnet_layout():
    timm = pytest.importorskip("timm")
    from nfrepro.models.pretrained import to_timm
    torch.manual_seed(0)
    reference = timm.create_model("dm_nfnet_f0", pretrained=False, num_classes=4)
    sd = reference.state_dict()
    back = to_timm(load_pretrained(NFNet("F0", num_classes=4), sd))
    assert back.keys() == sd.keys()
    assert all(back[k].shape == sd[k].shape and torch.equal(back[k], sd[k]) for k in sd)
    reference.load_state_dict(back)   # timm takes it as its own


def test_format_comes_from_content_and_prefixes_are_stripped(tmp_path, caplog):
    from nfrepro.models.pretrained import sniff_format, to_timm
    source = tiny(seed=0)
    timm_state = {f"module._orig_mod.{k}": v for k, v in to_timm(source).items()}
    path = tmp_path / "model_best.pth.tar"   # timm's training output: a torch zip with a "state_dict"
    torch.save({"epoch": 3, "arch": "dm_nfnet_f0", "state_dict": timm_state}, path)
    assert sniff_format(path) == "torch"
    assert all(torch.equal(load_pretrained(tiny(seed=1), path).state_dict()[k], v)
               for k, v in source.state_dict().items())
    renamed = tmp_path / "weights.npz"       # a pickle behind an .npz suffix, an npz behind .bin
    save_haiku(source, renamed)
    assert sniff_format(renamed) == "pickle"
    flat = {f"{m}/{p}": a for m, ps in to_haiku(source).items() for p, a in ps.items()}
    np.savez(tmp_path / "flat.npz", **flat)
    (tmp_path / "flat.npz").rename(tmp_path / "flat.bin")
    assert sniff_format(tmp_path / "flat.bin") == "npz"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.pth"))
    assert sniff_format(tmp_path / "w.pth") == "safetensors"
    assert load_pretrained(tiny(seed=1), tmp_path / "w.pth").blocks[0].conv0.weight.equal(
        source.blocks[0].conv0.weight)


@pytest.mark.parametrize("in_chans", [1, 3, 5])
def test_create_model_fine_tunes_from_a_file(tmp_path, in_chans):
    import nfrepro
    from nfrepro.models.pretrained import adapt_input_conv
    source = tiny(seed=0)
    torch.save(source.state_dict(), tmp_path / "f0.pth")
    with pytest.warns(UserWarning) as caught:  # a partial fit is a warning a user sees, not INFO
        model = nfrepro.create_model("nfnet_f0", pretrained=tmp_path / "f0.pth",
                                     **{**TINY, "num_classes": 7, "in_chans": in_chans})
    assert model.fc.out_features == 7 and model.stem.conv0.weight.shape[1] == in_chans
    assert model.blocks[2].conv1.weight.equal(source.blocks[2].conv1.weight)
    assert model.stem.conv0.weight.equal(adapt_input_conv(source.stem.conv0.weight, in_chans))
    (line,) = [str(w.message) for w in caught]
    assert "re-initialised the classifier" in line
    assert ("adapted stem.conv0.weight" in line) == (in_chans != 3)


def test_adapt_input_conv_follows_timm_rule():
    w = torch.randn(4, 3, 3, 3)
    assert adapt_input_conv_(w, 1).equal(w.sum(1, keepdim=True))
    six = adapt_input_conv_(w, 6)
    assert torch.allclose(six, torch.cat([w, w], 1) * 0.5)
    grey = torch.randn(1, 1, 8, 8)   # a grey image through the 6-channel conv = through the RGB one
    assert torch.allclose(torch.nn.functional.conv2d(grey.expand(1, 6, 8, 8), six),
                          torch.nn.functional.conv2d(grey.expand(1, 3, 8, 8), w), atol=1e-5)


def adapt_input_conv_(w, c):
    from nfrepro.models.pretrained import adapt_input_conv
    return adapt_input_conv(w, c)


def test_plain_state_dicts_fine_tune_any_family():
    import nfrepro
    kw = dict(depths=(1, 1, 1, 1), widths=(16, 32, 32, 64))
    source = nfrepro.create_model("bn_resnet26", num_classes=10, **kw)
    model = nfrepro.create_model("bn_resnet26", pretrained={"module." + k: v for k, v in
                                                             source.state_dict().items()},
                                 num_classes=2, in_chans=1, **kw)
    assert model.blocks[1].state_dict().keys() and all(
        torch.equal(v, source.blocks[1].state_dict()[k]) for k, v in model.blocks[1].state_dict().items())
    with pytest.raises(ValueError, match="shape mismatch for fc.weight.*strict=False"):
        load_pretrained(nfrepro.create_model("bn_resnet26", num_classes=2, **kw), source.state_dict())


@pytest.mark.parametrize("name, content", [("empty.pth", b""), ("empty.npz", b""), ("text.pkl", b"hello\n"),
                                           ("text.safetensors", b"hello"), ("cut.pth", None)])
def test_broken_weights_files_are_a_value_error_naming_the_file(tmp_path, name, content):
    model = NFNet("F0", depths=(1, 1, 1, 1))
    if content is None:
        torch.save(model.state_dict(), tmp_path / "whole.pth")
        content = (tmp_path / "whole.pth").read_bytes()[:3000]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=f"{name} is empty, truncated or not a weights file"):
        load_pretrained(model, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_pretrained(model, tmp_path / "missing.pth")


def test_weights_of_another_architecture_are_refused_not_partly_loaded():
    import nfrepro
    source = nfrepro.create_model("nf_resnet_small")  # a few tensors share names and shapes
    with pytest.raises(ValueError, match=r"only \d+ of the \d+ tensors .* at least 50%: pick the model"):
        nfrepro.create_model("nf_resnet26", pretrained=source.state_dict(),
                             depths=(1, 1, 1, 1), widths=(16, 32, 32, 64))
