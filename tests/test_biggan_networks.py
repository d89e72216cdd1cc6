"""BigGAN's networks against BigGAN-PyTorch: size at every resolution, conditioning, flat latents,
attention placement, spectral-norm and BatchNorm settings, gradients."""

from __future__ import annotations

import pytest
import torch

from mixgan.nets.biggan import Attention, Discriminator, Generator, spectrally_normalised

pytestmark = pytest.mark.usefixtures("one_thread")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("resolution", "g_params", "d_params"),
    [
        (32, 9_466_115, 9_836_929),
        (64, 70_239_108, 45_500_449),
        (128, 70_433_988, 87_982_370),
        (256, 82_108_548, 99_225_890),
    ],
)
def test_parameter_counts_at_every_resolution(resolution, g_params, d_params):
    """ch 96, z 120, shared 128, hierarchical, attention at 64, 1000 classes. 128²: the counts
    google/compare_gan's resnet_biggan_test.py asserts; all four: the counts of BigGAN-PyTorch's
    G_arch/D_arch with its layers, counted on a transcription of BigGAN.py and layers.py."""
    with torch.device("meta"):  # shapes only: no orthogonalisation of 70 M weights
        G, D = Generator(1000, resolution), Discriminator(1000, resolution)
    assert (count(G), count(D)) == (g_params, d_params)


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


def test_flat_latents_feed_the_input_and_condition_on_the_class_alone():
    torch.manual_seed(0)
    G = Generator(4, 64, ch=8, z_dim=30, shared_dim=16, hier=False).eval()
    assert G.z_dim == 30 and G.linear.in_features == 30  # all of z enters the 4x4 input
    assert all(block.bn1.gain.in_features == 16 for block in G.blocks)  # the embedding only
    z, labels = torch.randn(1, 30).repeat(3, 1), torch.tensor([0, 0, 3])
    z[1] += 1.0
    images = G(z, labels)
    assert not torch.allclose(images[0], images[1])  # another z
    assert not torch.allclose(images[0], images[2])  # another class


def test_discriminator_attention_at_32_follows_the_blocks_output_resolution():
    assert list(Discriminator(3, 32, ch=8, attention=(16,)).attention) == ["0"]
    assert list(Discriminator(3, 32, ch=8, attention=(8,)).attention) == ["1", "2", "3"]
    assert list(Discriminator(3, 128, ch=8, attention=(4,)).attention) == ["4", "5"]
    assert not Discriminator(3, 64, ch=8, attention=()).attention


def test_spectral_norm_and_batchnorm_settings():
    G, D = Generator(3, 32, ch=8, z_dim=20, shared_dim=8), Discriminator(3, 32, ch=8)
    for module in (G.linear, G.blocks[0].bn1.gain, G.output_conv, D.blocks[0].conv1, D.embed):
        (norm,) = module.parametrizations.weight
        assert (norm.eps, norm.n_power_iterations) == (1e-6, 1)
    assert not hasattr(G.shared, "parametrizations")  # G's shared embedding: plain, as theirs
    assert G.blocks[0].bn1.bn.eps == G.output_bn.eps == 1e-5
    assert not G.blocks[0].bn1.bn.affine and G.output_bn.affine
    assert G.blocks[0].bn1.gain.bias is None and G.blocks[0].bn1.bias.bias is None


@torch.no_grad()
def test_eval_mode_runs_one_unstored_power_iteration_from_the_stored_vector():
    torch.manual_seed(0)
    layer = spectrally_normalised(torch.nn.Linear(6, 5))
    (norm,) = layer.parametrizations.weight
    weight = layer.parametrizations.weight.original
    norm._u.mul_(0.8).add_(0.1)  # an averaged (EMA) vector: neither unit nor singular
    stored = norm._u.clone()
    layer.eval()
    v = torch.nn.functional.normalize(weight.T @ stored, dim=0)
    u = torch.nn.functional.normalize(weight @ v, dim=0)
    torch.testing.assert_close(layer.weight, weight / (u @ weight @ v))
    assert torch.equal(norm._u, stored)  # not stored, as BigGAN-PyTorch's update=False
    top = torch.linalg.svd(weight).U[:, 0]
    norm._u.copy_(top * 0.3)  # from the top singular vector: exactly the spectral norm
    assert float(torch.linalg.matrix_norm(layer.weight, ord=2)) == pytest.approx(1.0, abs=1e-5)
    layer.train()
    _ = layer.weight  # training: torch's power iteration, which stores u and v
    assert not torch.equal(norm._u, top * 0.3)


def test_discriminator_shortcut_is_learnt_only_where_the_shape_changes():
    D = Discriminator(3, 128, ch=8).eval()  # eval: no power iteration between the two passes
    assert [block.shortcut is not None for block in D.blocks] == [True] * 5 + [False]
    last, x = D.blocks[-1], torch.randn(2, 128, 4, 4)
    residual = last.conv2(torch.relu(last.conv1(torch.relu(x))))
    assert torch.allclose(last(x), x + residual)  # the identity shortcut
