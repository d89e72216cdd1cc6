"""MixDL: the distance losses, coefficient samplers, heads, gradients and switches."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mixgan.config import load_schema
from mixgan.nets.stylegan2 import Discriminator, Generator
from mixgan.train import mixdl
from mixgan.train.gan import GANTrainer
from mixgan.train.mixdl import MixDL
from mixgan.train.parts import build_parts

from .test_gan_training import LOG, paths, tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def mixdl_settings(**overrides):
    """The schema's defaults of a ``mixdl`` part, with ``overrides``."""
    (branch,) = [
        entry["then"]["properties"]
        for entry in load_schema()["$defs"]["part"]["allOf"]
        if entry["if"]["properties"]["kind"].get("const") == "mixdl"
    ]
    return {key: value["default"] for key, value in branch.items()} | overrides


class Players:
    """The trainer's side of the protocol, for two bare networks (no augmentation)."""

    def __init__(self, generator: Generator, discriminator: Discriminator):
        self.G, self.D = generator, discriminator

    def mapped_ws(self, count: int) -> torch.Tensor:
        return self.G.mapping(torch.randn(count, self.G.z_dim), None)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def autocast(self) -> torch.autocast:
        return torch.autocast("cpu", enabled=False)


def tiny_part(seed: int = 0, **overrides):
    """A MixDL part with its heads built for a tiny 16² G and D (patch heads at 16² and 8²)."""
    torch.manual_seed(seed)
    generator = Generator(
        z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=16, mapping_layers=1
    )
    discriminator = Discriminator(img_resolution=16, channel_base=64, channel_max=16)
    part = MixDL("mixdl", mixdl_settings(patch_resolutions=[16, 8], **overrides))
    modules = part.trainable_modules(generator, discriminator)
    return part, modules, Players(generator, discriminator)


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def has_gradient(module: torch.nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


# -- the loss and its pieces -----------------------------------------------------------------


def test_distance_kl_equals_a_hand_computation():
    # anchor 1: q = softmax(0, ln 3) = (1/4, 3/4), p = softmax(1, 0) = (e, 1) / (1 + e);
    # anchor 2: q = p = (1/2, 1/2), so its KL is 0.
    similarities = torch.tensor([[0.0, math.log(3)], [0.3, 0.3]])
    coefficients = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = [0.25, 0.75]
    p = [math.e / (1 + math.e), 1 / (1 + math.e)]
    kl_q_p = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    kl_p_q = sum(pi * math.log(pi / qi) for qi, pi in zip(q, p, strict=True))
    # the official reduction: KL per anchor, averaged over 2 anchors, divided by N = 2
    assert mixdl.distance_kl(similarities, coefficients, "q_p").item() == pytest.approx(
        kl_q_p / 4, rel=1e-5
    )
    assert mixdl.distance_kl(similarities, coefficients, "p_q").item() == pytest.approx(
        kl_p_q / 4, rel=1e-5
    )
    assert kl_q_p != pytest.approx(kl_p_q)  # the two directions differ on this example
    # nn.KLDivLoss(log q, p), the official code's call, is the p_q direction
    with pytest.warns(UserWarning, match="divides the total loss by both the batch size"):
        official = torch.nn.KLDivLoss()(similarities.log_softmax(1), coefficients.softmax(1))
    assert official.item() == pytest.approx(kl_p_q / 4, rel=1e-5)


def test_cosine_similarities_and_per_anchor_layers():
    anchors = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    edges = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    expected = torch.tensor([[1.0, 0.0, -1.0], [0.5**0.5, 0.5**0.5, -(0.5**0.5)]])
    torch.testing.assert_close(mixdl.cosine_similarities(anchors, edges), expected)
    # each anchor compares at its own layer: anchor 0 at "a", anchors 1 and 2 at "b"
    torch.manual_seed(0)
    features = {"a": torch.randn(5, 2, 3, 3), "b": torch.randn(5, 4, 2, 2)}  # 2 edges, 3 anchors
    layers = torch.tensor([0, 1, 1])
    sims = mixdl.generator_similarities(features, ["a", "b"], layers, num_edges=2)
    assert sims.shape == (3, 2)
    torch.testing.assert_close(
        sims[0], mixdl.cosine_similarities(features["a"][2:3], features["a"][:2])[0]
    )
    torch.testing.assert_close(
        sims[1:], mixdl.cosine_similarities(features["b"][3:], features["b"][:2])
    )


def test_distance_kl_defaults_to_the_thesis_direction_and_names_a_wrong_one():
    similarities, coefficients = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.7, 0.3]])
    torch.testing.assert_close(
        mixdl.distance_kl(similarities, coefficients),
        mixdl.distance_kl(similarities, coefficients, "q_p"),
    )
    with pytest.raises(ValueError, match=r"^unknown KL direction 'pq'; one of \('q_p', 'p_q'\)$"):
        mixdl.distance_kl(similarities, coefficients, "pq")


