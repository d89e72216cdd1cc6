"""LightCNN-29 v2 (mixgan.nets.lightcnn) against AlfredXiangWu/LightCNN ``light_cnn.py``."""

from __future__ import annotations

import pytest
import torch

from mixgan.metrics.weights import WeightsError
from mixgan.nets.lightcnn import MFM, V2_CLASSES, LightCNN29v2, load_lightcnn

pytestmark = pytest.mark.usefixtures("one_thread")


def _mfm(cin: int, cout: int, k: int) -> int:
    return 2 * cout * (cin * k * k + 1)  # Conv2d(cin, 2*cout, k) with bias


def _official_count(num_classes: int) -> int:
    """network_29layers_v2 counted from its definition: conv1 mfm(1, 48, 5), resblocks of
    two 3x3 mfm, groups of a 1x1 and a 3x3 mfm, fc 8192->256 (bias), fc2 256->classes (no bias)."""
    res = lambda c: 2 * _mfm(c, c, 3)  # noqa: E731
    grp = lambda i, o: _mfm(i, i, 1) + _mfm(i, o, 3)  # noqa: E731
    convs = _mfm(1, 48, 5) + res(48) + grp(48, 96) + 2 * res(96) + grp(96, 192)
    convs += 3 * res(192) + grp(192, 128) + 4 * res(128) + grp(128, 128)
    return convs + 8192 * 256 + 256 + 256 * num_classes


def test_parameter_count_matches_the_official_architecture():
    model = LightCNN29v2()
    count = sum(p.numel() for p in model.parameters())
    assert count == _official_count(V2_CLASSES) == 30_959_200
    assert count - V2_CLASSES * 256 == 10_475_872  # without the 80013-way classifier


def test_mfm_is_the_maximum_of_the_two_halves():
    mfm = MFM(2, 2, conv=False)
    with torch.no_grad():
        mfm.filter.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, 2]]))
        mfm.filter.bias.zero_()
    out = mfm(torch.tensor([[3.0, -1.0]]))
    assert torch.equal(out, torch.tensor([[3.0, -1.0]]))  # max(3, -3), max(-1, -2)


def _official_file(model: LightCNN29v2, path) -> None:
    """The release layout: DataParallel keys inside a training checkpoint (train.py)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 80, "arch": "LightCNN-29v2", "state_dict": state}, path)


def test_official_checkpoint_layout_round_trip(tmp_path):
    torch.manual_seed(0)
    source = LightCNN29v2().eval()
    path = tmp_path / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    _official_file(source, path)
    loaded = load_lightcnn(path)
    assert not loaded.training
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        expected, got = source(x), loaded(x)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    assert got[1].shape == (2, 256)


def test_feature_is_taken_before_dropout():
    torch.manual_seed(1)
    model = LightCNN29v2(num_classes=10)
    x = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        train_feature = model.train()(x)[1]
        eval_feature = model.eval()(x)[1]
    assert torch.equal(train_feature, eval_feature)


def test_missing_and_mismatched_keys_name_the_file(tmp_path):
    model = LightCNN29v2()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    del state["module.group2.conv.filter.weight"]
    path = tmp_path / "broken.pth.tar"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match=r"broken\.pth\.tar.*group2\.conv\.filter\.weight"):
        load_lightcnn(path)
    with pytest.raises(WeightsError, match=r"shape mismatches: fc2\.weight"):
        _official_file(model, path)
        load_lightcnn(path, num_classes=79077)
    with pytest.raises(WeightsError, match="does not exist"):
        load_lightcnn(tmp_path / "absent.pth")
