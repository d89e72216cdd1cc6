"""StarGAN v2: the networks against the official layout, the losses against hand-computed
values, and the trainer (official step structure, hooks, EMA, exact resume)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import io
import math

import pytest
import torch

from mixgan.nets.stargan2 import (
    AdaIN,
    StarGANv2Config,
    build_nets,
    count_parameters,
    he_init,
    load_official_checkpoint,
    load_official_state_dict,
    to_official_state_dict,
)
from mixgan.train.stargan2 import (
    StarGANv2Batch,
    StarGANv2Trainer,
    StarGANv2TrainSettings,
    adversarial_loss,
    cycle_loss,
    discriminator_loss,
    diversity_loss,
    ds_weight,
    generator_loss,
    r1_penalty,
    style_reconstruction_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: a tiny configuration for fast tests (the official widths are fixed by img_size)
TINY = StarGANv2Config(
    img_size=32, num_domains=3, latent_dim=4, style_dim=8, max_conv_dim=16, hidden_dim=16,
    base_dim=8,
)  # fmt: skip

#: The official networks at 256² with the AFHQ settings (Generator(256, 64, max_conv_dim=512,
#: w_hpf=0), MappingNetwork(16, 64, 3), StyleEncoder(256, 64, 3, 512), Discriminator(256, 3,
#: 512)), instantiated from clovaai/stargan-v2 core/model.py (commit 875b70a) in a scratch
#: script: (parameters, state_dict tensors, SHA-256 of the sorted "key:shape" lines of the
#: state_dict). The same script found our networks bit-identical to theirs: same initial
#: weights under one seed (default init, then he_init), and the same outputs after loading their
#: randomly initialised state_dicts with load_official_state_dict, at 32², 64² and 256².
OFFICIAL_256 = {
    "generator": (
        33_892_995,
        108,
        "c6b0355b6276382aad1637fa613983c7fe26406a221e86dc86627cfe92cad937",
    ),
    "mapping_network": (
        3_259_072,
        32,
        "ed4f6544ba5e099b5bca8483b8cad9ecf8b6590b63d265e766845de095ddca64",
    ),
    "style_encoder": (
        20_949_760,
        37,
        "11cdac077398b06d7e93625a8ac428f5f5a52e8aa998e6c7407616518c2cc58a",
    ),
    "discriminator": (
        20_852_803,
        33,
        "713f0ed4a07d0add5f132ac9acf2225dd1073cc946e3958a02dbc91db5836188",
    ),
}


def tiny_nets(seed: int = 0):
    torch.manual_seed(seed)
    nets = build_nets(TINY)
    for _, module in nets.items():
        module.apply(he_init)
    return nets


# ----------------------------------------------------------------------------------------------
# Networks.


def test_official_parameter_counts_and_layout_at_256() -> None:
    with torch.device("meta"):
        nets = build_nets(StarGANv2Config())
    for name, module in nets.items():
        params, tensors, digest = OFFICIAL_256[name]
        assert count_parameters(module) == params, name
        official = to_official_state_dict(module)
        assert len(official) == tensors, name
        listing = "\n".join(sorted(f"{k}:{tuple(v.shape)}" for k, v in official.items()))
        assert hashlib.sha256(listing.encode()).hexdigest() == digest, name


@pytest.mark.parametrize("img_size", [32, 64])
def test_output_shapes(img_size: int) -> None:
    config = dataclasses.replace(TINY, img_size=img_size)
    torch.manual_seed(0)
    nets = build_nets(config)
    x, y = torch.randn(3, 3, img_size, img_size), torch.tensor([0, 2, 1])
    style = nets.mapping_network(torch.randn(3, config.latent_dim), y)
    assert style.shape == (3, config.style_dim)
    assert nets.style_encoder(x, y).shape == (3, config.style_dim)
    out = nets.generator(x, style)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert nets.discriminator(x, y).shape == (3,)
    # the encoder stops at 16² / ... : log2(img_size) - 4 downsamplings, then 2 bottlenecks
    assert len(nets.generator.encoder) == int(math.log2(img_size)) - 4 + 2
    assert len(nets.style_encoder.blocks) == int(math.log2(img_size)) - 2


def test_heads_select_by_label() -> None:
    nets = tiny_nets()
    x, z = torch.randn(3, 3, 32, 32), torch.randn(3, TINY.latent_dim)
    y = torch.tensor([2, 0, 1])
    calls = {
        "mapping_network": lambda labels: nets.mapping_network(z, labels),
        "style_encoder": lambda labels: nets.style_encoder(x, labels),
        "discriminator": lambda labels: nets.discriminator(x, labels),
    }
    with torch.no_grad():
        for name, call in calls.items():
            per_domain = [call(torch.full((3,), d)) for d in range(TINY.num_domains)]
            mixed = call(y)
            for i, label in enumerate(y.tolist()):
                assert torch.equal(mixed[i], per_domain[label][i]), name
            assert not torch.equal(per_domain[0], per_domain[1]), name
    # changing domain 1's head changes only the samples labelled 1
    with torch.no_grad():
        before = nets.style_encoder(x, y)
        nets.style_encoder.heads[1].bias.add_(1.0)
        after = nets.style_encoder(x, y)
        before_f = nets.mapping_network(z, y)
        nets.mapping_network.heads[1][-1].bias.add_(1.0)
        after_f = nets.mapping_network(z, y)
    for old, new in ((before, after), (before_f, after_f)):
        assert torch.allclose(new[2] - old[2], torch.ones(TINY.style_dim))
        assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])


def test_official_state_dict_loads() -> None:
    """A state_dict under the official names (made by our mapping from a differently seeded
    network, with DataParallel's ``module.`` prefix) loads and reproduces the outputs."""
    source, target = tiny_nets(1), tiny_nets(2)
    depth = len(source.style_encoder.blocks)  # 3 residual blocks at 32²
    expected = {
        "generator": ["from_rgb.weight", "encode.0.conv1x1.weight", "encode.0.norm2.bias",
                      "decode.0.norm1.fc.weight", "decode.2.conv1x1.weight", "to_rgb.0.weight",
                      "to_rgb.2.bias"],
        "mapping_network": ["shared.0.weight", "shared.6.bias", "unshared.2.6.weight"],
        "style_encoder": ["shared.0.weight", "shared.1.conv1x1.weight",
                          f"shared.{depth + 2}.weight", "unshared.2.bias"],
        "discriminator": ["main.0.bias", f"main.{depth}.conv2.weight",
                          f"main.{depth + 2}.weight", f"main.{depth + 4}.weight"],
    }  # fmt: skip
    checkpoint = {}
    for name, module in source.items():
        official = to_official_state_dict(module)
        assert set(expected[name]) <= set(official), name
        checkpoint[name] = {"module." + key: value for key, value in official.items()}
    load_official_checkpoint(target, checkpoint)
    x, y, z = torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), torch.randn(2, TINY.latent_dim)

    def outputs(nets) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            style = nets.mapping_network(z, y)
            return nets.generator(x, style), nets.style_encoder(x, y), nets.discriminator(x, y)

    for a, b in zip(outputs(source), outputs(target), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(outputs(tiny_nets(2))[0], outputs(source)[0])
    official = to_official_state_dict(source.generator)
    with pytest.raises(KeyError, match="missing"):
        load_official_state_dict(target.generator, dict(list(official.items())[1:]))
    with pytest.raises(KeyError, match="unexpected"):
        load_official_state_dict(target.generator, {**official, "hpf.filter": torch.zeros(3)})


def test_only_w_hpf_0_and_powers_of_two() -> None:
    with pytest.raises(ValueError, match="w_hpf"):
        StarGANv2Config(w_hpf=1)
    with pytest.raises(ValueError, match="power of two"):
        StarGANv2Config(img_size=48)


def test_he_init_and_adain() -> None:
    nets = tiny_nets()
    conv = nets.discriminator.blocks[-1].conv1
    assert torch.all(conv.bias == 0)
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.15)
    # AdaIN: (1 + gamma) * instance_norm(x) + beta, gamma/beta from one linear layer
    adain = AdaIN(style_dim=2, channels=2)
    with torch.no_grad():
        adain.affine.weight.zero_()
        adain.affine.bias.copy_(torch.tensor([1.0, -0.5, 3.0, 0.0]))  # gamma (1, -0.5), beta (3, 0)
    x = torch.tensor([1.0, 3.0, 2.0, 6.0]).reshape(1, 2, 2, 1).expand(1, 2, 2, 2)
    out = adain(x, torch.zeros(1, 2))
    # instance norm (eps 1e-5): channel 0 is 2 ± 1 (variance 1), channel 1 is 4 ± 2 (variance 4)
    n0, n1 = 1 / math.sqrt(1 + 1e-5), 2 / math.sqrt(4 + 1e-5)
    assert torch.allclose(out[0, 0, :, 0], torch.tensor([3 - 2 * n0, 3 + 2 * n0]), atol=1e-6)
    assert torch.allclose(out[0, 1, :, 0], torch.tensor([-0.5 * n1, 0.5 * n1]), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Losses, against hand-computed values.


def test_adversarial_loss() -> None:
    logits = torch.tensor([0.0, math.log(3), -math.log(3)])
    # target 1: softplus(-x) = log(1 + e^-x) = log 2, log 4/3, log 4
    expected_1 = (math.log(2) + math.log(4 / 3) + math.log(4)) / 3
    assert adversarial_loss(logits, 1).item() == pytest.approx(expected_1)
    # target 0: softplus(x) = log 2, log 4 for logits 0, log 3
    logits0 = torch.tensor([0.0, math.log(3)])
    assert adversarial_loss(logits0, 0).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert adversarial_loss(logits0, 1).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    with pytest.raises(ValueError):
        adversarial_loss(logits, 2)


def test_r1_penalty() -> None:
    """D(x)_i = sum a * x_i²: grad_i = 2 a x_i; R1 = 0.5 * mean_i |grad_i|²."""
    a = torch.tensor([0.5, 1.0], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 1, 1, 2).requires_grad_(True)
    logits = (a * x.pow(2)).sum((1, 2, 3))
    r1 = r1_penalty(logits, x)
    # grads: [1, 4] -> 17, [3, -2] -> 13: 0.5 * (17 + 13) / 2
    assert r1.item() == pytest.approx(7.5)
    # differentiable: R1 = 0.5 * mean_i sum_k 4 a_k² x_ik², d/da_k = mean_i 4 a_k x_ik²
    (grad_a,) = torch.autograd.grad(r1, a)
    assert torch.allclose(grad_a, torch.tensor([4 * 0.5 * (1 + 9) / 2, 4 * 1.0 * (4 + 1) / 2]))


def test_discriminator_loss() -> None:
    real, fake = torch.tensor([math.log(3)]), torch.tensor([math.log(3)])
    # real -> 1: log 4/3; fake -> 0: log 4; plus lambda_reg * R1
    loss = discriminator_loss(real, fake, torch.tensor(2.0), lambda_reg=0.5)
    assert loss.item() == pytest.approx(math.log(4 / 3) + math.log(4) + 1.0)


def test_l1_terms() -> None:
    a = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    b = torch.tensor([[0.0, 1.0], [0.5, 2.0]])
    # |a - b| = 1, 3, 0, 2: mean 1.5
    assert style_reconstruction_loss(a, b).item() == pytest.approx(1.5)
    assert cycle_loss(a, b).item() == pytest.approx(1.5)
    fake, fake2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ds = diversity_loss(fake, fake2)
    assert ds.item() == pytest.approx(1.5)
    ds.backward()
    assert fake2.grad is None  # the second output is detached
    assert torch.equal(fake.grad, torch.sign(a - b) / 4)


def test_generator_loss_and_ds_decay() -> None:
    terms = [torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0)]
    # adv + 0.5 * sty - 2 * ds + 3 * cyc = 1 + 1 - 6 + 12
    loss = generator_loss(*terms, lambda_sty=0.5, lambda_ds=2.0, lambda_cyc=3.0)
    assert loss.item() == pytest.approx(8.0)
    assert ds_weight(0, 2.0, 100_000) == 2.0
    assert ds_weight(25_000, 2.0, 100_000) == pytest.approx(1.5)
    assert ds_weight(99_999, 2.0, 100_000) == pytest.approx(2e-5)
    assert ds_weight(100_000, 2.0, 100_000) == 0.0
    assert ds_weight(150_000, 2.0, 100_000) == 0.0


