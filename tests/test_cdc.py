"""CDC (cross-domain correspondence): the distance-consistency loss on given numbers, the
source model's checks, the adaptation in the GAN loop, and its place in the study's DAG."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn

from mixgan.errors import ConfigError
from mixgan.nets.stylegan2 import Discriminator, Generator
from mixgan.study import RunKey, Study
from mixgan.train import cdc, mixdl
from mixgan.train.gan import GANTrainer, network_kwargs
from mixgan.train.loop import train_gan

from .conftest import final_generator, same_tensors, train_whole_and_split
from .test_gan_training import LOG, paths, tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def test_within_batch_similarities_leave_each_sample_out_and_use_its_own_layer():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    second = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    features = {"a": first, "b": second}
    r = 1 / math.sqrt(2)
    similarities = cdc.within_batch_similarities(features, ["a", "b"], torch.tensor([0, 0, 1]))
    # sample 0 at layer a: vs 1, 2; sample 1 at a: vs 0, 2; sample 2 at layer b: vs 0, 1
    expected = torch.tensor([[0.0, r], [0.0, r], [0.0, 0.0]])
    torch.testing.assert_close(similarities, expected)


def test_distance_consistency_is_torchs_kl_div_of_the_source_distribution():
    torch.manual_seed(0)
    target, source = torch.randn(4, 3), torch.randn(4, 3)
    # The official call is nn.KLDivLoss()(log q, p): its default "mean" reduction is the
    # element-wise sum over the 12 entries divided by 12.
    reference = (
        nn.KLDivLoss(reduction="sum")(
            torch.log(torch.softmax(target, dim=1)), torch.softmax(source, dim=1)
        )
        / target.numel()
    )
    torch.testing.assert_close(cdc.distance_consistency(target, source), reference)
    assert float(cdc.distance_consistency(source, source)) == pytest.approx(0.0, abs=1e-7)


def test_latents_near_anchors_stay_within_the_noise_of_one_anchor():
    torch.manual_seed(0)
    anchors = 10 * torch.randn(5, 8)
    z = cdc.sample_near_anchors(anchors, 400, std=0.05)
    nearest = torch.cdist(z, anchors).min(dim=1)
    assert float(nearest.values.max()) < 0.05 * 8  # about 0.05 * sqrt(8) on average
    assert set(nearest.indices.tolist()) == set(range(5))  # every anchor gets latents
    offsets = z - anchors[nearest.indices]
    assert float(offsets.std()) == pytest.approx(0.05, rel=0.1)


def cdc_config(minimal_config, **part):
    config = copy.deepcopy(minimal_config)
    config["datasets"]["shapes"]["subsets"]["sizes"]["n24"] = {"count": 24}
    config["parts"]["cdc"] = {
        "kind": "cdc",
        "source_run": {"dataset": "shapes", "subset": "n24", "backbone": "sg2", "method": "none"},
        "patch_resolutions": [16, 8],
        "patch_layers": 2,
        "anchors": 3,
        **part,
    }
    config["methods"]["cdc"] = ["cdc"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "cdc"})
    return config


def test_the_source_run_joins_the_study_and_the_cdc_run_waits_for_it(minimal_config):
    config = cdc_config(minimal_config)
    fastgan = {"arch": "fastgan", "task": "unconditional", "reconstruction": "mse"}
    config["backbones"]["fg"] = fastgan
    config["tables"]["scoremix_table1"]["rows"].append({"method": "cdc", "backbone": "fg"})
    study = Study(config)
    source = RunKey("shapes", "n24", "sg2", "none", 0)
    assert study.source_run("cdc") == source and study.runs[source] is None
    assert study.runs[RunKey("shapes", "n12", "sg2", "cdc", 0)] is None
    assert "CDC adapts StyleGAN2 only" in study.runs[RunKey("shapes", "n12", "fg", "cdc", 0)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source_run": {"dataset": "shapes", "backbone": "sg2", "method": "nope"}},
         "parts.cdc.source_run.method: 'nope' is not defined in methods"),
        ({"source_run": {"dataset": "shapes", "subset": "n99", "backbone": "sg2",
                         "method": "none"}},
         "parts.cdc.source_run.subset: 'n99' is not defined"),
        ({"source_run": {"dataset": "shapes", "backbone": "sg2", "method": "cdc"}},
         "parts.cdc.source_run.method: a CDC source cannot itself be adapted"),
        ({"source_model": "ffhq"}, "parts.cdc.source_model: 'ffhq' is not in weights.pretrained"),
    ],
)  # fmt: skip
def test_a_bad_cdc_source_is_rejected_with_its_key(minimal_config, change, message):
    config = cdc_config(minimal_config)
    config["parts"]["cdc"].pop("source_run")
    config["parts"]["cdc"].update(change)
    with pytest.raises(ConfigError, match=message):
        Study(config)


def test_a_source_run_of_other_networks_is_rejected_before_anything_trains(minimal_config):
    config = cdc_config(minimal_config)
    config["datasets"]["big"] = copy.deepcopy(config["datasets"]["shapes"]) | {"resolution": 32}
    config["backbones"]["wide"] = copy.deepcopy(config["backbones"]["sg2"]) | {"w_dim": 32}
    config["parts"]["cdc"]["source_run"] = {"dataset": "big", "backbone": "wide", "method": "none"}
    with pytest.raises(ConfigError) as error:
        Study(config)
    assert (
        "parts.cdc.source_run: big/full/wide/none/seed0 builds other networks than "
        "shapes/n12/sg2/cdc/seed0 (resolution 32 vs 16, w_dim 32 vs 512)"
    ) in str(error.value)


def test_a_cdc_part_takes_one_source(minimal_config):
    config = cdc_config(minimal_config, source_model="ffhq")
    config["weights"] = {"pretrained": {"ffhq": "ffhq.pt"}}
    with pytest.raises(ConfigError, match="parts.cdc"):
        Study(config, check_paths=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory, data):
    """A tiny StyleGAN2 run's network.pt: the source of the adaptations below."""
    from .conftest import MINIMAL_CONFIG

    run_dir = tmp_path_factory.mktemp("source")
    run_paths = paths(data, run_dir)
    run_paths.keep_networks = True
    train_gan(tiny_spec(copy.deepcopy(MINIMAL_CONFIG), method="none", kimg=0.032), run_paths, LOG)
    return run_dir / "network.pt"