def test_cosine_similarities_ignore_the_scale_of_small_features():
    torch.manual_seed(0)
    anchors, edges = torch.randn(2, 5), torch.randn(3, 5)
    reference = mixdl.cosine_similarities(anchors, edges)
    torch.testing.assert_close(mixdl.cosine_similarities(1e-3 * anchors, 1e-4 * edges), reference)


def test_generator_similarities_of_anchors_all_at_one_layer():
    torch.manual_seed(1)
    features = {"a": torch.randn(5, 2, 3, 3), "b": torch.randn(5, 1, 2, 2)}
    sims = mixdl.generator_similarities(features, ["a", "b"], torch.tensor([1, 1, 1]), 2)
    torch.testing.assert_close(
        sims, mixdl.cosine_similarities(features["b"][2:], features["b"][:2])
    )


@pytest.mark.parametrize("kind", mixdl.COEFFICIENTS)
def test_coefficients_lie_on_the_simplex_and_follow_the_global_seed(kind):
    torch.manual_seed(3)
    c = mixdl.sample_coefficients(kind, 5, 7, alpha=0.5)
    assert c.shape == (5, 7) and (c >= 0).all()
    torch.testing.assert_close(c.sum(1), torch.ones(5))
    torch.manual_seed(3)
    assert torch.equal(mixdl.sample_coefficients(kind, 5, 7, alpha=0.5), c)
    assert not torch.equal(mixdl.sample_coefficients(kind, 5, 7, alpha=0.5), c)


def test_a_small_dirichlet_alpha_gives_peakier_coefficients():
    torch.manual_seed(0)
    peaks = {
        alpha: mixdl.sample_coefficients("dirichlet", 4000, 8, alpha).amax(1).mean().item()
        for alpha in (0.1, 1.0, 10.0)
    }
    # mean largest of 8 coefficients: about 0.71 (alpha 0.1), 0.34 (alpha 1), 0.19 (alpha 10)
    assert peaks[0.1] > 0.6 > peaks[1.0] > 0.25 > peaks[10.0] > 1 / 8
    mean = mixdl.sample_coefficients("dirichlet", 4000, 8, 1.0).mean(0)
    torch.testing.assert_close(mean, torch.full((8,), 1 / 8), atol=0.01, rtol=0)


def test_anchors_are_convex_mixtures_of_the_edges():
    ws = torch.randn(3, 4, 5)
    c = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    anchors = mixdl.mix_latents(c, ws)
    torch.testing.assert_close(anchors[0], ws[0])
    torch.testing.assert_close(anchors[1], 0.2 * ws[0] + 0.3 * ws[1] + 0.5 * ws[2])


def test_patch_heads_read_the_official_activations_of_a_256_discriminator_layout():
    # A 64² D has the 256² D's activations at 32² and 16² (official: four of them).
    discriminator = Discriminator(img_resolution=64, channel_base=256, channel_max=16)
    taps = mixdl.patch_taps(discriminator, [32, 16])
    assert [name for name, _ in taps] == ["b64.conv1", "b32.conv0", "b32.conv1", "b16.conv0"]
    features = {}
    discriminator(torch.randn(2, 3, 64, 64), None, features=features)
    assert [features[name].shape[1:] for name, _ in taps] == [
        (channels, size, size) for (_, channels), size in zip(taps, (32, 32, 16, 16), strict=True)
    ]
    with pytest.raises(ValueError, match="no activations at resolutions"):
        mixdl.patch_taps(discriminator, [128])


