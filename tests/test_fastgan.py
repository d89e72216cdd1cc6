"""FastGAN: the networks' topology and modes, its training step in the GAN loop (resume,
outputs, sampling), and its config rules."""

from __future__ import annotations

import copy
import logging
import math
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
import torch

from mixgan.config import validate_config
from mixgan.data.imagezip import to_numpy
from mixgan.errors import ConfigError
from mixgan.metrics import compute_generator_metric_records
from mixgan.metrics.lpips_distance import load_lpips
from mixgan.metrics.weights import provision_torchvision
from mixgan.nets.fastgan import Discriminator, Generator, quadrant, sle_pairs
from mixgan.sample import generate_images, load_generator
from mixgan.study import RunKey, Study
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.fastgan import (
    FastGANMixDL,
    FastGANTrainer,
    mse_distance,
    reconstruction_loss,
)
from mixgan.train.loop import train_gan
from mixgan.train.paths import TrainPaths

from .conftest import final_generator, same_tensors, train_whole_and_split

LOG = logging.getLogger("test")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(data32):
    return data32


def fastgan_config(minimal_config, **backbone):
    config = copy.deepcopy(minimal_config)
    config["datasets"]["shapes"]["resolution"] = 32
    config["backbones"]["fg"] = {
        "arch": "fastgan", "task": "unconditional", "ngf": 4, "ndf": 4, "z_dim": 16,
        "reconstruction": "mse",
        "train": {
            "batch": 4, "kimg": 0.048, "eval_every_kimg": 1, "checkpoint_every_kimg": 0.024,
            "log_every_kimg": 0.008, "ema_kimg": 0.01,
        },
        **backbone,
    }  # fmt: skip
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "fg", "method": "none"})
    return config


def fastgan_spec(minimal_config, **backbone):
    return Study(fastgan_config(minimal_config, **backbone)).run_spec(
        RunKey("shapes", "n12", "fg", "none", 0)
    )


def paths(data, run_dir, **extra):
    return TrainPaths(
        data / "p.zip", data / "n12.json", run_dir, run_dir / "network.pt", run_dir / "curve.csv",
        **extra,
    )  # fmt: skip


# -- networks -----------------------------------------------------------------------------


def test_networks_at_256_have_the_authors_layout():
    G, D = Generator(z_dim=256, img_resolution=256), Discriminator(img_resolution=256)
    assert sle_pairs(256) == [(4, 64), (8, 128), (16, 256)]
    assert list(G.sle) == ["64", "128", "256"]
    # ngf = 64: 2 x 1024 channels out of the 4x4 transposed conv (GLU halves them), 32 at 256².
    assert G.init[0].weight.shape == (256, 2048, 4, 4)
    assert G.to_image.weight.shape == (3, 32, 3, 3)
    # UpBlockComp (two convs, noise) at 8, 32, 128; UpBlock at 16, 64, 256.
    assert [r for r in G.resolutions if G.blocks[str(r)].comp] == [8, 32, 128]
    z = torch.randn(2, 256)
    images = G(z)
    assert images.shape == (2, 3, 256, 256)
    logits, recs = D(images, part=2)
    # 5x5 patch logits from the 8² big-branch features and from the small branch's 8².
    assert logits.shape == (2, 50)
    assert [r.shape for r in recs] == [(2, 3, 128, 128)] * 3
    assert all(r.abs().max() <= 1 for r in recs)  # the decoders end in tanh


