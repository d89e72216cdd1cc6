"""Datasets: the procedural generator, preparation of real image sets, nested subsets."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from mixgan.data.imagezip import image_names, read_image_zip
from mixgan.data.prepare import centre_crop_resize, prepare_dataset
from mixgan.data.procedural import CLASS_NAMES, DOMAIN_NAMES, generate_shapes
from mixgan.data.subsets import dataset_order, make_subset_manifest, select_subset
from mixgan.errors import DataError
from mixgan.io import read_json, sha256_bytes

# -- the procedural demo dataset ----------------------------------------------------------------


def test_procedural_is_seeded_and_balanced():
    images, labels, domains = generate_shapes(60, 32, classes=3, domains=2, seed=7)
    again, _, _ = generate_shapes(60, 32, classes=3, domains=2, seed=7)
    other, _, _ = generate_shapes(60, 32, classes=3, domains=2, seed=8)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again)
    assert not np.array_equal(images, other)
    assert Counter(labels.tolist()) == {0: 20, 1: 20, 2: 20}
    assert Counter(domains.tolist()) == {0: 30, 1: 30}
    assert Counter(zip(labels.tolist(), domains.tolist(), strict=True)) == {
        (c, d): 10 for c in range(3) for d in range(2)
    }


def test_procedural_domains_differ_in_brightness_and_images_vary():
    images, _, domains = generate_shapes(90, 32, classes=3, domains=3, seed=0)
    brightness = [images[domains == d].mean() for d in range(3)]
    assert brightness[1] < 0.5 * brightness[0]  # dark backgrounds
    flat = images.reshape(len(images), -1).astype(np.int64)
    assert len({row.tobytes() for row in flat}) == len(images)  # no duplicates
    assert float(images.std()) > 30


def test_procedural_rejects_out_of_range_counts():
    with pytest.raises(ValueError, match="classes"):
        generate_shapes(4, 16, classes=len(CLASS_NAMES) + 1)
    with pytest.raises(ValueError, match="domains"):
        generate_shapes(4, 16, domains=len(DOMAIN_NAMES) + 1)


# -- preparation --------------------------------------------------------------------------------


def _write_images(folder, sizes_and_modes):
    for name, (size, mode) in sizes_and_modes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = {"RGB": (200, 30, 30), "L": 90, "RGBA": (0, 0, 255, 0)}[mode]
        Image.new(mode, size, colour).save(path)


def _dataset(path, **extra):
    return {"path": str(path), "resolution": 16, "labels": "none", "domains": "none", **extra}


def test_prepare_folder_recursively_with_mixed_sizes_and_modes(tmp_path):
    _write_images(
        tmp_path / "raw",
        {
            "a.png": ((64, 32), "RGB"),
            "sub/b.jpg": ((20, 40), "L"),
            "sub/deeper/c.png": ((16, 16), "RGBA"),
        },
    )
    (tmp_path / "raw" / "notes.txt").write_text("not an image")
    manifest = prepare_dataset(
        "toy", _dataset(tmp_path / "raw"), tmp_path / "p.zip", tmp_path / "p.json"
    )
    assert manifest["count"] == 3
    assert [i["source"].split("raw/")[1] for i in manifest["images"]] == [
        "a.png",
        "sub/b.jpg",
        "sub/deeper/c.png",
    ]
    assert manifest["source_modes"] == {"RGB": 1, "L": 1, "RGBA": 1}
    images = read_image_zip(tmp_path / "p.zip", [i["name"] for i in manifest["images"]])
    assert images.shape == (3, 16, 16, 3)
    assert tuple(images[0, 8, 8]) == (200, 30, 30)
    assert tuple(images[1, 8, 8]) == (90, 90, 90)  # grayscale -> RGB
    assert tuple(images[2, 8, 8]) == (255, 255, 255)  # transparent -> white
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        for entry in manifest["images"]:
            assert sha256_bytes(archive.read(entry["name"])) == entry["sha256"]
    assert read_json(tmp_path / "p.json")["content_hash"] == manifest["content_hash"]


def test_prepare_zip_with_subfolder_labels_and_subdir(tmp_path):
    raw = tmp_path / "raw"
    _write_images(
        raw, {f"train/{c}/{i}.png": ((24, 24), "RGB") for c in ("cat", "dog") for i in range(2)}
    )
    _write_images(raw, {"test/cat/x.png": ((24, 24), "RGB")})
    archive = tmp_path / "afhq.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(raw.rglob("*.png")):
            out.write(path, path.relative_to(raw).as_posix())
    dataset = _dataset(archive, labels="subfolder", domains="labels", subdir="train")
    manifest = prepare_dataset("afhq", dataset, tmp_path / "p.zip", tmp_path / "p.json")
    assert manifest["count"] == 4
    assert manifest["class_names"] == ["cat", "dog"] == manifest["domain_names"]
    assert [i["label"] for i in manifest["images"]] == [0, 0, 1, 1]
    inner = json.loads(zipfile.ZipFile(tmp_path / "p.zip").read("dataset.json"))
    assert inner["labels"] == [[i["name"], i["label"]] for i in manifest["images"]]


def test_prepare_reads_stylegan2_dataset_json_labels(tmp_path):
    raw = tmp_path / "raw"
    _write_images(raw, {"00000/img0.png": ((16, 16), "RGB"), "00000/img1.png": ((16, 16), "RGB")})
    (raw / "dataset.json").write_text(
        json.dumps({"labels": [["00000/img0.png", 5], ["00000/img1.png", 2]]})
    )
    manifest = prepare_dataset(
        "sg", _dataset(raw, labels="dataset_json"), tmp_path / "p.zip", tmp_path / "p.json"
    )
    assert manifest["class_names"] == ["2", "5"]
    assert [i["label"] for i in manifest["images"]] == [1, 0]


def test_corrupt_image_stops_preparation_naming_the_file(tmp_path):
    _write_images(tmp_path / "raw", {"good.png": ((16, 16), "RGB")})
    (tmp_path / "raw" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=r"raw/bad\.png: cannot read image"):
        prepare_dataset("toy", _dataset(tmp_path / "raw"), tmp_path / "p.zip", tmp_path / "p.json")
    assert not (tmp_path / "p.zip").exists() and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_dataset_is_named(tmp_path, make):
    path = tmp_path / "data"
    if make == "empty":
        path.mkdir()
    with pytest.raises(DataError, match=str(path)):
        prepare_dataset("toy", _dataset(path), tmp_path / "p.zip", tmp_path / "p.json")


def test_centre_crop_keeps_the_middle():
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, 10:20] = 255  # the centred square is white
    out = centre_crop_resize(Image.fromarray(image), 10)
    assert out.shape == (10, 10, 3) and out.min() == 255


def test_prepared_procedural_dataset_round_trips(tmp_path):
    dataset = {
        "format": "procedural",
        "resolution": 16,
        "labels": "none",
        "domains": "none",
        "procedural": {"count": 12, "classes": 3, "domains": 2, "seed": 0},
    }
    manifest = prepare_dataset("shapes", dataset, tmp_path / "p.zip", tmp_path / "p.json")
    assert manifest["stand_in"] == "procedural demo data"
    assert image_names(tmp_path / "p.zip") == [f"img{i:08d}.png" for i in range(12)]
    expected, _, _ = generate_shapes(12, 16, 3, 2, 0)
    assert np.array_equal(read_image_zip(tmp_path / "p.zip"), expected)  # PNG is lossless


# -- subsets ------------------------------------------------------------------------------------

LABELS = [i % 3 for i in range(300)] + [3] * 30  # four classes, one rarer


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize("order", ["first", "random"])
def test_subsets_are_nested_for_every_kind_of_size(order, stratify):
    groups = [
        [
            {"count": 3},
            {"fraction": 0.01},
            {"count": 33},
            {"fraction": 0.1},
            {"count": 100},
            {"fraction": 0.5},
            {"count": 330},
        ]
    ]
    if stratify:
        groups.append([{"per_class": 2}, {"per_class": 7}, {"per_class": 25}])
    for sizes in groups:
        chosen = [
            set(select_subset(LABELS, s, order=order, seed=3, stratify=stratify).tolist())
            for s in sizes
        ]
        for small in chosen:
            for large in chosen:
                assert small <= large or large <= small  # any two subsets are nested


def test_subset_sizes_and_stratification():
    pick = select_subset(LABELS, {"fraction": 0.1}, order="random", seed=0, stratify=True)
    assert Counter(LABELS[i] for i in pick) == {0: 10, 1: 10, 2: 10, 3: 3}
    pick = select_subset(LABELS, {"count": 33}, order="random", seed=0, stratify=True)
    assert len(pick) == 33 and Counter(LABELS[i] for i in pick) == {0: 10, 1: 10, 2: 10, 3: 3}
    pick = select_subset(LABELS, {"per_class": 5}, order="random", seed=0, stratify=True)
    assert Counter(LABELS[i] for i in pick) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert select_subset(LABELS, {"count": 4}, order="first").tolist() == [0, 1, 2, 3]


def test_subsets_are_seeded():
    a = select_subset(LABELS, {"count": 20}, order="random", seed=1)
    b = select_subset(LABELS, {"count": 20}, order="random", seed=1)
    c = select_subset(LABELS, {"count": 20}, order="random", seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.sort(dataset_order(LABELS, "random", 5, True)), np.arange(len(LABELS)))


def test_subset_larger_than_dataset_names_the_key():
    with pytest.raises(
        DataError, match=r"datasets\.toy\.subsets\.sizes\.big\.count: 400 images asked"
    ):
        select_subset(LABELS, {"count": 400}, where="datasets.toy.subsets.sizes.big")
    with pytest.raises(DataError, match=r"per_class: 40 images of class 3 asked, it has 30"):
        select_subset(LABELS, {"per_class": 40}, stratify=True)


def test_subset_manifest_records_files_and_hashes(tmp_path):
    dataset = {
        "format": "procedural",
        "resolution": 16,
        "labels": "none",
        "domains": "none",
        "procedural": {"count": 30, "classes": 3, "domains": 2, "seed": 0},
    }
    prepared = prepare_dataset("shapes", dataset, tmp_path / "p.zip", tmp_path / "p.json")
    settings = {"order": "random", "seed": 0, "stratify": "labels", "sizes": {"n6": {"count": 6}}}
    manifest = make_subset_manifest(prepared, "n6", settings)
    again = make_subset_manifest(prepared, "n6", settings)
    assert manifest["count"] == 6 and manifest["content_hash"] == again["content_hash"]
    assert manifest["prepared_hash"] == prepared["content_hash"]
    by_name = {i["name"]: i for i in prepared["images"]}
    for image in manifest["images"]:
        assert image["sha256"] == by_name[image["name"]]["sha256"]
    full = make_subset_manifest(prepared, "full", settings)
    assert full["count"] == 30 and {i["name"] for i in manifest["images"]} <= {
        i["name"] for i in full["images"]
    }


def test_download_without_network_fails_fast_with_advice(tmp_path):
    from mixgan.data.sources import download

    target = tmp_path / "afhq.zip"
    with pytest.raises(
        DataError,
        match=r"could not download http://127\.0\.0\.1:9/afhq\.zip .* set the dataset's `path`",
    ):
        download("http://127.0.0.1:9/afhq.zip", target, timeout=5)  # nothing listens on port 9
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