def test_only_a_source_keeps_its_raw_g_and_d(data, tmp_path, source):
    """network.pt of a plain run holds the selected G_ema only; a CDC source's (trained with
    --keep-networks) also the last raw G and D, which differ from G_ema."""
    from .conftest import MINIMAL_CONFIG

    train_gan(tiny_spec(copy.deepcopy(MINIMAL_CONFIG), method="none", kimg=0.016),
              paths(data, tmp_path), LOG)  # fmt: skip
    plain = torch.load(tmp_path / "network.pt", weights_only=True)
    assert "generator_last" not in plain and "discriminator" not in plain
    kept = torch.load(source, weights_only=True)
    assert {"generator_last", "discriminator", "discriminator_kwargs"} <= kept.keys()
    assert not same_tensors(kept["generator_last"], kept["generator"])


def cdc_spec(minimal_config, kimg=0.064, **part):
    spec = tiny_spec(cdc_config(minimal_config, **part), method="cdc", kimg=kimg)
    spec["backbone"]["train"]["checkpoint_every_kimg"] = 0.032
    return spec


def cdc_paths(data, run_dir, source):
    run_paths = paths(data, run_dir)
    run_paths.source_model = source
    return run_paths


def test_cdc_starts_from_the_source_and_records_it(minimal_config, data, tmp_path, source):
    trainer = GANTrainer(cdc_spec(minimal_config), cdc_paths(data, tmp_path, source), LOG)
    snapshot = torch.load(source, weights_only=True)
    assert same_tensors(trainer.G.state_dict(), snapshot["generator_last"])
    assert same_tensors(trainer.G_ema.state_dict(), snapshot["generator"])
    assert same_tensors(trainer.D.state_dict(), snapshot["discriminator"])
    [part] = trainer.parts
    assert same_tensors(part.source.state_dict(), snapshot["generator_last"])
    assert not any(p.requires_grad for p in part.source.parameters())
    # The first two of D's activations at 16² and 8² (b16.conv0, b16.conv1, b8.conv0).
    assert part.patch_names == ["b16.conv0", "b16.conv1"]
    assert trainer.loss_networks["cdc_source"]["path"] == str(source)
    assert len(trainer.loss_networks["cdc_source"]["sha256"]) == 64


