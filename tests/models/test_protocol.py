"""pretrained_cfg: the papers' evaluation protocol, one source of truth for models and data."""
import pytest

import nfrepro
from nfrepro.models.protocol import IMAGENET_MEAN, IMAGENET_STD, crop_pct


def test_nfnet_cfg_is_table_1_and_app_a():
    with __import__("torch").device("meta"):
        cfg = nfrepro.create_model("nfnet_f1").pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["test_input_size"] == (3, 320, 320)
    assert cfg["test_crop_pct"] == pytest.approx(320 / 352) and cfg["crop_mode"] == "squash"
    assert cfg["interpolation"] == "bicubic" and cfg["mean"] == IMAGENET_MEAN and cfg["std"] == IMAGENET_STD
    assert cfg["first_conv"] == "stem.conv0" and cfg["classifier"] == "fc" and cfg["num_classes"] == 1000


def test_resnet_cfgs_and_the_data_module_shares_the_constants():
    from nfrepro.data import imagenet
    assert imagenet.IMAGENET_MEAN is IMAGENET_MEAN and imagenet.IMAGENET_STD is IMAGENET_STD
    with __import__("torch").device("meta"):
        assert nfrepro.create_model("nf_resnet50").pretrained_cfg["input_size"] == (3, 224, 224)
        small = nfrepro.create_model("nf_resnet_small", in_chans=1).pretrained_cfg
    assert small["input_size"] == (1, 32, 32) and small["mean"] is None
    assert crop_pct(256) == pytest.approx(256 / 288)