def authors_parameter_counts_at_256(ngf: int = 64, ndf: int = 64, nz: int = 256) -> tuple:
    """G and D parameter counts at 256² from the authors' module list (models.py), written
    out layer by layer; G without its 128² output conv, which this code does not have."""
    g = {r: int(m * ngf) for r, m in {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}.items()}
    d = {
        r: int(m * ndf)
        for r, m in {8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25}.items()
    }

    def up(i, o, comp):  # conv3x3 (+noise) + BN(2o) [+ conv3x3 + noise + BN(2o)]
        return i * 2 * o * 9 + 4 * o + (o * 2 * o * 9 + 4 * o + 2 if comp else 0)

    def se(i, o):
        return i * o * 16 + o * o

    generator = nz * 2 * g[4] * 16 + 4 * g[4]  # transposed conv, BN
    for r, comp in ((8, True), (16, False), (32, True), (64, False), (128, True), (256, False)):
        generator += up(g[r // 2], g[r], comp)
    generator += se(g[4], g[64]) + se(g[8], g[128]) + se(g[16], g[256]) + g[256] * 3 * 9

    def down_comp(i, o):
        return i * o * 16 + 2 * o + o * o * 9 + 2 * o + i * o + 2 * o

    def decoder(i):
        return (
            i * 256 * 9
            + 512
            + 128 * 128 * 9
            + 256
            + 64 * 128 * 9
            + 256
            + 64 * 64 * 9
            + 128
            + 32 * 3 * 9
        )

    chain = [d[512], d[256], d[128], d[64], d[32], d[16]]
    discriminator = 3 * d[512] * 9 + sum(down_comp(a, b) for a, b in pairwise(chain))
    discriminator += d[16] * d[8] + 2 * d[8] + d[8] * 16  # rf_big
    discriminator += se(d[512], d[64]) + se(d[256], d[32]) + se(d[128], d[16])
    small = [d[256], d[128], d[64], d[32]]
    discriminator += 3 * d[256] * 16 + sum(a * b * 16 + 2 * b for a, b in pairwise(small))
    discriminator += d[32] * 16 + decoder(d[16]) + 2 * decoder(d[32])
    return generator, discriminator


def test_parameter_counts_at_256_match_the_authors_layers():
    expected_g, expected_d = authors_parameter_counts_at_256()
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(Generator(z_dim=256, img_resolution=256)) == expected_g == 29_127_654
    assert count(Discriminator(img_resolution=256)) == expected_d


@pytest.mark.parametrize("resolution", [32, 64, 128, 512])
def test_networks_scale_to_every_supported_resolution(resolution):
    G = Generator(z_dim=8, img_resolution=resolution, ngf=8)
    D = Discriminator(img_resolution=resolution, ndf=8)
    images = G(torch.randn(2, 8))
    assert images.shape == (2, 3, resolution, resolution)
    logits, recs = D(images, part=0)
    targets = D.reconstruction_targets(images, 0)
    assert logits.shape[0] == 2 and logits.ndim == 2
    assert [r.shape for r in recs] == [t.shape for t in targets]


@pytest.mark.parametrize("resolution", [16, 48, 2048])
def test_unsupported_resolutions_are_rejected(resolution):
    with pytest.raises(ValueError, match="power-of-two resolution"):
        Generator(img_resolution=resolution)


def test_noise_modes_and_truncation():
    torch.manual_seed(0)
    G = Generator(z_dim=8, img_resolution=32, ngf=2).eval()
    for module in G.modules():
        if hasattr(module, "strength"):
            module.strength.data.fill_(0.5)
    z = torch.randn(2, 8)
    assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.equal(G(z, noise_mode="const"), G(z, noise_mode="none"))
    with pytest.raises(ValueError, match="truncation"):
        G(z, truncation_psi=0.7)


def test_skip_layer_excitation_gates_the_big_map_channelwise_from_the_small_one():
    torch.manual_seed(0)
    G = Generator(z_dim=8, img_resolution=64, ngf=2).eval()  # eval: no power iteration
    sle = G.sle["64"]  # the 4² map gates the 64² one
    small = 0.05 * torch.randn(2, G.init[1].num_features // 2, 4, 4)
    big = torch.randn(2, G.blocks["64"].norm0.num_features // 2, 64, 64)
    gates = sle.gate(small)
    assert gates.shape == (2, big.shape[1], 1, 1)
    assert ((gates > 0) & (gates < 1)).all()
    assert torch.allclose(sle(small, big), big * gates)
    assert not torch.allclose(sle.gate(small * 3), gates)


def test_quadrant_crops_and_reconstruction_targets():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(quadrant(images, 0), images[:, :, :4, :4])
    assert torch.equal(quadrant(images, 1), images[:, :, :4, 4:])
    assert torch.equal(quadrant(images, 2), images[:, :, 4:, :4])
    assert torch.equal(quadrant(images, 3), images[:, :, 4:, 4:])
    D = Discriminator(img_resolution=32, ndf=2)
    big = torch.rand(2, 3, 32, 32)
    whole, part, small = D.reconstruction_targets(big, 3)
    assert torch.equal(whole, big[:, :, ::2, ::2]) and torch.equal(small, whole)
    assert torch.equal(part, big[:, :, 16:, 16:])


def test_the_self_supervised_decoders_learn_to_reconstruct():
    """D trained on the reconstruction loss alone reconstructs a fixed batch better."""
    torch.manual_seed(0)
    D = Discriminator(img_resolution=32, ndf=4)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for step in range(40):
        part = step % 4
        _, recs = D(images, part=part)
        loss = reconstruction_loss(mse_distance, recs, D.reconstruction_targets(images, part))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4])


# -- training -------------------------------------------------------------------------------


def test_fastgan_trains_logs_its_reconstruction_and_resumes_exactly(minimal_config, data, tmp_path):
    spec = fastgan_spec(minimal_config)
    assert spec["backbone"]["train"]["betas"] == [0.5, 0.999]  # the arch's own defaults
    whole = train_gan(spec, paths(data, tmp_path / "whole"), LOG)
    half = copy.deepcopy(spec)
    half["backbone"]["train"]["kimg"] = 0.024
    train_gan(half, paths(data, tmp_path / "split"), LOG)
    resumed = train_gan(spec, paths(data, tmp_path / "split"), LOG)
    assert whole["steps"] == resumed["steps"] == 12
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert curve[["loss_g", "loss_d", "reconstruction"]].notna().all().all()
    assert curve[["r1", "pl"]].isna().all().all()  # FastGAN has neither
    resumed_curve = pd.read_csv(tmp_path / "split" / "curve.csv")
    columns = ["step", "loss_g", "loss_d", "reconstruction", "logits_real", "logits_fake"]
    pd.testing.assert_frame_equal(curve[columns], resumed_curve[columns])


def test_mixdl_on_fastgan_trains_its_projection_logs_finite_distances_and_resumes_exactly(
    minimal_config, data, tmp_path
):
    config = fastgan_config(minimal_config)
    config["parts"]["mixdl"] = {"kind": "mixdl", "projection_dim": 8}
    config["methods"]["mixdl"] = ["mixdl"]
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "fg", "method": "mixdl"})
    study = Study(config)
    run = RunKey("shapes", "n12", "fg", "mixdl", 0)
    assert study.runs[run] is None  # runnable
    whole, resumed = train_whole_and_split(
        study.run_spec(run), 0.024, lambda name: paths(data, tmp_path / name)
    )
    assert whole["steps"] == resumed["steps"] == 12
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    ckpts = [
        torch.load(
            list_checkpoints(tmp_path / name / "train" / "checkpoints")[-1], weights_only=False
        )
        for name in ("whole", "split")
    ]
    projections = [ckpt["parts"]["mixdl"]["modules"]["projection"] for ckpt in ckpts]
    assert same_tensors(*projections)
    # The projection reads D's last map (ndf 4: 32 channels at 4²); D's optimiser trained it.
    weight = projections[0]["parametrizations.weight.original"]
    assert weight.shape == (8, 32 * 4 * 4)
    fresh = FastGANTrainer(study.run_spec(run), paths(data, tmp_path / "fresh"), LOG)
    initial = fresh.parts[0].projection.state_dict()["parametrizations.weight.original"]
    assert not torch.equal(weight, initial)
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    kls = curve[["mixdl_g_kl", "mixdl_d_kl"]]
    assert kls.map(math.isfinite).all().all() and (kls > 0).all().all()
    assert curve["reconstruction"].map(math.isfinite).all()