# ----------------------------------------------------------------------------------------------
# The trainer.


def batches(count: int, seed: int = 0, size: int = 4) -> list[StarGANv2Batch]:
    """Source and reference batches of a tiny 3-domain problem (no latents: the trainer's)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        images = [torch.rand(size, 3, 32, 32, generator=g) * 2 - 1 for _ in range(3)]
        out.append(
            StarGANv2Batch(
                x_src=images[0],
                y_src=torch.randint(3, (size,), generator=g),
                x_ref=images[1],
                x_ref2=images[2],
                y_ref=torch.randint(3, (size,), generator=g),
            )
        )
    return out


def tensors(trainer: StarGANv2Trainer) -> dict[str, torch.Tensor]:
    """Every tensor of the trainer's state (nets, EMA, optimiser moments) by a flat name."""
    state = trainer.state_dict()
    flat = {}
    for group in ("nets", "nets_ema"):
        for net, sd in state[group].items():
            flat.update({f"{group}.{net}.{k}": v for k, v in sd.items()})
    for net, opt in state["optims"].items():
        for idx, entry in opt["state"].items():
            flat.update({f"optims.{net}.{idx}.{k}": v for k, v in entry.items()})
    return flat


def test_settings_and_optimisers() -> None:
    settings = StarGANv2TrainSettings()
    assert (settings.lambda_reg, settings.lambda_sty, settings.lambda_ds, settings.lambda_cyc) == (
        1.0, 1.0, 2.0, 1.0
    )  # fmt: skip
    assert (settings.ds_iter, settings.total_iters, settings.batch_size) == (100_000, 100_000, 8)
    trainer = StarGANv2Trainer(TINY)
    for name, optim in trainer.optims.items():
        (group,) = optim.param_groups
        assert group["lr"] == (1e-6 if name == "mapping_network" else 1e-4), name
        assert tuple(group["betas"]) == (0.0, 0.99) and group["weight_decay"] == 1e-4
        module = getattr(trainer.nets, name)
        assert [id(p) for p in group["params"]] == [id(p) for p in module.parameters()]
    assert set(trainer.optims) == {"generator", "mapping_network", "style_encoder", "discriminator"}
    assert trainer.nets_ema.discriminator is None


