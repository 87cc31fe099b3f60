"""Notebook 06 (``nfrepro.experiments.why_no_batchnorm``): the BN costs measured on tiny nets."""
import pandas as pd
import pytest
import torch

from nfrepro.experiments import why_no_batchnorm as nobn
from nfrepro.experiments.agc_ablation import BN, NF
from nfrepro.models import create_model

TINY = {"depths": (1, 1), "widths": (4, 8), "num_classes": 10, "in_chans": 1}


def _tidy(scores):
    """Tidy run rows as run_plan writes them: {(variant, batch, seed): top-1}."""
    rows = []
    for (variant, batch, seed), top1 in scores.items():
        run = f"{variant}-{batch}-{seed}"
        base = {"variant": variant, "layers": "", "batch_size": batch, "clipping": float("nan"), "seed": seed,
                "run": run, "status": "completed"}
        rows += [{**base, "metric": "final_test_top1", "value": top1},
                 {**base, "metric": "diverged", "value": 0.0}, {**base, "metric": "steps", "value": 10}]
    return pd.DataFrame(rows)


def test_batch_claims_pair_by_seed():
    scores = {}
    for seed, noise in enumerate((0.0, 0.3, -0.2)):
        scores.update({(NF, 4, seed): 80 + noise, (BN, 4, seed): 70 + noise,
                       (NF, 256, seed): 85 + noise, (BN, 256, seed): 85.2 + noise})
    claims = nobn.batch_claims(_tidy(scores))
    assert claims[0]["verdict"] == "reproduced" and claims[0]["estimate"] == pytest.approx(10.0)
    assert claims[1]["verdict"] == "reproduced" and claims[1]["estimate"] == pytest.approx(-0.2)
    table = nobn.batch_table(_tidy(scores))
    assert set(table["line"]) == {BN, NF, "NF - BN"} and (table["n"] == 3).all()


def test_batch_mates_change_a_bn_net_in_training_mode_only():
    torch.manual_seed(0)
    images = torch.randn(64, 1, 28, 28)
    bn = nobn.batch_mate_effect(create_model("bn_resnet_small", **TINY), images, batch=4, draws=5)
    nf = nobn.batch_mate_effect(create_model("nf_resnet_small", **TINY, skip_gain_init=1.0), images,
                                batch=4, draws=5)
    assert (bn.query("mode == 'train'")["relative_change"] > 1e-3).all()
    assert (bn.query("mode == 'eval'")["relative_change"] < 1e-5).all()
    assert (nf["relative_change"] < 1e-5).all()
    claims = nobn.independence_claims({BN: bn, NF: nf})
    assert [c["verdict"] for c in claims] == ["reproduced", "reproduced"]


def test_batch_statistics_change_a_bn_net_not_an_nf_net():
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28) * 3 + 1, torch.randint(0, 10, (32,))
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    bn, nf = create_model("bn_resnet_small", **TINY), create_model("nf_resnet_small", **TINY)
    before = [b.clone() for b in bn.buffers()]
    assert nobn.top1(nf, batches, True) == nobn.top1(nf, batches, False)
    logits_eval = bn.eval()(x)
    nobn.top1(bn, batches, True)
    # running averages untouched
    assert all(torch.equal(a, b) for a, b in zip(before, bn.buffers(), strict=True))
    assert torch.equal(bn.eval()(x), logits_eval)


def test_batchnorm_share_and_traffic():
    model = create_model("bn_resnet_small", **TINY)
    shares = nobn.batchnorm_share(model, batch_size=8, px=28, in_chans=1, steps=1, repeats=2)
    assert len(shares) == 2 and shares["share"].between(0, 1).all() and (shares["bn_us"] > 0).all()
    traffic = nobn.batchnorm_traffic(model, torch.randn(4, 1, 28, 28))
    bn_layers = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert int(traffic["bn_layers"].iloc[0]) == bn_layers
    assert nobn.compute_claim(shares)["n"] == 2