def test_a_mode_collapse_regularizer_trains_fastgan_and_resumes_exactly(
    minimal_config, data, tmp_path
):
    """MixDL's Table 2 baselines also train FastGAN: DistanceGAN's term joins G's loss on the
    same fakes D judged, and a resumed run equals the uninterrupted one."""
    config = fastgan_config(minimal_config)
    config["parts"]["distancegan"] = {"kind": "distancegan"}
    config["methods"]["distancegan"] = ["distancegan"]
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "fg", "method": "distancegan"})
    spec = Study(config).run_spec(RunKey("shapes", "n12", "fg", "distancegan", 0))
    whole, resumed = train_whole_and_split(spec, 0.024, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 12
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert (curve["distancegan_loss"] > 0).all()
    split = pd.read_csv(tmp_path / "split" / "curve.csv")
    pd.testing.assert_series_equal(curve["distancegan_loss"], split["distancegan_loss"])


@pytest.mark.parametrize(
    ("resolution", "layers"), [(32, ["4", "8", "16"]), (256, ["4", "8", "16", "32"])]
)
def test_mixdl_on_fastgan_compares_the_authors_generator_layers(resolution, layers):
    """L_dist^G reads G's 4², 8², 16², 32² maps (the MixDL authors' FastGAN feat_list) below
    the image size, L_dist^D a projection of D's last map."""
    settings = {
        "generator_loss": True, "discriminator_loss": True, "projection_dim": 16,
        "num_latents": None, "coefficients": "dirichlet", "dirichlet_alpha": 1.0,
    }  # fmt: skip
    part = FastGANMixDL("mixdl", settings)
    G = Generator(z_dim=8, img_resolution=resolution, ngf=8)
    D = Discriminator(img_resolution=resolution, ndf=8)
    (projection,) = part.trainable_modules(G, D)
    assert part.layer_names == layers
    features: dict[str, torch.Tensor] = {}
    G(torch.randn(3, 8), features=features)
    assert all(features[name].shape[-1] == int(name) for name in layers)
    last: dict[str, torch.Tensor] = {}
    D(torch.randn(3, 3, resolution, resolution), features=last)
    assert last["last"].shape[1:] == D.last_shape
    assert projection(last["last"].flatten(1)).shape == (3, 16)


def test_a_fastgan_network_file_loads_and_samples(minimal_config, data, tmp_path):
    spec = fastgan_spec(minimal_config, train={"batch": 4, "kimg": 0.008, "eval_every_kimg": 1})
    train_gan(spec, paths(data, tmp_path), LOG)
    snapshot = torch.load(tmp_path / "network.pt", weights_only=False)
    assert snapshot["arch"] == "fastgan" and snapshot["meta"]["loss_networks"] == {}
    generator, meta = load_generator(tmp_path / "network.pt", torch.device("cpu"))
    assert isinstance(generator, Generator) and not generator.training
    first, again = generate_images(generator, 3, 7), generate_images(generator, 3, 7)
    assert first.shape == (3, 32, 32, 3) and (first == again).all()
    # PPL uniformity of a FastGAN generator: in Z (it has no W), linear as the MixDL authors'.
    vgg = tmp_path / "vgg16.pth"
    provision_torchvision("vgg16", None, vgg, allow_stand_in=True)
    metric_spec = {
        "metric": "ppl_interval_mean", "reference": "none", "run": spec["run"], "seed": 0,
        "scale": "demo", "stand_in_data": True,
        "evaluation": {**Study(fastgan_config(minimal_config)).config["evaluation"],
                       "ppl_space": "w", "ppl_pairs": 2},
    }  # fmt: skip
    records = compute_generator_metric_records(metric_spec, tmp_path / "network.pt", vgg, "cpu")
    assert set(records) == {"ppl_interval_mean", "ppl_interval_std", "ppl_end_to_end"}
    assert all(r["metric"] == name for name, r in records.items())
    record = records["ppl_interval_mean"]
    assert record["space"] == "z" and record["interpolation"] == "lerp"
    assert math.isfinite(record["value"]) and record["value"] > 0
    assert "stand-in features" in record["labels"]


@torch.no_grad()
def test_fastgan_samples_in_train_mode_in_batches_of_16_as_its_authors_eval_script():
    torch.manual_seed(0)
    generator = Generator(z_dim=16, img_resolution=32, ngf=4)
    generator(torch.randn(8, 16))  # training moves BatchNorm's running statistics
    generator.eval()
    state = {key: value.clone() for key, value in generator.state_dict().items()}
    images = generate_images(generator, 40, seed=3, batch_size=64)
    assert not generator.training  # the caller's generator keeps its mode and state
    assert all(torch.equal(value, state[key]) for key, value in generator.state_dict().items())

    def authors_loop(model: torch.nn.Module) -> np.ndarray:
        """eval.py: no .eval(), 16 latents per batch (the last batch: what is left)."""
        chunks = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            for start in range(0, 40, 16):
                chunks.append(to_numpy(model(torch.randn(min(16, 40 - start), 16))))
        return np.concatenate(chunks)

    assert np.array_equal(images, authors_loop(copy.deepcopy(generator).train()))
    assert not np.array_equal(images, authors_loop(generator))  # eval mode samples otherwise


def test_lpips_reconstruction_needs_real_vgg_weights(minimal_config, data, tmp_path):
    spec = fastgan_spec(minimal_config, reconstruction="lpips")
    with pytest.raises(ValueError, match="--vgg-weights"):
        FastGANTrainer(spec, paths(data, tmp_path), LOG)
    stand_in = tmp_path / "vgg16.pth"
    provision_torchvision("vgg16", None, stand_in, allow_stand_in=True)
    with pytest.raises(ValueError, match="weights.vgg16"):
        FastGANTrainer(spec, paths(data, tmp_path, vgg_weights=stand_in), LOG)


def test_lpips_reconstruction_distance_is_differentiable_per_image(
    minimal_config, data, tmp_path, monkeypatch
):
    """With (here: an untrained, so monkeypatched as real) VGG-16, the distance is LPIPS per
    image pair, zero for equal images, and passes gradients to the reconstructions."""
    import mixgan.metrics

    module, _ = load_lpips("vgg", None, allow_stand_in=True)
    record = {"name": "vgg16", "stand_in": False, "sha256": "0" * 64}
    monkeypatch.setattr(mixgan.metrics, "lpips_network", lambda *args: (module, record))
    spec = fastgan_spec(minimal_config, reconstruction="lpips")
    trainer = FastGANTrainer(spec, paths(data, tmp_path, vgg_weights=tmp_path / "v.pth"), LOG)
    assert trainer.loss_networks == {"reconstruction": record}
    images = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    targets = torch.rand(2, 3, 16, 16) * 2 - 1
    distance = trainer.distance(images, targets)
    assert distance.shape == (2,) and (distance > 0).all()
    distance.sum().backward()
    assert images.grad.abs().sum() > 0
    assert torch.allclose(trainer.distance(targets, targets), torch.zeros(2), atol=1e-6)


# -- config ---------------------------------------------------------------------------------


def test_fastgan_config_rules(minimal_config):
    config = fastgan_config(minimal_config)
    config["backbones"]["fg"]["train"]["r1_gamma"] = 1.0
    with pytest.raises(ConfigError, match=r"backbones\.fg\.train\.r1_gamma: fastgan has no R1"):
        validate_config(config)

    config = fastgan_config(minimal_config, reconstruction="lpips")
    run = RunKey("shapes", "n12", "fg", "none", 0)
    assert "weights.vgg16" in Study(config).runs[run]
    config["weights"] = {"allow_standins": True}  # a stand-in VGG would train another model
    assert "weights.vgg16" in Study(config).runs[run]
    config["weights"] = {"vgg16": "/weights/vgg16.pth"}
    assert Study(config).runs[run] is None
