"""ReMix Tables 2–3, SPADE label maps → photos and NIR → VIS faces (LightCNN-29 v2 encoder,
StyleGAN2 decoder): their data, the mixing plan, the content losses of a mixed step,
resumable runs, config checks and the table records."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mixgan import registry
from mixgan.config import load_config_file, validate_config
from mixgan.data.remix_data import (
    load_remix_data,
    prepare_remix_data,
    read_casia,
    read_cityscapes,
)
from mixgan.errors import ConfigError, DataError
from mixgan.remix_eval import table_records
from mixgan.remix_tasks import track_options
from mixgan.study import Study
from mixgan.train import spade_train
from mixgan.train.nirvis import NIRVISTrainer
from mixgan.train.remix_run import train_run
from mixgan.train.spade_train import SPADETrainer, stand_in_vgg
from mixgan.train.translation import MixPlan

from .conftest import REPO

TINY_SPADE = {"ngf": 2, "ndf": 8, "n_layers_d": 3, "aspect_ratio": 1.0,
              "num_upsampling_layers": "normal", "label_nc": 5, "instance": False, "batch": 4,
              "epochs": 1, "decay_epochs": 1, "checkpoint_every": 2, "log_every": 2,
              "eval_batch": 12}  # fmt: skip
# kimg 0.024 at batch 4: 6 steps
TINY_NIRVIS = {"w_dim": 16, "mapping_layers": 1, "channel_base": 64, "channel_max": 16,
               "batch": 4, "kimg": 0.024, "r1_gamma": 0.1, "r1_interval": 4,
               "checkpoint_every": 2, "log_every": 2, "eval_batch": 24}  # fmt: skip
LABEL_MAPS = {"format": "cityscapes", "resolution": 32, "procedural": {"count": 16, "seed": 0}}
NIR_VIS = {"format": "casia_nir_vis", "resolution": 16, "procedural": {"count": 8, "seed": 0}}
STANDINS = {"pretrained": {}, "allow_standins": True}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("remix")
    out = {}
    for name, dataset in (("label_maps", LABEL_MAPS), ("nir_vis", NIR_VIS)):
        summary = prepare_remix_data(name, dataset, root / f"{name}.npz")
        out[name] = (summary, load_remix_data(root / f"{name}.npz"))
    return out


# -- data -------------------------------------------------------------------------------------


def test_procedural_label_maps_are_prepared_with_a_train_val_split(prepared, tmp_path):
    summary, data = prepared["label_maps"]
    assert summary["procedural"] and summary["format"] == "cityscapes"
    assert summary["labels"] == [16, 32, 32] and summary["images"] == [16, 32, 32, 3]
    assert data["labels"].dtype == np.uint8 and data["images"].dtype == np.uint8
    assert set(np.unique(data["labels"])) <= {0, 1, 2, 3, 4}
    assert all(data["labels"][i].max() > 0 for i in range(16))  # every map has a shape
    np.testing.assert_array_equal(data["instances"], data["labels"])
    assert data["train"].sum() == 12 and (~data["train"]).sum() == 4  # 3/4 train, 1/4 val
    # seeded: preparing again gives the same arrays
    prepare_remix_data("again", LABEL_MAPS, tmp_path / "again.npz")
    np.testing.assert_array_equal(load_remix_data(tmp_path / "again.npz")["images"], data["images"])


def test_procedural_identities_keep_probes_and_gallery_apart_from_training(prepared):
    summary, data = prepared["nir_vis"]
    assert summary["nir"] == [32, 16, 16, 3] and summary["vis"] == [32, 16, 16, 3]
    ids = data["ids"]
    np.testing.assert_array_equal(ids, np.repeat(np.arange(8), 4))  # 8 identities x 4 images
    np.testing.assert_array_equal(data["vis_ids"], ids)
    nir = data["nir"]
    assert (nir[..., 0] == nir[..., 1]).all() and (nir[..., 0] == nir[..., 2]).all()  # grey
    train = set(ids[data["nir_train"]])
    assert train == set(ids[data["vis_train"]]) == set(range(6))
    probes = ids[data["nir_probe"]]
    assert set(probes) == {6, 7} and len(probes) == 8 and not train & set(probes)
    gallery = data["vis_ids"][data["vis_gallery"]]
    assert sorted(gallery) == [6, 7]  # one VIS image per test identity
    assert not (data["vis_gallery"] & data["vis_train"]).any()


def _png(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_read_cityscapes_pairs_labels_with_their_photos(tmp_path):
    frames = {"train": [("aachen", 1), ("bremen", 2)], "val": [("lindau", 3)]}
    for split, items in frames.items():
        for city, k in items:
            stem = f"{city}_000000_00001{k}"
            _png(tmp_path / f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                 Image.new("L", (32, 16), 10 + k))  # fmt: skip
            _png(tmp_path / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                 Image.new("RGB", (32, 16), (20 * k, 30, 40)))  # fmt: skip
    _png(tmp_path / "gtFine/train/bremen/bremen_000000_000012_gtFine_instanceIds.png",
         Image.new("I;16", (32, 16), 26001))  # fmt: skip
    data = read_cityscapes(tmp_path, 16)
    assert data["labels"].shape == (3, 8, 16) and data["images"].shape == (3, 8, 16, 3)
    assert data["labels"][:, 0, 0].tolist() == [11, 12, 13]  # train (sorted), then val
    assert data["images"][:, 0, 0, 0].tolist() == [20, 40, 60]  # each label's own photo
    assert data["train"].tolist() == [True, True, False]
    assert data["instances"][:, 0, 0].tolist() == [11, 26001, 13]  # labels without instances
    assert data["instances"].dtype == np.int32
    missing = tmp_path / "leftImg8bit/val/lindau/lindau_000000_000013_leftImg8bit.png"
    missing.unlink()
    with pytest.raises(DataError, match=re.escape(str(missing))):
        read_cityscapes(tmp_path, 16)


def _casia(root: Path) -> dict[str, str]:
    """Fold-1 style protocol files (Windows paths, CRLF) over s1/<domain>/<identity>/*.bmp;
    each image a uniform grey whose value encodes domain, identity and image."""
    listings = {
        "nir_train": [("NIR", "10001", 1), ("NIR", "10001", 2), ("NIR", "10002", 1)],
        "vis_train": [("VIS", "10001", 1), ("VIS", "10002", 1)],
        "nir_probe": [("NIR", "10003", 1)],
        "vis_gallery": [("VIS", "10003", 1)],
    }
    protocols = {}
    for key, entries in listings.items():
        lines = []
        for domain, identity, k in entries:
            grey = (100 if domain == "NIR" else 0) + 10 * (int(identity) - 10000) + k
            _png(root / "s1" / domain / identity / f"{k:03d}.bmp", Image.new("L", (20, 20), grey))
            lines.append(f"s1\\{domain}\\{identity}\\{k:03d}.bmp")
        (root / "protocols").mkdir(exist_ok=True)
        (root / "protocols" / f"{key}_1.txt").write_bytes("\r\n".join(lines).encode() + b"\r\n")
        protocols[key] = f"protocols/{key}_1.txt"
    return protocols


def test_read_casia_reads_windows_protocols_with_identities(tmp_path):
    protocols = _casia(tmp_path)
    data = read_casia(tmp_path, protocols, 8)
    assert data["nir"].shape == (4, 8, 8, 3) and data["vis"].shape == (3, 8, 8, 3)
    assert data["ids"].tolist() == ["10001", "10001", "10002", "10003"]
    assert data["vis_ids"].tolist() == ["10001", "10002", "10003"]
    assert data["nir"][:, 0, 0, 0].tolist() == [111, 112, 121, 131]  # each line's own image
    assert data["vis"][:, 4, 4].tolist() == [[11] * 3, [21] * 3, [31] * 3]
    assert data["nir_train"].tolist() == [True, True, True, False]
    assert data["nir_probe"].tolist() == [False, False, False, True]
    assert data["vis_train"].tolist() == [True, True, False]
    assert data["vis_gallery"].tolist() == [False, False, True]
    dataset = {"format": "casia_nir_vis", "path": str(tmp_path), "protocols": protocols,
               "resolution": 8}  # fmt: skip
    summary = prepare_remix_data("casia", dataset, tmp_path / "c.npz")
    assert not summary["procedural"] and summary["vis_ids"] == [3]
    (tmp_path / "s1/VIS/10002/001.bmp").unlink()
    with pytest.raises(DataError, match=re.escape("s1\\VIS\\10002\\001.bmp")):
        read_casia(tmp_path, protocols, 8)


# -- the mixing plan ----------------------------------------------------------------------------


def test_mixing_plan_takes_remix_own_probability_and_the_options_for_the_baselines():
    options = {"mix_probability": 0.1}
    remix = MixPlan.of([{"kind": "diffaug"}, {"kind": "remix", "probability": 0.5,
                                              "alpha": 0.4, "momentum": 0.9}], options)  # fmt: skip
    assert remix == MixPlan("remix", 0.4, 0.5, 0.9)
    assert MixPlan.of([{"kind": "remix"}], options).probability == 0.25  # ReMix §4.1
    mixup = MixPlan.of([{"kind": "mixup", "probability": 0.9}], options)
    assert (mixup.kind, mixup.probability) == ("mixup", 0.1)
    assert MixPlan.of([{"kind": "weighted_mixup"}], options) == MixPlan("wm", 0.2, 0.1)
    assert MixPlan.of([], options).kind is None
    with pytest.raises(ValueError, match="at most one"):
        MixPlan.of([{"kind": "remix"}, {"kind": "mixup"}], options)


# -- SPADE's step on a mixed batch ----------------------------------------------------------------


def _spade_trainer(prepared, kind: str | None) -> SPADETrainer:
    _, data = prepared["label_maps"]
    options = track_options({"arch": "spade", "options": TINY_SPADE})
    torch.manual_seed(0)
    index = np.flatnonzero(data["train"])
    return SPADETrainer(data, index, options, 32, kind, stand_in_vgg(0), torch.device("cpu"))


@pytest.fixture
def spade_calls(monkeypatch) -> dict[str, list]:
    """The targets of the VGG losses and the inputs of the discriminator, recorded."""
    calls: dict[str, list] = {"vgg": [], "relative": [], "feat": []}
    vgg, relative, feat = (spade_train.vgg_loss, spade_train.relative_vgg_loss,
                           spade_train.feature_matching_loss)  # fmt: skip

    def vgg_loss(net, fake, real, weight):
        calls["vgg"].append(real.detach().clone())
        return vgg(net, fake, real, weight)

    def relative_vgg_loss(net, rel, fake, t1, t2, weight):
        calls["relative"].append((t1.clone(), t2.clone()))
        return relative(net, rel, fake, t1, t2, weight)

    def feature_matching_loss(fake, real, weight):
        calls["feat"].append(real)
        return feat(fake, real, weight)

    monkeypatch.setattr(spade_train, "vgg_loss", vgg_loss)
    monkeypatch.setattr(spade_train, "relative_vgg_loss", relative_vgg_loss)
    monkeypatch.setattr(spade_train, "feature_matching_loss", feature_matching_loss)
    return calls


def _record_d_inputs(trainer: SPADETrainer) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    trainer.discriminator.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0].detach().clone())
    )
    return inputs


FIRST, SECOND = torch.tensor([0, 1]), torch.tensor([2, 3])


@pytest.mark.parametrize(("kind", "lam", "heavier"), [("mixup", 0.75, None), ("wm", 0.75, 1),
                                                      ("wm", 0.25, 2)])  # fmt: skip
def test_spade_baselines_use_the_mixed_target_wherever_spade_uses_the_photo(
    prepared, spade_calls, kind, lam, heavier
):
    trainer = _spade_trainer(prepared, kind)
    x1, t1 = trainer.batch(FIRST)
    x2, t2 = trainer.batch(SECOND)
    mixed_x = 0.75 * x1 + 0.25 * x2 if lam == 0.75 else 0.25 * x1 + 0.75 * x2
    target = {None: 0.75 * t1 + 0.25 * t2, 1: t1, 2: t2}[heavier]
    assert not torch.allclose(t1, t2)
    inputs = _record_d_inputs(trainer)
    stats = trainer.train_step(FIRST, SECOND, lam)
    assert set(stats) == {"G/GAN", "G/GAN_Feat", "G/VGG", "D/D_Fake", "D/D_real"}
    (vgg_target,) = spade_calls["vgg"]
    assert torch.allclose(vgg_target, target, atol=1e-6)
    assert len(spade_calls["feat"]) == 1 and not spade_calls["relative"]
    # D: (x', G(x')) and the real pair (x', t') for feature matching, then again for D's step
    assert len(inputs) == 4
    for real in (inputs[1], inputs[3]):
        assert torch.allclose(real, torch.cat([mixed_x, target], 1), atol=1e-6)
    assert torch.allclose(inputs[0][:, :5], mixed_x, atol=1e-6)


def test_spade_remix_step_has_a_relative_vgg_term_and_no_feature_matching(prepared, spade_calls):
    trainer = _spade_trainer(prepared, "remix")
    x1, t1 = trainer.batch(FIRST)
    x2, t2 = trainer.batch(SECOND)
    inputs = _record_d_inputs(trainer)
    stats = trainer.train_step(FIRST, SECOND, 0.75)
    assert set(stats) == {"G/GAN", "G/VGG", "D/D_Fake", "D/D_real"}
    assert not spade_calls["vgg"] and not spade_calls["feat"]
    ((r1, r2),) = spade_calls["relative"]
    assert torch.equal(r1, t1) and torch.equal(r2, t2)
    assert trainer.relative.a_bar.item() > 0  # ā moved from 0 (Eq. 10-11)
    # G sees x'; D's real pair is the unmixed (x¹, t¹)
    assert len(inputs) == 3
    assert torch.allclose(inputs[0][:, :5], 0.75 * x1 + 0.25 * x2, atol=1e-6)
    assert torch.equal(inputs[2], torch.cat([x1, t1], 1))


def test_spade_step_without_a_second_batch_is_plain_spade(prepared, spade_calls):
    trainer = _spade_trainer(prepared, "remix")
    _, t1 = trainer.batch(FIRST)
    stats = trainer.train_step(FIRST, None, 1.0)
    assert set(stats) == {"G/GAN", "G/GAN_Feat", "G/VGG", "D/D_Fake", "D/D_real"}
    assert torch.equal(spade_calls["vgg"][0], t1) and not spade_calls["relative"]
    assert trainer.relative.a_bar.item() == 0.0 and trainer.step == 1


# -- the NIR-VIS content loss on fixed tensors ----------------------------------------------


class _FixedDecoder(nn.Module):
    """G(e) = a fixed image per sample (plus a zero parameter); records its input."""

    def __init__(self, fake: torch.Tensor):
        super().__init__()
        self.fake, self.bias, self.inputs = fake, nn.Parameter(torch.zeros(())), []

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        self.inputs.append(e.clone())
        return self.fake + self.bias


class _ZeroCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x.flatten(1).mean(1)


def _nirvis_trainer(kind: str | None) -> NIRVISTrainer:
    # 1x1 VIS images: 255 -> t = +1, 0 -> t = -1; NIR item i pairs with VIS image i only
    vis = np.array([255, 0, 255, 0], np.uint8)[:, None, None, None].repeat(3, -1)
    candidates = np.empty(4, dtype=object)
    candidates[:] = [[0], [1], [2], [3]]
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    options = track_options(
        {"arch": "lightcnn_stylegan2", "options": {**TINY_NIRVIS, "z_dim": 2, "r1_gamma": 0.0}}
    )
    trainer = NIRVISTrainer(
        {"vis": vis}, features, candidates, options, 8, kind, torch.device("cpu"), 0
    )
    trainer.generator = _FixedDecoder(
        torch.tensor([0.5, 0.0])[:, None, None, None].expand(2, 3, 1, 1)
    )
    trainer.discriminator = _ZeroCritic()
    return trainer


# first = items 0, 1: t1 = [+1, -1]; second = items 3, 2: t2 = [-1, +1]; G(e') = [0.5, 0.0]
PAIR, SWAPPED = torch.tensor([0, 1]), torch.tensor([3, 2])


@pytest.mark.parametrize(
    ("kind", "lam", "expected"),
    [
        (None, 1.0, 7.5),  # 10 * mean(|0.5 - 1|, |0 + 1|) = 10 * 0.75
        ("mixup", 0.75, 2.5),  # t' = [0.5, -0.5]: 10 * mean(0, 0.5)
        ("wm", 0.75, 7.5),  # λ >= 0.5: t¹
        ("wm", 0.25, 12.5),  # λ < 0.5: t² = [-1, 1]: 10 * mean(1.5, 1.0)
        # d1 = [0.5, 1.0], d2 = [1.5, 1.0]: L_p = mean(max(0, d1 - d2)) = 0,
        # L_n = mean(max(0, d2 - ā)) = 1.25 with ā = 0
        ("remix", 0.75, 12.5),
    ],
)
def test_nirvis_content_loss_targets_hand_computed(kind, lam, expected):
    trainer = _nirvis_trainer(kind)
    second = None if kind is None else SWAPPED
    stats = trainer.train_step(PAIR, second, lam)
    assert stats["G/L1"] == pytest.approx(expected)
    (e,) = trainer.generator.inputs
    if second is None:
        assert torch.equal(e, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    else:  # the encoder features are interpolated: λ e¹ + (1 - λ) e²
        e_mixed = lam * torch.tensor([[1.0, 0.0], [0.0, 1.0]]) + (1 - lam) * torch.tensor(
            [[4.0, 4.0], [2.0, 2.0]]
        )
        assert torch.allclose(e, e_mixed)


def test_nirvis_remix_relative_loss_with_a_margin_and_its_update():
    trainer = _nirvis_trainer("remix")
    trainer.train_step(PAIR, SWAPPED, 0.75)
    # a = mean |G(e')_i - t²_j|, j = the other item: |0.5 - 1|, |0 + 1| -> 0.75;
    # Eq. 11 as printed: ā = 0.99 * 0 + 0.01 * (0.75 - 0)
    assert trainer.relative.a_bar.item() == pytest.approx(0.0075)
    # ā = 1.2: L_n = mean(max(0, [1.5, 1.0] - 1.2)) = 0.15, L_p = 0
    trainer.relative.a_bar.fill_(1.2)
    assert trainer.train_step(PAIR, SWAPPED, 0.75)["G/L1"] == pytest.approx(1.5)
    # targets swapped: d1 = [1.5, 1.0], d2 = [0.5, 1.0]: L_p = mean(1.0, 0) = 0.5;
    # ā = 0.6: L_n = mean(max(0, [-0.1, 0.4])) = 0.2 -> 10 * 0.7
    trainer.relative.a_bar.fill_(0.6)
    assert trainer.train_step(SWAPPED, PAIR, 0.75)["G/L1"] == pytest.approx(7.0)


# -- resumable runs -----------------------------------------------------------------------------


def _train_spec(arch: str) -> dict:
    options, resolution = (TINY_SPADE, 32) if arch == "spade" else (TINY_NIRVIS, 16)
    return {
        "run": f"d/full/{arch}/remix/seed0", "seed": 0, "device": "cpu",
        "resolution": resolution, "subset": "full",
        "backbone": {"name": arch, "arch": arch, "task": "paired_image_to_image",
                     "options": options},
        "method": {"name": "remix", "parts": [{"name": "remix", "kind": "remix",
                                               "probability": 1.0}]},
        "size": None, "weights": STANDINS, "stand_in_data": True,
    }  # fmt: skip


@pytest.mark.parametrize("arch", ["spade", "lightcnn_stylegan2"])
def test_a_resumed_run_equals_an_uninterrupted_one(prepared, tmp_path, monkeypatch, arch):
    data = prepared["label_maps" if arch == "spade" else "nir_vis"][1]
    log, cpu = logging.getLogger("test"), torch.device("cpu")
    spec = _train_spec(arch)
    whole, summary = train_run(spec, data, tmp_path / "a", cpu, log)
    assert summary["steps"] == 6 and summary["mixed_steps"] == 6  # probability 1: every step
    assert whole["labels"] == [registry.STAND_IN_FEATURES]
    # the same run, whose last checkpoint (step 6) is lost: it resumes from step 4
    train_run(spec, data, tmp_path / "b", cpu, log)
    checkpoints = tmp_path / "b" / "train" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == [
        "ckpt-000000004.pt", "ckpt-000000006.pt"
    ]  # fmt: skip
    (checkpoints / "ckpt-000000006.pt").unlink()
    (checkpoints / "ckpt-000000006.pt.sha256").unlink()
    trainer = SPADETrainer if arch == "spade" else NIRVISTrainer
    steps = []
    original = trainer.train_step

    def counted(self, *args):
        steps.append(self.step)
        return original(self, *args)

    monkeypatch.setattr(trainer, "train_step", counted)
    resumed, again = train_run(spec, data, tmp_path / "b", cpu, log)
    assert steps == [4, 5] and again["steps"] == 6 and again["mixed_steps"] == 6
    assert whole["state"].keys() == resumed["state"].keys()
    for key, value in whole["state"].items():
        assert torch.equal(value, resumed["state"][key]), key
    # the discriminator and ReMix's margin ā too (the last checkpoints)
    last = [torch.load(tmp_path / run / "train" / "checkpoints" / "ckpt-000000006.pt",
                       weights_only=False)["trainer"] for run in ("a", "b")]  # fmt: skip
    assert last[0]["relative"]["a_bar"] > 0
    for net in ("D", "relative"):
        for key, value in last[0][net].items():
            assert torch.equal(value, last[1][net][key]), (net, key)


# -- config checks, table records, the paper config -----------------------------------------------


def _casia_config(root: Path) -> dict:
    (root / "protocols").mkdir(parents=True)
    for key in ("nir_train", "vis_train", "nir_probe"):  # vis_gallery's file is missing
        (root / "protocols" / f"{key}_1.txt").write_text("s1\\NIR\\10001\\001.bmp\n")
    protocols = {k: f"protocols/{k}_1.txt"
                 for k in ("nir_train", "vis_train", "nir_probe", "vis_gallery")}  # fmt: skip
    return {
        "study": "t", "seeds": [0], "methods": {"none": [], "remix": ["remix"]},
        "parts": {"remix": {"kind": "remix"}},
        "weights": {"allow_standins": False,
                    "pretrained": {"lightcnn29v2": str(root / "missing.pth.tar")}},
        "datasets": {"casia": {"format": "casia_nir_vis", "path": str(root), "resolution": 16,
                               "protocols": protocols}},
        "backbones": {"ls": {"arch": "lightcnn_stylegan2", "task": "paired_image_to_image"}},
        "tables": {"remix_table2": {
            "paper": "remix", "title": "t",
            "defaults": {"dataset": "casia", "subset": "full", "backbone": "ls"},
            "rows": [{"method": "none"}, {"method": "remix"}], "columns": [{"label": "fold 1"}],
            "metrics": ["rank1", "vr_far_1"]}},
    }  # fmt: skip


def test_missing_protocol_and_checkpoint_are_config_errors_before_any_job(tmp_path):
    config = _casia_config(tmp_path / "casia")
    with pytest.raises(ConfigError) as error:
        Study(validate_config(config))
    problems = str(error.value)
    gallery = tmp_path / "casia" / "protocols" / "vis_gallery_1.txt"
    assert f"datasets.casia.protocols.vis_gallery: {gallery} does not exist" in problems
    assert "weights.pretrained.lightcnn29v2: " in problems and "missing.pth.tar" in problems
    assert "protocols.nir_train" not in problems  # the files that exist are not named
    config["backbones"]["ls"]["options"] = {"z_dimension": 256}
    with pytest.raises(
        ConfigError, match=r"backbones\.ls\.options: unknown option\(s\) z_dimension"
    ):
        Study(validate_config(config))
    # all fixed: the protocol file written, labelled stand-ins allowed, options known
    gallery.write_text("s1\\VIS\\10001\\001.bmp\n")
    config["weights"] = {"allow_standins": True, "pretrained": {}}
    config["backbones"]["ls"]["options"] = {"z_dim": 256}
    Study(validate_config(config))


def test_table_records_keep_labels_and_skip_pending_cells_and_missing_runs():
    cells = [
        {"metric": "miou", "reference": "none", "variant": "", "pending": None,
         "runs": ["evaluation/remix_table3/seed0"]},
        {"metric": "miou", "reference": "full", "pending": None, "runs": ["a/seed0", "a/seed1"]},
        {"metric": "fid", "reference": "full", "variant": "", "pending": "needs Inception",
         "runs": ["a/seed0"]},
        {"metric": "pixel_accuracy", "reference": "full", "variant": "", "pending": None,
         "runs": ["missing/seed0", "a/seed0"]},
    ]  # fmt: skip
    stand_in = [registry.STAND_IN_FEATURES]
    results = {
        "evaluation/remix_table3/seed0": {"miou": 0.5, "num_samples": 12, "labels": stand_in},
        "a/seed0": {"miou": 0.25, "fid": 3.0, "pixel_accuracy": 0.75, "num_samples": 12,
                    "labels": ["x"]},
        "a/seed1": {"miou": 0.125, "num_samples": 12, "labels": []},  # no pixel accuracy
    }  # fmt: skip
    records = table_records({"cells": cells}, results)
    assert records == {
        ("evaluation/remix_table3/seed0", "miou", "none", ""): {
            "run": "evaluation/remix_table3/seed0", "metric": "miou", "value": 0.5,
            "num_samples": 12, "labels": stand_in},
        ("a/seed0", "miou", "full", ""): {"run": "a/seed0", "metric": "miou", "value": 0.25,
                                          "num_samples": 12, "labels": ["x"]},
        ("a/seed1", "miou", "full", ""): {"run": "a/seed1", "metric": "miou", "value": 0.125,
                                          "num_samples": 12, "labels": []},
        ("a/seed0", "pixel_accuracy", "full", ""): {
            "run": "a/seed0", "metric": "pixel_accuracy", "value": 0.75, "num_samples": 12,
            "labels": ["x"]},
    }  # fmt: skip


def test_paper_config_counts_the_remix_table_runs_as_runnable():
    study = Study(load_config_file(REPO / "config" / "config.yaml"), check_paths=False)
    expected = {"remix_table2": (12, {"full"}), "remix_table3": (24, {"full", "10pct"})}
    for table, (count, subsets) in expected.items():
        layout = study.layouts[table]
        runs = {run for cell in layout.cells for run in cell.runs}
        assert len(runs) == count and not layout.pending_cells
        assert all(study.runs[run] is None for run in runs)
        assert {run.method for run in runs} == {"none", "weighted_mixup", "mixup", "remix"}
        assert {run.seed for run in runs} == {0, 1, 2}
        assert {run.subset for run in runs} == subsets
    remix = next(r for r in study.runs if r.backbone == "spade" and r.method == "remix")
    spec = study.run_spec(remix)
    options = track_options(spec["backbone"])
    assert MixPlan.of(spec["method"]["parts"], options) == MixPlan("remix", 0.2, 0.25, 0.99)