def test_generator_layers_leave_out_the_first_and_the_last():
    generator = Generator(z_dim=8, w_dim=8, img_resolution=32, channel_base=64, channel_max=8)
    names = mixdl.synthesis_layer_names(generator.synthesis)
    features = {}
    generator.synthesis(torch.randn(1, generator.num_ws, 8), features=features)
    assert list(features) == names == [
        "b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0", "b32.conv1"
    ]  # fmt: skip
    assert mixdl.generator_layer_candidates(generator.synthesis) == names[1:-1]


# -- the part --------------------------------------------------------------------------------


def test_mixdl_steps_are_the_official_even_steps():
    """train_mixdl.py: which = i % mixup_every, MixDL's branch at which == 0."""
    part = MixDL("mixdl", mixdl_settings())
    assert [part.computes_losses(step) for step in range(6)] == [True, False] * 3
    part = MixDL("mixdl", mixdl_settings(mixup_every=3))
    assert [step for step in range(7) if part.computes_losses(step)] == [0, 3, 6]


def test_a_method_takes_at_most_one_step_computing_part():
    specs = [{"name": name, "kind": "mixdl", **mixdl_settings()} for name in ("a", "b")]
    with pytest.raises(ValueError, match="a, b all compute whole steps"):
        build_parts(specs)


def test_generator_distance_trains_g_only():
    part, modules, players = tiny_part()
    ws = players.mapped_ws(4)
    c = mixdl.sample_coefficients("dirichlet", 3, 4)
    features = {}
    players.G.synthesis(torch.cat([ws, mixdl.mix_latents(c, ws)]), features=features)
    part.generator_distance(features, c, num_edges=4).backward()
    assert has_gradient(players.G.synthesis) and has_gradient(players.G.mapping)
    assert all(g is None for m in [players.D, *modules] for g in grads(m))


def test_discriminator_distance_trains_d_features_and_the_projection_only():
    part, modules, players = tiny_part()
    assert [type(m) for m in modules] == [mixdl.PatchHeads, type(part.projection)]
    ws = players.mapped_ws(4)
    c = mixdl.sample_coefficients("dirichlet", 3, 4)
    images = players.G.synthesis(torch.cat([ws, mixdl.mix_latents(c, ws)]))
    features = {}
    players.D(images.detach(), None, features=features)
    part.discriminator_distance(features, c, num_edges=4).backward()
    assert has_gradient(players.D.b16) and has_gradient(players.D.b4.fc)
    assert has_gradient(part.projection)
    assert players.D.b4.out.weight.grad is None  # d2, D's final FC layer, is not involved
    assert all(g is None for g in grads(part.patch_heads) + grads(players.G))


def test_the_step_losses_train_the_right_players():
    """g_loss with D and heads frozen (as the loop does) trains G alone; d_loss trains D and
    the heads (its images are generated without gradients) and never G."""
    part, modules, players = tiny_part()
    for module in (players.D, *modules):
        module.requires_grad_(False)
    part.g_loss(players, 4).backward()
    assert has_gradient(players.G)
    assert all(g is None for m in [players.D, *modules] for g in grads(m))
    players.G.zero_grad(set_to_none=True)
    for module in (players.D, *modules):
        module.requires_grad_(True)
    loss, logits_real, logits_fake = part.d_loss(players, torch.rand(4, 3, 16, 16) * 2 - 1)
    assert logits_real.shape == logits_fake.shape == (4, 1)
    loss.backward()
    assert has_gradient(players.D) and has_gradient(part.patch_heads)
    assert has_gradient(part.projection)
    assert all(g is None for g in grads(players.G))
    stats = part.stats()
    assert set(stats) == {"mixdl_g_kl", "mixdl_d_kl"}
    assert all(math.isfinite(v) and v >= 0 for v in stats.values())


def test_minimising_the_generator_distance_lowers_it():
    part, _, players = tiny_part(seed=1)
    generator = players.G
    torch.manual_seed(2)
    z = torch.randn(4, generator.z_dim)
    c = mixdl.sample_coefficients("dirichlet", 4, 4)

    def distance():
        ws = generator.mapping(z, None)
        features = {}
        generator.synthesis(torch.cat([ws, mixdl.mix_latents(c, ws)]), "const", features)
        torch.manual_seed(3)  # the same layer for each anchor every time
        return part.generator_distance(features, c, num_edges=4)

    before = distance().item()
    optimiser = torch.optim.Adam(generator.parameters(), lr=0.01)
    for _ in range(15):
        optimiser.zero_grad()
        distance().backward()
        optimiser.step()
    assert distance().item() < 0.5 * before


