"""The class-conditional track: labels through the parts and the augmented set, BigGAN's
training step in the GAN loop (resume, outputs, sampling), and its config rules."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mixgan.augment.mixing import cutmix, mixup, partners
from mixgan.augment.scoremix import draw_pairs, make_augmented_set
from mixgan.data.imagezip import write_image_zip
from mixgan.errors import ConfigError
from mixgan.nets.biggan import Generator
from mixgan.sample import generate_images, load_generator, truncated_normal
from mixgan.study import RunKey, Study
from mixgan.train.augment_parts import BatchMixing, ScoreMixStatic
from mixgan.train.biggan import BigGANTrainer, ema_update, read_subset_labels
from mixgan.train.loop import make_trainer, train_gan
from mixgan.train.paths import TrainPaths

from .conftest import final_generator, same_tensors, train_whole_and_split

LOG = logging.getLogger("test")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(data32):
    return data32


def biggan_config(minimal_config, **backbone):
    config = copy.deepcopy(minimal_config)
    config["datasets"]["shapes"]["resolution"] = 32
    config["backbones"]["bg"] = {
        "arch": "biggan", "task": "class_conditional", "ch": 4, "z_dim": 12, "shared_dim": 8,
        "attention": [16], "ema_start": 8,  # resumed at step 6: the EMA starts after it
        "train": {
            "batch": 4, "kimg": 0.048, "eval_every_kimg": 1, "checkpoint_every_kimg": 0.024,
            "log_every_kimg": 0.008, "ema_kimg": 0.01,
        },
        **backbone,
    }  # fmt: skip
    config["parts"].update(
        diffaug={"kind": "diffaug"},
        mixup={"kind": "mixup"},
        cutmix={"kind": "cutmix"},
        ada={"kind": "ada", "interval": 1, "speed_kimg": 0.05},
        lecam={"kind": "lecam", "weight": 0.3},
        classwise={"kind": "scoremix", "scorenet": "tiny", "mu": 1, "pairs": "same_class"},
    )
    config["methods"].update(
        table4=["diffaug", "mixup", "cutmix", "ada", "lecam"],
        classwise=["diffaug", "classwise"],
    )
    rows = config["tables"]["scoremix_table1"]["rows"]
    rows += [{"backbone": "bg", "method": m} for m in ("none", "table4", "classwise")]
    return config


def biggan_spec(config, method="none"):
    return Study(config).run_spec(RunKey("shapes", "n12", "bg", method, 0))


def paths(data, run_dir, **extra):
    return TrainPaths(
        data / "p.zip", data / "n12.json", run_dir, run_dir / "network.pt", run_dir / "curve.csv",
        **extra,
    )  # fmt: skip


# -- labels through the mixing ----------------------------------------------------------------


def test_partners_keep_the_class_and_differ_where_they_can():
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 1, 1])
    for _ in range(20):
        partner = partners(len(labels), labels)
        assert torch.equal(labels[partner], labels)
        lonely = labels == 2  # class 2 has one member: it pairs with itself
        assert torch.equal(partner[lonely], torch.nonzero(lonely).flatten())
        assert (partner[~lonely] != torch.arange(8)[~lonely]).all()
    assert (partners(8) != torch.arange(8)).all()


def test_batch_mixing_of_a_conditional_batch_mixes_only_within_classes():
    """Images of one class share one colour; after mixup and CutMix each image still has its
    class's colour, so D's label stays true."""
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    colours = torch.tensor([-0.8, 0.1, 0.7])
    images = colours[labels].view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()
    for mix in (mixup, cutmix):
        mixed = BatchMixing("mix", {"alpha": 1.0}, mix).augment_d_input(images, labels)
        assert torch.allclose(mixed, images)
    # without labels the classes mix (the unconditional behaviour)
    mixed = BatchMixing("mixup", {"alpha": 1.0}, mixup).augment_d_input(images)
    assert not torch.allclose(mixed, images)


def test_same_class_pairs_are_within_a_class_and_prefixes_of_longer_draws():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1])
    short = draw_pairs(9, 40, torch.Generator().manual_seed(3), labels)
    long = draw_pairs(9, 400, torch.Generator().manual_seed(3), labels)
    assert torch.equal(long[:40], short)
    assert torch.equal(labels[long[:, 0]], labels[long[:, 1]])
    assert (long[:, 0] != long[:, 1]).all()
    assert set(long[:, 0].tolist()) == set(range(9))  # every image is drawn first
    with pytest.raises(ValueError, match="class 3 has one"):
        draw_pairs(4, 5, torch.Generator(), torch.tensor([0, 0, 3, 0]))


def test_a_same_class_augmented_set_records_each_image_class():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    part = {"mu": 3, "alpha": 0.2, "seed": 0, "pairs": "same_class"}
    augmented, record = make_augmented_set(images, mixup, part, labels=labels)
    pairs = torch.tensor(record["pairs"])
    assert augmented.shape == (18, 8, 8, 3)
    assert record["labels"] == labels[pairs[:, 0]].tolist() == labels[pairs[:, 1]].tolist()
    assert (
        make_augmented_set(images, mixup, {**part, "pairs": "any"}, labels=labels)[1]["labels"]
        is None
    )
    with pytest.raises(ValueError, match="needs the subset's class labels"):
        make_augmented_set(images, mixup, part)


def write_augmented_set(data: Path, folder: Path, pairs: str) -> Path:
    """A static augmented set of the n12 subset (mixup instead of a score network)."""
    from mixgan.data.imagezip import read_image_zip, to_tensor

    manifest = json.loads((data / "n12.json").read_text())
    images = to_tensor(read_image_zip(data / "p.zip", [i["name"] for i in manifest["images"]]))
    part = {"mu": 1, "alpha": 0.2, "seed": 0, "pairs": pairs}
    augmented, record = make_augmented_set(
        images, mixup, part, labels=read_subset_labels(data / "n12.json")
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_image_zip(folder / "augmented.zip", augmented)
    (folder / "augmented.json").write_text(json.dumps(record))
    return folder / "augmented.zip"


def test_static_scoremix_labels_its_images_or_names_the_setting(data, tmp_path):
    zip_path = write_augmented_set(data, tmp_path / "classwise", "same_class")
    record = json.loads((tmp_path / "classwise" / "augmented.json").read_text())
    part = ScoreMixStatic("classwise", {"mu": 1}, zip_path)
    assert part.extra_real_labels().tolist() == record["labels"]
    zip_any = write_augmented_set(data, tmp_path / "any", "any")
    with pytest.raises(ValueError, match=r"parts\.mixed\.pairs: same_class"):
        ScoreMixStatic("mixed", {"mu": 1}, zip_any).extra_real_labels()


# -- training -----------------------------------------------------------------------------


def test_biggan_trains_with_the_table4_parts_and_resumes_exactly(minimal_config, data, tmp_path):
    spec = biggan_spec(biggan_config(minimal_config), "table4")
    assert spec["backbone"]["train"]["betas"] == [0.0, 0.999]  # the arch's own defaults
    whole, resumed = train_whole_and_split(spec, 0.024, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 12
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert curve[["loss_g", "loss_d", "ada_p", "lecam_anchor_real"]].notna().all().all()
    assert curve[["r1", "pl"]].isna().all().all()  # BigGAN has neither
    columns = ["loss_g", "loss_d", "ada_p"]
    split_curve = pd.read_csv(tmp_path / "split" / "curve.csv")
    pd.testing.assert_frame_equal(curve[columns], split_curve[columns])


def test_g_ema_copies_g_before_ema_start_then_averages_its_whole_state_dict(
    minimal_config, data, tmp_path
):
    spec = biggan_spec(biggan_config(minimal_config, ema_start=3))
    trainer = make_trainer(spec, paths(data, tmp_path), LOG)
    decay = 0.5 ** (4 / 10)  # batch 4, ema_kimg 0.01
    for iteration in range(1, 6):  # BigGAN-PyTorch's itr: 1, 2, ... (decay 0 while itr < 3)
        before = {key: value.clone() for key, value in trainer.G_ema.state_dict().items()}
        trainer.train_step()
        g, ema = trainer.G.state_dict(), trainer.G_ema.state_dict()
        for key, value in ema.items():
            if iteration < 3 or not value.is_floating_point():
                assert torch.equal(value, g[key]), (iteration, key)
            else:
                torch.testing.assert_close(value, decay * before[key] + (1 - decay) * g[key])
    stats = "blocks.0.bn1.bn.running_mean"  # BatchNorm statistics are averaged too
    assert not torch.allclose(trainer.G_ema.state_dict()[stats], trainer.G.state_dict()[stats])


def test_ema_update_is_the_whole_state_dict_lerp_and_a_copy_at_decay_zero():
    torch.manual_seed(0)
    source, target = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    source(torch.randn(4, 3, 2, 2))  # running statistics and the batch counter move
    source.weight.data.fill_(2.0)
    ema_update(target, source, 0.75)
    assert torch.allclose(target.weight, torch.full((3,), 1.25))  # 0.75 x 1 + 0.25 x 2
    assert torch.allclose(target.running_mean, 0.25 * source.running_mean)
    assert torch.allclose(target.running_var, 0.75 + 0.25 * source.running_var)
    assert target.num_batches_tracked == source.num_batches_tracked == 1
    ema_update(target, source, 0.0)
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key])


def test_d_steps_count_the_real_images_d_sees(minimal_config, data, tmp_path):
    spec = biggan_spec(biggan_config(minimal_config, d_steps=2))
    summary = train_gan(spec, paths(data, tmp_path), LOG)
    assert summary["steps"] == 6 and summary["kimg_trained"] == pytest.approx(0.048)


def test_the_real_pool_carries_the_subset_and_augmented_classes(minimal_config, data, tmp_path):
    zip_path = write_augmented_set(data, tmp_path / "aug", "same_class")
    spec = biggan_spec(biggan_config(minimal_config), "classwise")
    trainer = make_trainer(spec, paths(data, tmp_path / "run", augmented_zip=zip_path), LOG)
    assert isinstance(trainer, BigGANTrainer)
    record = json.loads((tmp_path / "aug" / "augmented.json").read_text())
    subset = read_subset_labels(data / "n12.json")
    assert trainer.pool_labels.tolist() == subset.tolist() + record["labels"]
    assert len(trainer.pool) == 24 and trainer.num_classes == 3
    images, labels = trainer.labelled_real_batch(64)
    # each drawn image is the pool image of its label's index: compare by content
    pool = trainer.pool.float() / 127.5 - 1
    for image, label in zip(images[:8], labels[:8], strict=True):
        index = int(((pool - image).abs().flatten(1).amax(1)).argmin())
        assert trainer.pool_labels[index] == label
    trainer.train_step()  # ScoreMix images enter D with their classes


def test_network_pt_samples_every_class_in_turn_with_truncation(minimal_config, data, tmp_path):
    spec = biggan_spec(biggan_config(minimal_config, truncation=0.5))
    train_gan(spec, paths(data, tmp_path), LOG)
    generator, meta = load_generator(tmp_path / "network.pt", torch.device("cpu"))
    assert isinstance(generator, Generator) and generator.num_classes == 3
    first = generate_images(generator, 7, seed=1, truncation=0.5)
    assert first.shape == (7, 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, generate_images(generator, 7, seed=1, truncation=0.5))
    assert not np.array_equal(first, generate_images(generator, 7, seed=1))


def test_truncated_latents_lie_within_the_threshold_and_keep_their_seed():
    torch.manual_seed(0)
    z = truncated_normal(500, 16, 0.5, torch.device("cpu"))
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # uniform-ish on [-0.5, 0.5]: std 0.28
    torch.manual_seed(0)
    assert torch.equal(z, truncated_normal(500, 16, 0.5, torch.device("cpu")))
    torch.manual_seed(0)
    untruncated = truncated_normal(4, 3, None, torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(untruncated, torch.randn(4, 3))


# -- config rules ---------------------------------------------------------------------------


def test_conditional_runs_need_labels_a_biggan_resolution_and_classwise_scoremix(minimal_config):
    config = biggan_config(minimal_config)
    config["methods"]["mixed"] = ["scoremix"]  # mu 1, pairs any
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "bg", "method": "mixed"})
    config["datasets"]["shapes"]["resolution"] = 16
    with pytest.raises(ConfigError) as error:
        Study(config)
    text = str(error.value)
    assert (
        "datasets.shapes.resolution: 16, but BigGAN (backbone bg) builds 32, 64, 128, 256" in text
    )
    assert "parts.scoremix.pairs: 'any', but the class-conditional run" in text

    config = biggan_config(minimal_config)
    config["datasets"]["faces"] = {"path": "/nowhere", "resolution": 32}
    config["tables"]["scoremix_table1"]["rows"].append(
        {"dataset": "faces", "subset": "full", "backbone": "bg", "method": "none"}
    )
    with pytest.raises(ConfigError, match="task class_conditional needs labels on dataset 'faces'"):
        Study(config, check_paths=False)


def test_parts_biggan_does_not_run_leave_its_runs_pending(minimal_config):
    config = biggan_config(minimal_config)
    config["parts"]["mixdl"] = {"kind": "mixdl"}
    config["methods"]["mixdl"] = ["mixdl"]
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "bg", "method": "mixdl"})
    study = Study(config)
    assert study.runs[RunKey("shapes", "n12", "bg", "mixdl", 0)] == (
        "part kind 'mixdl' is not implemented for arch 'biggan' yet"
    )
    assert study.runs[RunKey("shapes", "n12", "bg", "table4", 0)] is None
