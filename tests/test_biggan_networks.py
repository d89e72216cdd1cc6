"""BigGAN's networks: the official topology's size, every resolution, conditioning, gradients."""

from __future__ import annotations

import pytest
import torch

from mixgan.nets.biggan import Attention, Discriminator, Generator

pytestmark = pytest.mark.usefixtures("one_thread")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_at_128_equal_the_reference_biggan():
    """BigGAN at 128² (ch 96, z 120, shared 128, hierarchical, attention at 64, 1000 classes):
    google/compare_gan's resnet_biggan_test.py asserts 70,433,988 trainable weights for G and
    87,982,370 for D."""
    assert count(Generator(1000, 128)) == 70_433_988
    assert count(Discriminator(1000, 128)) == 87_982_370


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_every_resolution_builds_and_conditions_on_the_class(resolution):
    torch.manual_seed(0)
    G = Generator(5, resolution, ch=8, z_dim=20, shared_dim=8, attention=(resolution // 2,))
    D = Discriminator(5, resolution, ch=8, attention=(resolution // 2,))
    z = torch.randn(2, G.z_dim).repeat(2, 1)
    labels = torch.tensor([0, 1, 3, 4])
    G.eval()  # running statistics: each image depends on its own inputs only
    images = G(z, labels)
    assert images.shape == (4, 3, resolution, resolution)
    assert images.abs().max() <= 1
    assert not torch.allclose(images[0], images[2])  # same z, another class
    logits = D(images[:1].repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    assert logits.shape == (2, 1) and logits[0] != logits[1]  # same image, another class


def test_hierarchical_latents_split_across_the_blocks():
    G = Generator(3, 128, ch=4, z_dim=120)
    assert G.chunk == 20 and G.z_dim == 120  # 5 blocks + the 4x4 input: 6 chunks
    assert Generator(3, 128, ch=4, z_dim=125).z_dim == 120  # rounded down, as BigGAN
    flat = Generator(3, 32, ch=4, z_dim=24, hier=False).eval()
    z, labels = torch.randn(2, 24), torch.tensor([0, 1])
    assert flat(z, labels).shape == (2, 3, 32, 32)


def test_attention_sits_after_the_block_of_its_resolution():
    G = Generator(3, 128, ch=8, attention=(64,))
    D = Discriminator(3, 128, ch=8, attention=(64,))
    assert list(G.attention) == ["3"]  # blocks make 8, 16, 32, 64, 128
    assert list(D.attention) == ["0"]  # blocks make 64, 32, 16, 8, 4, 4
    assert not Generator(3, 128, ch=8, attention=()).attention
    attention = Attention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(attention(x), x)  # gamma starts at 0
    attention.gamma.data.fill_(1.0)
    assert not torch.allclose(attention(x), x)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    G = Generator(3, 32, ch=4, z_dim=12, shared_dim=8, attention=(16,))
    D = Discriminator(3, 32, ch=4, attention=(16,))
    for module in (G, D):  # let attention contribute, so its convs get gradients too
        for attention in module.attention.values():
            attention.gamma.data.fill_(0.5)
    labels = torch.tensor([0, 1, 2, 1])
    D(G(torch.randn(4, G.z_dim), labels), labels).mean().backward()
    for name, module in (("G", G), ("D", D)):
        missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, f"{name}: no gradient for {missing}"


@torch.no_grad()
def test_weights_start_orthogonal_under_spectral_norm():
    G = Generator(3, 32, ch=4, z_dim=12, shared_dim=8)
    weight = G.blocks[0].conv1.parametrizations.weight.original.flatten(1)  # [16, 16 x 9]
    assert torch.allclose(weight @ weight.T, torch.eye(len(weight)), atol=1e-5)
    sigma = torch.linalg.matrix_norm(G.blocks[0].conv1.weight.flatten(1), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.05)  # spectral norm divides by the top value


def test_unsupported_resolutions_name_the_supported_ones():
    with pytest.raises(ValueError, match="32, 64, 128, 256, not 48"):
        Generator(3, 48)
    with pytest.raises(ValueError, match="not 512"):
        Discriminator(3, 512)