def test_r1_follows_the_level_of_the_step(minimal_config, data, tmp_path, source):
    """Near the anchors R1 differentiates D's output, elsewhere a patch head's: only then do
    the heads get gradients and move."""
    trainer = GANTrainer(cdc_spec(minimal_config), cdc_paths(data, tmp_path, source), LOG)
    [part] = trainer.parts
    real = trainer.real_batch(8)
    heads = copy.deepcopy(part.patch_heads.state_dict())
    trainer.step = 4  # anchor_every 4: image level
    trainer.r1_step(real, part)
    assert same_tensors(part.patch_heads.state_dict(), heads)
    trainer.step = 5
    assert part.r1_logits(trainer, real).shape == (8, 1)
    trainer.r1_step(real, part)
    assert not same_tensors(part.patch_heads.state_dict(), heads)


def test_cdc_trains_logs_its_distance_and_resumes_exactly(minimal_config, data, tmp_path, source):
    spec = cdc_spec(minimal_config)
    whole, resumed = train_whole_and_split(
        spec, 0.032, lambda run: cdc_paths(data, tmp_path / run, source)
    )
    assert whole["steps"] == resumed["steps"] == 8
    assert whole["loss_networks"]["cdc_source"]["path"] == str(source)
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert curve["cdc_distance"].map(math.isfinite).all() and (curve["cdc_distance"] >= 0).all()
    # The weights moved away from the source's.
    snapshot = torch.load(source, weights_only=True)
    assert not same_tensors(final_generator(tmp_path / "whole"), snapshot["generator"])
    assert "discriminator" not in torch.load(tmp_path / "whole" / "network.pt", weights_only=True)


def test_the_distance_term_reaches_g(minimal_config, data, tmp_path, source):
    """Weight 0 and weight 1000 draw the same random numbers; only G's gradients differ."""
    for weight in (0, 1000):
        spec = cdc_spec(minimal_config, kimg=0.016, weight=weight)
        train_gan(spec, cdc_paths(data, tmp_path / str(weight), source), LOG)
    assert not same_tensors(final_generator(tmp_path / "0"), final_generator(tmp_path / "1000"))


def test_a_source_of_another_architecture_is_rejected_naming_the_tensor(minimal_config, tmp_path):
    spec = cdc_spec(minimal_config)
    g_kwargs, d_kwargs = network_kwargs(spec)
    wider = {**g_kwargs, "channel_base": 2 * g_kwargs["channel_base"]}
    wide_g = Generator(**wider).state_dict()
    torch.save(
        {
            "arch": "stylegan2",
            "generator": wide_g,
            "generator_last": wide_g,
            "discriminator": Discriminator(**d_kwargs).state_dict(),
        },
        tmp_path / "wider.pt",
    )
    with pytest.raises(ValueError, match=r"wider.pt \(G\): tensor .* has shape"):
        cdc.load_source(tmp_path / "wider.pt", Generator(**g_kwargs), Discriminator(**d_kwargs))
    torch.save({"arch": "stylegan2", "generator": {}}, tmp_path / "g_only.pt")
    with pytest.raises(ValueError, match="--keep-networks .* missing generator_last, discrim"):
        cdc.load_source(tmp_path / "g_only.pt", Generator(**g_kwargs), Discriminator(**d_kwargs))


def test_distance_layers_are_every_synthesis_layer_but_the_first():
    """train.py: feat_ind = randint(1, n_latent - 1), n_latent = 2 log2(size) - 2, over the
    2 log2(size) - 3 activations of feat_list: all but the first, the last one included."""
    generator = Generator(z_dim=8, w_dim=8, img_resolution=32, channel_base=64, channel_max=8)
    names = mixdl.synthesis_layer_names(generator.synthesis)
    n_latent = 2 * 5 - 2
    assert len(names) == n_latent - 1
    official = [names[k] for k in range(1, n_latent - 1)]  # numpy's randint excludes the high
    assert cdc.layer_candidates(generator.synthesis) == official == names[1:]
    assert official[-1] == "b32.conv1"  # the last layer, which MixDL's draw leaves out
    assert official[-1] not in mixdl.generator_layer_candidates(generator.synthesis)


