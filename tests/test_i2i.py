"""The StarGAN v2 translation track: ReMix / mixup / WM losses, the loop, its data and study."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mixgan import registry
from mixgan.data.prepare import prepare_dataset
from mixgan.data.subsets import make_subset_manifest
from mixgan.errors import ConfigError, DataError
from mixgan.i2i_settings import stargan2_options
from mixgan.io import write_json
from mixgan.train.i2i import train_i2i
from mixgan.train.i2i_parts import KINDS, StyleMixing, TranslationParts, style_distance
from mixgan.train.part_api import PartInputs
from mixgan.train.paths import TrainPaths

from .conftest import REPO

TINY_OPTIONS = {
    "latent_dim": 4, "style_dim": 8, "max_conv_dim": 16, "hidden_dim": 16, "base_dim": 8,
    "total_iters": 4, "ds_iter": 4, "batch": 4, "checkpoint_every": 2, "log_every": 1,
    "num_outs": 2, "eval_batch": 4, "eval_sources": 4, "grid_sources": 2,
}  # fmt: skip


def _mixing(kind: str, lam: float | None) -> StyleMixing:
    part = StyleMixing("m", {}, kind, 1.0)
    part.lam = lam
    return part


# -- losses on fixed inputs ------------------------------------------------------------------

PRED = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
S1 = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
S2 = torch.tensor([[3.0, 2.0], [1.0, 1.0]])


def test_style_distance_is_the_per_sample_mean_absolute_difference():
    assert style_distance(PRED, S1).tolist() == [0.5, 1.0]
    assert style_distance(PRED, S2).tolist() == [1.0, 1.0]


def test_mixup_target_is_linear_and_wm_takes_the_heavier_sample():
    # mixup (Eq. 12): t' = 0.75 s1 + 0.25 s2 = [[1.5, 1.25], [0.25, 1.75]]
    # |pred - t'| means: [(0.5 + 0.75) / 2, (0.25 + 1.75) / 2] = [0.625, 1.0] -> 0.8125
    assert _mixing("mixup", 0.75).style_loss(PRED, S1, S2).item() == pytest.approx(0.8125)
    # WM (Eq. 13): λ >= 0.5 -> t' = s1: [0.5, 1.0] -> 0.75
    assert _mixing("weighted_mixup", 0.75).style_loss(PRED, S1, S2).item() == pytest.approx(0.75)
    # not mixed this iteration: the official term against s1
    assert _mixing("mixup", None).style_loss(PRED, S1, S2).item() == pytest.approx(0.75)


def test_remix_relative_loss_and_its_running_margin():
    part = _mixing("remix", 0.8)
    # d1 = [0.5, 1.0], d2 = [1.0, 1.0]; L_p = mean(max(0, d1 - d2)) = 0
    # L_n = mean(max(0, d2 - ā)) with ā = 0 -> 1.0
    loss = part.style_loss(PRED, S1, S2)
    assert loss.item() == pytest.approx(1.0)
    # a = mean_i d(pred_i, s2_j), j != i: with two samples j is the other one:
    # d(pred_0, s2_1) = (0 + 1) / 2 = 0.5, d(pred_1, s2_0) = (3 + 2) / 2 = 2.5 -> a = 1.5
    # Eq. 11 as printed: ā <- 0.99 ā + 0.01 (a - ā) = 0.015
    assert part.relative.a_bar.item() == pytest.approx(0.015)
    # with ā = 0.9 and the targets swapped: d1 = [1.0, 1.0], d2 = [0.5, 1.0]
    # L_p = mean([0.5, 0]) = 0.25, L_n = mean(max(0, [0.5, 1.0] - 0.9)) = 0.05
    part.relative.a_bar.fill_(0.9)
    assert part.style_loss(PRED, S2, S1).item() == pytest.approx(0.30)


def test_remix_gradient_pulls_towards_the_heavier_target():
    part = _mixing("remix", 0.8)
    part.relative.a_bar.fill_(10.0)  # L_n = 0: only L_p acts
    pred = torch.tensor([[0.8, 0.8]], requires_grad=True)
    part.style_loss(pred, torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])).backward()
    assert torch.allclose(pred.grad, torch.tensor([[1.0, 1.0]]))  # descent moves it to s1 = 0


def test_mixing_plan_draws_lambda_at_least_a_half_with_its_probability():
    part = StyleMixing("remix", {"probability": 0.25}, "remix", 0.25)
    rng = torch.Generator().manual_seed(0)
    lams = []
    for _ in range(400):
        part.begin_step(rng)
        lams.append(part.lam)
    mixed = [lam for lam in lams if lam is not None]
    assert 70 < len(mixed) < 130 and min(mixed) >= 0.5 and part.mixed_steps == len(mixed)
    style = torch.ones(2, 3)
    part.lam = 0.75
    assert torch.allclose(part.mix(style, 3 * style), 1.5 * style)


def test_translation_parts_cover_the_registry_and_reject_others():
    assert registry.ARCH_PARTS["stargan2"] == KINDS
    with pytest.raises(ValueError, match="mixdl"):
        TranslationParts([{"name": "mixdl", "kind": "mixdl"}], PartInputs(), 0.25)
    parts = TranslationParts(
        [{"name": "diffaug", "kind": "diffaug", "policy": ["translation"]},
         {"name": "remix", "kind": "remix"}],
        PartInputs(), 0.25,
    )  # fmt: skip
    hooks = parts.hooks()
    assert hooks["augment_d"] is not None and hooks["style_mixer"] is not None
    assert hooks["augment_inputs"] is None


# -- data and the loop ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shapes")
    dataset = {
        "format": "procedural", "resolution": 32, "labels": "none", "domains": "labels",
        "procedural": {"count": 24, "classes": 3, "domains": 2, "seed": 0},
    }  # fmt: skip
    prepared = prepare_dataset("shapes", dataset, root / "prepared.zip", root / "prepared.json")
    settings = {"order": "random", "seed": 0, "stratify": "labels", "sizes": {}}
    write_json(root / "full.json", make_subset_manifest(prepared, "full", settings))
    return root / "prepared.zip", root / "full.json"


def _spec(parts: list[dict], options: dict | None = None) -> dict:
    return {
        "run": "shapes/full/stargan2/m/seed0", "seed": 0, "device": "cpu", "resolution": 32,
        "backbone": {"name": "stargan2", "arch": "stargan2", "task": "image_to_image",
                     "options": {**TINY_OPTIONS, **(options or {})}},
        "method": {"name": "m", "parts": parts},
    }  # fmt: skip


def _paths(shapes: tuple[Path, Path], run_dir: Path) -> TrainPaths:
    data, subset = shapes
    return TrainPaths(data, subset, run_dir, run_dir / "network.pt", run_dir / "curve.csv")


REMIX = [{"name": "remix", "kind": "remix", "probability": 0.5},
         {"name": "diffaug", "kind": "diffaug", "policy": ["translation", "cutout"]}]  # fmt: skip


def test_resumed_run_equals_an_uninterrupted_one(shapes, tmp_path):
    log = logging.getLogger("test")
    full = train_i2i(_spec(REMIX), _paths(shapes, tmp_path / "a"), log)
    assert full["steps"] == 4 and full["domains"] == ["disc", "square", "triangle"]
    # the same run, killed after its checkpoint at iteration 2 (the later one lost), resumed
    train_i2i(_spec(REMIX), _paths(shapes, tmp_path / "b"), log)
    for name in ("ckpt-000000004.pt", "ckpt-000000004.pt.sha256", "network.pt"):
        next((tmp_path / "b").rglob(name)).unlink()
    train_i2i(_spec(REMIX), _paths(shapes, tmp_path / "b"), log)
    a = torch.load(tmp_path / "a" / "network.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "network.pt", weights_only=False)
    for net, state in a["nets_ema"].items():
        for key, value in state.items():
            assert torch.equal(value, b["nets_ema"][net][key]), (net, key)
    curve_a = (tmp_path / "a" / "curve.csv").read_text().splitlines()
    curve_b = (tmp_path / "b" / "curve.csv").read_text().splitlines()
    assert [r.split(",")[2:] for r in curve_a] == [r.split(",")[2:] for r in curve_b]


def test_a_dataset_without_domains_is_rejected_naming_it(shapes, tmp_path):
    data, subset = shapes
    prepared = tmp_path / "prepared.zip"
    prepared.write_bytes(data.read_bytes())
    manifest = data.with_suffix(".json").read_text().replace('"class_names": [', '"x": [')
    prepared.with_suffix(".json").write_text(manifest)
    paths = TrainPaths(prepared, subset, tmp_path, tmp_path / "n.pt", tmp_path / "c.csv")
    with pytest.raises(DataError, match=str(prepared)):
        train_i2i(_spec([]), paths, logging.getLogger("test"))


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="backbones.b.options: unknown option"):
        stargan2_options({"options": {"lr_typo": 1}}, "backbones.b.options")


def test_paper_study_counts_the_translation_runs_as_runnable():
    from mixgan.config import load_config_file
    from mixgan.study import Study

    study = Study(load_config_file(REPO / "config" / "config.yaml"), check_paths=False)
    runs = {run: reason for run, reason in study.runs.items() if run.backbone == "stargan2"}
    # Table 5: 9 methods x 2 sizes; ReMix Table 1 adds WM x 2; Table 6 its 4 methods at the
    # 2 other sizes; 3 seeds each
    assert len(runs) == (9 * 2 + 2 + 4 * 2) * 3 and not any(runs.values())
    tables = ("scoremix_table5", "scoremix_table6", "remix_table1")
    fids = [c for t in tables for c in study.layouts[t].cells if c.metric.startswith("fid_")]
    assert fids and not any(cell.pending for cell in fids)
    # LPIPS needs AlexNet weights (or labelled stand-ins), as every LPIPS cell
    lpips = [c for c in study.layouts["remix_table1"].cells if c.metric.startswith("lpips_")]
    assert all("alexnet" in cell.pending for cell in lpips)
    mixdl = {"name": "mixdl", "kind": "mixdl"}
    assert "not implemented for arch 'stargan2'" in registry.part_pending(mixdl, "stargan2")


def _domain_zip(path: Path, folders: dict[str, int]) -> Path:
    import io
    import zipfile

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
    with zipfile.ZipFile(path, "w") as archive:
        for folder, count in folders.items():
            archive.writestr(f"train/{folder}/", b"")
            for index in range(count):
                archive.writestr(f"train/{folder}/{index}.png", buffer.getvalue())
    return path


def test_a_missing_or_empty_domain_folder_is_named_before_any_job(tmp_path):
    from mixgan.config import validate_config
    from mixgan.study import Study

    data = _domain_zip(tmp_path / "afhq.zip", {"cat": 2, "dog": 0, "zebra": 1})
    dataset = {"path": str(data), "subdir": "train", "resolution": 8, "labels": "subfolder",
               "classes": ["cat", "dog", "wild"], "domains": "labels"}  # fmt: skip
    config = {
        "study": "t", "seeds": [0], "methods": {"none": []}, "datasets": {"afhq": dataset},
        "backbones": {"s2": {"arch": "stargan2", "task": "image_to_image",
                             "options": TINY_OPTIONS}},
        "tables": {"scoremix_table5": {"paper": "scoremix", "title": "t",
                                        "defaults": {"dataset": "afhq", "subset": "full",
                                                     "backbone": "s2"},
                                        "rows": [{"method": "none"}],
                                        "metrics": ["fid_latent"]}},
    }  # fmt: skip
    with pytest.raises(ConfigError) as error:
        Study(validate_config(config))
    problems = str(error.value)
    assert f"datasets.afhq.classes: {data}:train/dog: class folder holds no image" in problems
    assert f"datasets.afhq.classes: {data}:train/wild: class folder missing" in problems
    assert f"datasets.afhq.classes: {data}:train/: unexpected class folder(s) zebra" in problems
    with pytest.raises(DataError, match="train/wild: class folder missing"):
        prepare_dataset("afhq", validate_config(config)["datasets"]["afhq"],
                        tmp_path / "p.zip", tmp_path / "p.json")  # fmt: skip
    dataset["labels"] = "none"
    with pytest.raises(ConfigError, match="datasets.afhq.classes: needs labels 'subfolder'"):
        validate_config(config)