def test_train_step_updates_and_ema() -> None:
    trainer = StarGANv2Trainer(TINY, seed=3)
    before = {name: copy.deepcopy(module) for name, module in trainer.nets.items()}
    ema_before = copy.deepcopy(trainer.nets_ema.generator)
    # the official EMA copies keep PyTorch's default init; the trained nets are He-initialised
    assert not torch.equal(
        trainer.nets.generator.stem.weight, trainer.nets_ema.generator.stem.weight
    )
    stats = trainer.train_step(batches(1)[0])
    prefixes = ("D/latent_", "D/ref_", "G/latent_", "G/ref_")
    keys = [p + k for p in prefixes[:2] for k in ("real", "fake", "reg")]
    keys += [p + k for p in prefixes[2:] for k in ("adv", "sty", "ds", "cyc")]
    assert set(stats) == {*keys, "G/lambda_ds"} and stats["G/lambda_ds"] == 2.0
    assert all(math.isfinite(v) for v in stats.values())
    for name, module in trainer.nets.items():
        changed = any(
            not torch.equal(p, q)
            for p, q in zip(module.parameters(), before[name].parameters(), strict=True)
        )
        assert changed, name
    # EMA: ema <- param + 0.999 (ema - param), after both G steps
    for p, e0, e1 in zip(
        trainer.nets.generator.parameters(),
        ema_before.parameters(),
        trainer.nets_ema.generator.parameters(),
        strict=True,
    ):
        assert torch.equal(e1, torch.lerp(p, e0, 0.999))
    assert trainer.step == 1


