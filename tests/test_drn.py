"""DRN-D-105 segmentation network (mixgan.nets.drn) against fyu/drn drn.py and segment.py."""

from __future__ import annotations

import pytest
import torch

from mixgan.metrics.weights import WeightsError
from mixgan.nets.drn import DRNSeg, load_drn_seg

pytestmark = pytest.mark.usefixtures("one_thread")


def _official_count(classes: int) -> dict[str, int]:
    """drn_d_105 counted from drn.py: arch D stem and conv stacks, Bottleneck stages
    [3, 4, 23, 3] (64, 128, 256, 512 planes, x4 out), layer7/8 3x3 convs; BN = 2 per channel;
    DRNSeg adds seg (1x1, bias) and the grouped 16x16 ``up`` kernel."""
    conv = lambda i, o, k: i * o * k * k  # noqa: E731 - no bias anywhere in the base
    block = lambda i, p: (  # noqa: E731
        conv(i, p, 1) + conv(p, p, 3) + conv(p, 4 * p, 1) + 2 * (p + p + 4 * p)
    )
    down = lambda i, p: conv(i, 4 * p, 1) + 2 * 4 * p  # noqa: E731

    def stage(inplanes: int, planes: int, blocks: int) -> int:
        return (
            down(inplanes, planes)
            + block(inplanes, planes)
            + (blocks - 1) * block(4 * planes, planes)
        )

    base = conv(3, 16, 7) + 32 + conv(16, 16, 3) + 32 + conv(16, 32, 3) + 64
    base += stage(32, 64, 3) + stage(256, 128, 4) + stage(512, 256, 23) + stage(1024, 512, 3)
    base += conv(2048, 512, 3) + 1024 + conv(512, 512, 3) + 1024
    return {
        "base": base,
        "classifier": base + 512 * 1000 + 1000,  # drn_d_105(num_classes=1000): fc 1x1 conv
        "seg": base + 512 * classes + classes + classes * 16 * 16,
    }


def test_parameter_count_matches_the_official_architecture():
    model = DRNSeg(19)
    counts = _official_count(19)
    assert sum(p.numel() for p in model.parameters()) == counts["seg"] == 54_302_915
    assert sum(p.numel() for p in model.base.parameters()) == counts["base"]
    # README.md lists DRN-D-105 (the ImageNet classifier) with 54.8M parameters
    assert counts["classifier"] == 54_801_304


def test_official_keys_and_fixed_bilinear_up():
    model = DRNSeg(19)
    keys = model.state_dict().keys()
    for key in (
        "base.0.0.weight",
        "base.3.0.downsample.0.weight",
        "base.5.22.conv2.weight",
        "base.8.1.running_var",
        "seg.weight",
        "seg.bias",
        "up.weight",
    ):
        assert key in keys
    assert not model.up.weight.requires_grad
    kernel = model.up.weight[0, 0]
    # fill_up_weights: f = 8, c = 15/16, w[i, j] = (1 - |i/8 - c|)(1 - |j/8 - c|)
    assert kernel[7, 8].item() == pytest.approx(0.9375**2)
    assert kernel[0, 0].item() == pytest.approx((1 - 15 / 16) ** 2)
    with torch.no_grad():
        up = model.up(torch.ones(1, 19, 4, 4))
    assert up.shape == (1, 19, 32, 32)
    assert torch.allclose(up[..., 8:24, 8:24], torch.ones(1, 19, 16, 16))


@pytest.mark.parametrize("layout", ["release", "training"])
def test_official_checkpoint_layout_round_trip(tmp_path, layout):
    torch.manual_seed(0)
    source = DRNSeg(19).eval()
    with torch.no_grad():  # non-trivial BN statistics, as a trained file has
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = source.state_dict()
    path = tmp_path / "drn_d_105_cityscapes.pth"
    if layout == "release":  # segment.py test: torch.load -> load_state_dict; 2017, no counters
        torch.save({k: v for k, v in state.items() if "num_batches_tracked" not in k}, path)
    else:  # segment.py save_checkpoint of the DataParallel model
        torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_drn_seg(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected, got = source(x), loaded(x)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    assert got[0].shape == (1, 19, 32, 32) and got[1].shape == (1, 19, 4, 4)
    prediction = loaded.predict(torch.rand(2, 3, 32, 32))
    assert prediction.shape == (2, 32, 32) and prediction.max() < 19


def test_bad_files_name_the_file_and_keys(tmp_path):
    state = DRNSeg(19).state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "segmenter.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"segmenter\.pth.*unexpected keys: extra\.weight"):
        load_drn_seg(path)
    del state["extra.weight"], state["seg.bias"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys: seg\.bias"):
        load_drn_seg(path)
    torch.save(DRNSeg(11).state_dict(), path)  # a CamVid model
    with pytest.raises(WeightsError, match=r"shape mismatches: seg\.bias"):
        load_drn_seg(path)
