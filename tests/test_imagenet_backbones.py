"""AlexNet / VGG in torchvision's layout (mixgan.nets.imagenet_backbones) against torchvision."""

from __future__ import annotations

import pytest
import torch

from mixgan.nets import imagenet_backbones

torchvision = pytest.importorskip("torchvision")


PARAMETERS = [("alexnet", 61_100_840), ("vgg16", 138_357_544), ("vgg19", 143_667_240)]


@pytest.mark.parametrize(("name", "parameters"), PARAMETERS)
def test_same_state_dict_and_outputs_as_torchvision(name, parameters):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    ours = getattr(imagenet_backbones, name)().eval()
    expected = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert sum(p.numel() for p in ours.parameters()) == parameters
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=1e-5, atol=1e-6)


def test_untrained_vgg_is_initialised_as_torchvision_does():
    """He-normal (fan out) convolutions with zero bias, N(0, 0.01) linear layers: the
    stand-in's statistics, not its draws, match torchvision's."""
    torch.manual_seed(2)
    network = imagenet_backbones.vgg16()
    conv = network.features[28]  # 512 -> 512, fan out 512 * 9
    assert torch.count_nonzero(conv.bias) == 0
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.01)
    assert network.classifier[3].weight.std().item() == pytest.approx(0.01, rel=0.01)