def test_official_step_order() -> None:
    """D (latent), D (reference), then G + F + E (latent), then G alone (reference), each after
    zeroing every optimiser's gradients (solver.py:108-134)."""
    trainer = StarGANv2Trainer(TINY)
    log: list[str] = []
    for name, optim in trainer.optims.items():
        optim.step = functools.partial(lambda n, step: (log.append(n), step())[1], name, optim.step)
        optim.zero_grad = functools.partial(
            lambda n, zero: (log.append("zero"), zero())[1], name, optim.zero_grad
        )
    trainer.train_step(batches(1, size=2)[0])
    steps = [entry for entry in log if entry != "zero"]
    assert steps == [
        "discriminator", "discriminator", "generator", "mapping_network", "style_encoder",
        "generator",
    ]  # fmt: skip
    # four rounds of zeroing all four optimisers, each before its step(s)
    assert log == (
        ["zero"] * 4 + ["discriminator"] + ["zero"] * 4 + ["discriminator"] + ["zero"] * 4
        + ["generator", "mapping_network", "style_encoder"] + ["zero"] * 4 + ["generator"]
    )  # fmt: skip


def test_ds_weight_decays_in_training() -> None:
    trainer = StarGANv2Trainer(TINY, StarGANv2TrainSettings(ds_iter=2))
    used = [trainer.train_step(b)["G/lambda_ds"] for b in batches(3, size=2)]
    assert used == [2.0, 1.0, 0.0]