def test_switched_off_terms_are_neither_computed_nor_logged(monkeypatch):
    def forbidden(*args):
        raise AssertionError("a switched-off distance term was computed")

    g_only, modules, players = tiny_part(discriminator_loss=False)
    assert g_only.projection is None and len(modules) == 1  # no projection head to train
    monkeypatch.setattr(g_only, "discriminator_distance", forbidden)
    g_only.d_loss(players, torch.zeros(4, 3, 16, 16))
    g_only.g_loss(players, 4)
    assert list(g_only.stats()) == ["mixdl_g_kl"] and math.isfinite(g_only.stats()["mixdl_g_kl"])

    d_only, modules, players = tiny_part(generator_loss=False)
    assert len(modules) == 2
    monkeypatch.setattr(d_only, "generator_distance", forbidden)
    d_only.g_loss(players, 4)
    d_only.d_loss(players, torch.zeros(4, 3, 16, 16))
    assert list(d_only.stats()) == ["mixdl_d_kl"] and math.isfinite(d_only.stats()["mixdl_d_kl"])


def test_state_dict_restores_heads_and_logged_values():
    part, _, players = tiny_part(seed=0)
    part.d_loss(players, torch.zeros(4, 3, 16, 16))
    other, _, _ = tiny_part(seed=5)
    assert not torch.equal(other.projection.weight, part.projection.weight)
    other.load_state_dict(part.state_dict())
    for mine, theirs in zip(
        part.state_dict()["modules"].values(), other.state_dict()["modules"].values(), strict=True
    ):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert other.stats()["mixdl_d_kl"] == part.stats()["mixdl_d_kl"]
    assert math.isnan(other.stats()["mixdl_g_kl"])


# -- the step losses as formulas of what the step computed ------------------------------------


class Recorder:
    """Wraps a callable (a bound method) and keeps each call's arguments and result."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, *args, **kwargs):
        out = self.function(*args, **kwargs)
        self.calls.append((args, out))
        return out


def record_synthesis(players: Players) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(latents, images) of every synthesis call of ``players.G``."""
    calls = []
    players.G.synthesis.register_forward_hook(
        lambda module, args, out: calls.append((args[0].detach(), out.detach()))
    )
    return calls


def softplus_mean(x: torch.Tensor) -> float:
    return sum(math.log1p(math.exp(float(v))) for v in x.detach().flatten()) / x.numel()


@pytest.mark.parametrize("num_latents", [None, 3])
def test_g_loss_is_the_anchors_patch_loss_plus_lambda_g_times_the_distance(num_latents):
    """G's loss on a MixDL step: mean softplus(-patch logits) of the anchors' images (not the
    edges'), plus lambda_G (1000) x L_dist^G; N edges (the batch, or ``num_latents``) come
    first in the synthesis batch, then the B = 4 anchors."""
    part, _, players = tiny_part(seed=2, num_latents=num_latents)
    edges = num_latents or 4
    synthesis = record_synthesis(players)
    part._discriminate = judged = Recorder(part._discriminate)
    part.generator_distance = distances = Recorder(part.generator_distance)
    loss = part.g_loss(players, 4)
    [(latents, images)] = synthesis
    [((_, c, num_edges), kl)] = distances.calls
    assert num_edges == edges and len(latents) == edges + 4 and c.shape == (4, edges)
    torch.testing.assert_close(latents[edges:], mixdl.mix_latents(c, latents[:edges]))
    [((_, seen, _), logits)] = judged.calls
    assert torch.equal(seen, images[edges:])  # the anchors' images are judged
    expected = softplus_mean(-logits) + 1000 * float(kl.detach())  # softplus(-D(G(w0)))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert part.settings["lambda_g"] == 1000 and float(kl.detach()) > 0