def test_the_distance_is_kl_of_the_source_similarities_from_the_adapted_ones(
    minimal_config, data, tmp_path, source, monkeypatch
):
    """KL(p || q) with p the frozen source's similarities and q the adapted G's (the official
    kl_loss(log dist_target, dist_source)), not the reverse; only the adapted G learns."""
    trainer = GANTrainer(cdc_spec(minimal_config), cdc_paths(data, tmp_path, source), LOG)
    [part] = trainer.parts
    assert part.layer_names == cdc.layer_candidates(trainer.G.synthesis)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # make the two generators differ, as much as the test needs
        for weight in trainer.G.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator))
    similarities = []
    within = cdc.within_batch_similarities
    monkeypatch.setattr(
        cdc, "within_batch_similarities",
        lambda *args: similarities.append(within(*args)) or similarities[-1],
    )  # fmt: skip
    distance = part.distance(trainer)
    [target] = [s for s in similarities if s.requires_grad]  # the adapted G's
    [source_sims] = [s for s in similarities if not s.requires_grad]  # the frozen source's
    p, q = source_sims.softmax(1).double(), target.detach().softmax(1).double()
    expected = float((p * (p.log() - q.log())).sum()) / p.numel()
    reverse = float((q * (q.log() - p.log())).sum()) / p.numel()
    assert float(distance.detach()) == pytest.approx(expected, rel=1e-4)
    assert reverse != pytest.approx(expected, rel=1e-2)  # the example tells them apart
    distance.backward()
    assert any(w.grad is not None and w.grad.abs().sum() > 0 for w in trainer.G.parameters())
    assert all(w.grad is None for w in part.source.parameters())


class Recorder:
    """Wraps a bound method and keeps each call's result."""

    def __init__(self, function):
        self.function, self.results = function, []

    def __call__(self, *args, **kwargs):
        self.results.append(self.function(*args, **kwargs))
        return self.results[-1]


def softplus_mean(x: torch.Tensor) -> float:
    return sum(math.log1p(math.exp(float(v))) for v in x.detach().flatten()) / x.numel()


@pytest.mark.parametrize("step", [4, 5])  # anchor_every 4: image level, then patch level
def test_the_step_losses_are_the_logistic_losses_of_the_levels_logits_plus_the_distance(
    minimal_config, data, tmp_path, source, step
):
    trainer = GANTrainer(cdc_spec(minimal_config), cdc_paths(data, tmp_path, source), LOG)
    [part] = trainer.parts
    trainer.step = step
    part._discriminate = judged = Recorder(part._discriminate)
    part.distance = distances = Recorder(part.distance)
    loss_g = part.g_loss(trainer, 8)
    [logits] = judged.results
    assert logits.ndim == (2 if step == 4 else 4)  # D's [N, 1] or a head's [N, 1, H, W]
    [distance] = distances.results
    expected = softplus_mean(-logits) + 1000 * float(distance.detach())
    assert float(loss_g.detach()) == pytest.approx(expected, rel=1e-6)
    judged.results.clear()
    loss_d, logits_real, logits_fake = part.d_loss(trainer, trainer.real_batch(8))
    real, fake = judged.results
    expected = softplus_mean(fake) + softplus_mean(-real)
    assert float(loss_d.detach()) == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(logits_real, real.flatten(1).mean(1, keepdim=True))
    torch.testing.assert_close(logits_fake, fake.flatten(1).mean(1, keepdim=True))


def test_latents_near_anchors_are_a_drawn_anchor_plus_std_times_their_own_noise():
    anchors = torch.arange(12.0).view(3, 4)
    torch.manual_seed(1)
    index, noise = torch.randint(3, (5,)), torch.randn(5, 4)  # get_subspace: N(anchor, std²)
    torch.manual_seed(1)
    z = cdc.sample_near_anchors(anchors, 5, std=0.1)
    torch.testing.assert_close(z, anchors[index] + 0.1 * noise)
    assert not torch.allclose(noise[0], noise[1])  # one draw per latent