def test_resume_is_bit_exact() -> None:
    data = batches(4)
    straight = StarGANv2Trainer(TINY, seed=5)
    stats_straight = [straight.train_step(b) for b in data]

    first = StarGANv2Trainer(TINY, seed=5)
    for b in data[:2]:
        first.train_step(b)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = StarGANv2Trainer(TINY, seed=123)  # the checkpoint overrides everything
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    stats_resumed = [resumed.train_step(b) for b in data[2:]]

    assert stats_resumed == stats_straight[2:]
    assert resumed.step == straight.step == 4
    a, b = tensors(straight), tensors(resumed)
    assert set(a) == set(b) and len(a) > 100
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other StarGAN v2 settings"):
        StarGANv2Trainer(TINY, StarGANv2TrainSettings(lambda_ds=1.0)).load_state_dict(
            first.state_dict()
        )


def test_hooks() -> None:
    data = batches(1)[0]
    calls: dict[str, list] = {"augment": [], "mix": []}

    def identity_augment(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls["augment"].append((images.clone(), labels.clone()))
        return images

    def first_style(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls["mix"].append((a.detach().clone(), b.detach().clone()))
        return a

    base = StarGANv2Trainer(TINY, seed=1)
    hooked = StarGANv2Trainer(
        TINY, seed=1, augment_inputs=identity_augment, style_mixer=first_style
    )
    assert base.train_step(data) == hooked.train_step(data)
    assert all(torch.equal(v, tensors(hooked)[k]) for k, v in tensors(base).items())
    # the source batch goes through augment_inputs once per iteration, with its labels
    ((images, labels),) = calls["augment"]
    assert torch.equal(images, data.x_src) and torch.equal(labels, data.y_src)
    # the style mixer runs in the two reference-guided steps, on E(x_ref, y) and E(x_ref2, y)
    assert len(calls["mix"]) == 2
    with torch.no_grad():
        expected_b = StarGANv2Trainer(TINY, seed=1).nets.style_encoder(data.x_ref2, data.y_ref)
    assert torch.equal(calls["mix"][0][1], expected_b)
    assert not torch.equal(calls["mix"][0][0], calls["mix"][0][1])

    # hooks that change something change the run
    base_stats = StarGANv2Trainer(TINY, seed=1).train_step(data)
    flipped = StarGANv2Trainer(TINY, seed=1, augment_inputs=lambda x, y: x.flip(3))
    mixed = StarGANv2Trainer(TINY, seed=1, style_mixer=lambda a, b: 0.5 * (a + b))
    reference = base.nets.generator.stem.weight
    stats = {}
    for name, trainer in (("flipped", flipped), ("mixed", mixed)):
        stats[name] = trainer.train_step(data)
        assert stats[name] != base_stats and math.isfinite(stats[name]["G/ref_adv"])
        assert not torch.equal(trainer.nets.generator.stem.weight, reference)
    # mixing styles touches only the reference-guided steps: the first D step is unchanged
    assert stats["mixed"]["D/latent_fake"] == base_stats["D/latent_fake"]
    assert stats["mixed"]["D/ref_fake"] != base_stats["D/ref_fake"]
    assert stats["flipped"]["D/latent_real"] != base_stats["D/latent_real"]


def test_latents_from_batch_or_trainer() -> None:
    data = batches(1)[0]
    g = torch.Generator().manual_seed(9)
    z, z2 = (
        torch.randn(4, TINY.latent_dim, generator=g),
        torch.randn(4, TINY.latent_dim, generator=g),
    )
    given = StarGANv2Trainer(TINY, seed=9)
    given.rng.manual_seed(0)  # unused when the batch brings its latents
    drawn = StarGANv2Trainer(TINY, seed=9)  # its generator starts at seed 9: the same z, z2
    explicit = StarGANv2Batch(data.x_src, data.y_src, data.x_ref, data.x_ref2, data.y_ref, z, z2)
    assert given.train_step(explicit) == drawn.train_step(data)