@pytest.mark.parametrize("num_latents", [None, 3])
def test_d_loss_judges_reals_and_the_anchors_and_adds_lambda_d_times_the_distance(num_latents):
    part, _, players = tiny_part(seed=3, lambda_d=2.5, num_latents=num_latents)
    edges = num_latents or 4
    synthesis = record_synthesis(players)
    part._discriminate = judged = Recorder(part._discriminate)
    part.discriminator_distance = distances = Recorder(part.discriminator_distance)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    loss, logits_real, logits_fake = part.d_loss(players, real)
    [(latents, images)] = synthesis
    [((_, c, num_edges), kl)] = distances.calls
    assert num_edges == edges and len(latents) == edges + 4
    torch.testing.assert_close(latents[edges:], mixdl.mix_latents(c, latents[:edges]))
    [((_, seen_real, _), patch_real), ((_, seen_fake, _), patch_fake)] = judged.calls
    assert torch.equal(seen_real, real) and torch.equal(seen_fake, images)
    anchors = patch_fake[edges:]  # one D pass on edges and anchors; the anchors' logits count
    # softplus(D(G(w0))) on the anchors' patches, softplus(-D(x)) on the reals' patches
    expected = softplus_mean(anchors) + softplus_mean(-patch_real) + 2.5 * float(kl.detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(logits_fake, mixdl.per_image_mean(anchors))
    torch.testing.assert_close(logits_real, mixdl.per_image_mean(patch_real))


@pytest.mark.parametrize("direction", mixdl.KL_DIRECTIONS)
def test_the_distance_terms_compare_the_features_the_settings_name(direction):
    """L_dist^D on d1 itself without a projector (projection_dim 0) or on its projection, and
    both terms in the part's KL direction."""
    torch.manual_seed(4)
    c = mixdl.sample_coefficients("dirichlet", 2, 3)
    d1 = torch.randn(5, 16)  # 3 edges, then 2 anchors
    for width in (0, 8):
        part, _, _ = tiny_part(projection_dim=width, kl_direction=direction)
        embedded = d1 if width == 0 else part.projection(d1)
        expected = mixdl.distance_kl(
            mixdl.cosine_similarities(embedded[3:], embedded[:3]), c, direction
        )
        value = part.discriminator_distance({mixdl.D_FEATURES: d1}, c, num_edges=3)
        torch.testing.assert_close(value, expected)
    features = {name: torch.randn(5, 2, 4, 4) for name in part.layer_names}
    torch.manual_seed(5)
    value = part.generator_distance(features, c, num_edges=3)
    torch.manual_seed(5)
    layers = torch.randint(len(part.layer_names), (2,))
    similarities = mixdl.generator_similarities(features, part.layer_names, layers, 3)
    torch.testing.assert_close(value, mixdl.distance_kl(similarities, c, direction))


def mixdl_trainer(minimal_config, data, run_dir, r1_interval=16):
    """A tiny StyleGAN2 run of method [diffaug, mixdl], with the official lazy R1 interval."""
    config = copy.deepcopy(minimal_config)
    config["parts"]["mixdl"] = {"kind": "mixdl", "patch_resolutions": [16, 8]}
    config["methods"]["mixdl"] = ["diffaug", "mixdl"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "mixdl"})
    spec = tiny_spec(config, method="mixdl")
    spec["backbone"]["train"]["r1_interval"] = r1_interval
    return GANTrainer(spec, paths(data, run_dir), LOG)


def test_the_lazy_r1_lands_on_mixdl_steps_and_penalises_the_patch_logits(
    minimal_config, data, tmp_path
):
    """The official code's R1 (i % 16 == 0) falls on its MixDL steps (i % 2 == 0), where it
    differentiates the mean patch logits of a drawn head (flag=which=0): the step's owner."""
    trainer = mixdl_trainer(minimal_config, data, tmp_path)
    part = trainer.parts[-1]
    trainer.r1_step = landed = Recorder(trainer.r1_step)
    part.r1_logits = patch = Recorder(part.r1_logits)
    for step in (0, 1, 16):
        trainer.step = step
        trainer.train_step()
    assert [args[1] for args, _ in landed.calls] == [part, part]  # steps 0 and 16, owner MixDL
    assert len(patch.calls) == 2 and all(out.shape == (8, 1) for _, out in patch.calls)
    heads = copy.deepcopy(part.patch_heads.state_dict())
    trainer.r1_step(trainer.real_batch(8), part)
    assert any(not torch.equal(v, heads[k]) for k, v in part.patch_heads.state_dict().items())
