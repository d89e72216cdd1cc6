"""Every adversarial loss and regulariser on fixed inputs, against values worked out by hand
from its formula: StyleGAN2's logistic losses, the lazy R1 and path-length steps, BigGAN's
hinge losses and the conditioning they train through, FastGAN's hinge and reconstruction
losses; and, on one training step of each trainer, that the step's losses are these
formulas of the logits its D gave (so a flipped sign or a dropped term fails here)."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from mixgan.nets.biggan import ConditionalBatchNorm
from mixgan.nets.biggan import Generator as BigGANGenerator
from mixgan.study import RunKey, Study
from mixgan.train import biggan, fastgan, gan
from mixgan.train.distributed import SharedRandom
from mixgan.train.fastgan import FastGANTrainer
from mixgan.train.gan import GANTrainer

from .test_biggan_training import biggan_config, biggan_spec
from .test_fastgan import fastgan_config, fastgan_spec
from .test_gan_training import LOG, paths, tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")

LOGITS_REAL = torch.tensor([[2.0], [-1.0], [0.5]])
LOGITS_FAKE = torch.tensor([[-3.0], [0.0], [1.5], [0.25]])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.flatten()]


# -- StyleGAN2: the non-saturating logistic losses ------------------------------------------


def test_stylegan2_g_loss_is_the_mean_softplus_of_minus_the_fake_logits():
    expected = mean([softplus(-x) for x in floats(LOGITS_FAKE)])
    assert float(gan.nonsaturating_g_loss(LOGITS_FAKE)) == pytest.approx(expected, rel=1e-6)


def test_stylegan2_d_loss_is_softplus_of_the_fake_logits_and_of_minus_the_real_ones():
    expected = mean([softplus(x) for x in floats(LOGITS_FAKE)]) + mean(
        [softplus(-x) for x in floats(LOGITS_REAL)]
    )
    loss = gan.logistic_d_loss(LOGITS_REAL, LOGITS_FAKE)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


class Quadratic(torch.nn.Module):
    """D(x)_n = <w, x_n> + a/2 |x_n|²: grad_x D(x)_n = w + a x_n."""

    def __init__(self, w: list[float], a: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64).view(1, 1, 2))
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear = (self.w * x).sum([1, 2, 3])
        return (linear + 0.5 * self.a * x.square().sum([1, 2, 3]))[:, None]


class Stand(SimpleNamespace):
    """What a regularisation step of ``GANTrainer`` reads of its trainer, given by hand."""

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()  # the fp32 trainer's


def r1_players(d: Quadratic, gamma: float = 10.0, interval: int = 16) -> Stand:
    """What ``GANTrainer.r1_step`` reads of its trainer: D, the R1 settings, D's optimiser."""
    return Stand(
        discriminate=lambda images, main=True: d(images),
        train_cfg={"r1_gamma": gamma, "r1_interval": interval},
        opt_d=torch.optim.SGD(d.parameters(), lr=1e-3),
    )


REAL = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64).view(2, 1, 1, 2)


def test_r1_is_half_gamma_times_the_interval_times_the_mean_squared_input_gradient():
    # grad_x D = w + a x: (1, 0) and (0.5, -1.5) for w = (0.5, -1), a = 0.5, so the penalty
    # is mean(1, 2.5) = 1.75; d penalty / dw = mean 2 (w + a x) = (1.5, -1.5) and
    # d penalty / da = mean 2 (w + a x) . x = (2 + 3) / 2 = 2.5. The step's loss is
    # penalty x gamma / 2 x interval = 80 penalty: SGD (lr 1e-3) moves w by -0.08 (1.5, -1.5)
    # and a by -0.08 x 2.5.
    d = Quadratic([0.5, -1.0], 0.5)
    penalty = GANTrainer.r1_step(r1_players(d), REAL.clone())
    assert float(penalty) == pytest.approx(1.75)
    torch.testing.assert_close(d.w.detach().flatten(), torch.tensor([0.38, -0.88], dtype=d.w.dtype))
    assert float(d.a.detach()) == pytest.approx(0.3)


def test_r1_of_a_part_differentiates_the_parts_logits_and_else_ds():
    """A step's owner part may give the logits R1 penalises (CDC, MixDL: patch level)."""
    d, patch = Quadratic([0.5, -1.0], 0.5), Quadratic([2.0, 0.0], 0.0)
    players = r1_players(d, gamma=2.0, interval=1)
    seen = []

    def r1_logits(trainer, real):
        seen.append(real)
        return patch(real)

    owner = SimpleNamespace(r1_logits=r1_logits)
    # grad_x patch = (2, 0) for both images: penalty 4
    assert float(GANTrainer.r1_step(players, REAL.clone(), owner)) == pytest.approx(4.0)
    assert seen[0].requires_grad and seen[0] is not REAL
    owner = SimpleNamespace(r1_logits=lambda trainer, real: None)  # None: D's own logits
    assert float(GANTrainer.r1_step(players, REAL.clone(), owner)) == pytest.approx(1.75)


def test_path_lengths_are_the_root_mean_over_layers_of_the_squared_jacobian_product():
    # images = sum_l,d ws_ld² / 2 M_ld,k: (J^T y)_ld = ws_ld sum_k M_ld,k y_k
    torch.manual_seed(0)
    ws = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, 4, 5, dtype=torch.float64)
    y = torch.randn(3, 5, dtype=torch.float64)
    images = torch.einsum("nld,ldk->nk", ws.square() / 2, m)
    lengths = gan.path_lengths(images.view(3, 5, 1, 1), ws, y.view(3, 5, 1, 1))
    products = ws.detach() * torch.einsum("ldk,nk->nld", m, y)
    expected = [
        math.sqrt(mean([float(products[n, layer].square().sum()) for layer in range(2)]))
        for n in range(3)
    ]
    torch.testing.assert_close(lengths, torch.tensor(expected, dtype=torch.float64))
    assert lengths.requires_grad  # differentiable: the penalty trains G through it


def pl_stand(p: torch.Tensor, offsets: torch.Tensor, m: torch.Tensor, drawn: list) -> Stand:
    """What ``GANTrainer.pl_step`` reads: ws = p + offsets (z only counts the samples), a
    synthesis of 2x3 images sum_l,d ws_ld² / 2 M_ld,k, the settings, G's optimiser."""

    def synthesis(ws, noise_mode):
        return torch.einsum("nld,ldk->nk", ws.square() / 2, m).view(len(ws), 1, 2, 3)

    return Stand(
        train_cfg={"pl_batch_shrink": 2, "pl_decay": 0.01, "pl_weight": 2.0, "pl_interval": 4},
        sample_z=lambda n: drawn.append(n) or torch.zeros(n, 1),
        generate_ws=lambda z: p[None] + offsets[: len(z)],
        autocast=contextlib.nullcontext,
        G=SimpleNamespace(synthesis=synthesis),
        pl_mean=torch.tensor(0.5, dtype=torch.float64),
        opt_g=torch.optim.SGD([p], lr=1e-3),
        batch_rng=SharedRandom(7, torch.device("cpu")),  # y's stream
    )


def test_path_length_step_penalises_the_deviation_from_the_updated_mean_scaled_by_interval():
    torch.manual_seed(1)
    count, layers, dim = 4, 2, 2
    m = torch.randn(layers, dim, 6, dtype=torch.float64)
    offsets = torch.randn(count, layers, dim, dtype=torch.float64)
    p = torch.nn.Parameter(torch.randn(layers, dim, dtype=torch.float64))
    drawn: list[int] = []
    players = pl_stand(p, offsets, m, drawn)
    start = p.detach().clone()
    # y ~ N(0, I) / sqrt(H W), H W = 2 x 3, drawn for the float32 images from the batch stream
    noise = torch.randn(count, 1, 2, 3, generator=torch.Generator().manual_seed(7))
    noise = noise.double().view(count, 6) / math.sqrt(6)
    penalty = GANTrainer.pl_step(players, 8)
    assert drawn == [4]  # batch / pl_batch_shrink

    def lengths_of(base):
        ws = base[None] + offsets
        products = ws * torch.einsum("ldk,nk->nld", m, noise)
        return products.square().sum(2).mean(1).sqrt()

    lengths = lengths_of(start)
    pl_mean = 0.5 + 0.01 * (float(lengths.mean()) - 0.5)  # a += decay (mean length - a)
    assert float(players.pl_mean) == pytest.approx(pl_mean, rel=1e-6)
    assert float(penalty) == pytest.approx(float((lengths - pl_mean).square().mean()), rel=1e-5)
    base = start.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((lengths_of(base) - pl_mean).square().mean(), base)
    # the step's loss: penalty x pl_weight 2 x pl_interval 4
    torch.testing.assert_close(p.detach(), start - 1e-3 * 2.0 * 4 * grad, rtol=1e-5, atol=1e-8)


def test_path_length_step_takes_at_least_one_sample():
    p = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    drawn: list[int] = []
    m, offsets = torch.ones(2, 2, 6, dtype=torch.float64), torch.zeros(4, 2, 2, dtype=torch.float64)
    GANTrainer.pl_step(pl_stand(p, offsets, m, drawn), 3)
    GANTrainer.pl_step(pl_stand(p, offsets, m, drawn), 1)
    assert drawn == [1, 1]  # 3 // 2 and max(1 // 2, 1)


def test_r1_and_path_length_run_on_their_lazy_intervals(minimal_config, data, tmp_path):
    """StyleGAN2's lazy regularisation: R1 when step % r1_interval == 0 (and gamma > 0), the
    path-length step when step % pl_interval == 0 (and its weight > 0)."""
    spec = tiny_spec(minimal_config, method="none")
    spec["backbone"]["train"].update(r1_gamma=0.5, r1_interval=2, pl_weight=2.0, pl_interval=3)
    calls: list[tuple[str, int]] = []

    def spy(trainer: GANTrainer, name: str, run: bool = True) -> None:
        method = getattr(trainer, name)

        def wrapper(*args):
            calls.append((name, trainer.step))
            return method(*args) if run else torch.zeros(())

        setattr(trainer, name, wrapper)

    trainer = GANTrainer(spec, paths(data, tmp_path), LOG)
    spy(trainer, "r1_step")
    spy(trainer, "pl_step")
    logged = [trainer.train_step() for _ in range(5)]
    assert calls == [("pl_step", 0), ("r1_step", 0), ("r1_step", 2), ("pl_step", 3), ("r1_step", 4)]
    assert [float(x["r1"]) > 0 for x in logged] == [True, False, True, False, True]
    assert [float(x["pl"]) > 0 for x in logged] == [True, False, False, True, False]
    spec["backbone"]["train"].update(r1_gamma=0.0, pl_weight=0.0)
    trainer = GANTrainer(spec, paths(data, tmp_path / "none"), LOG)
    spy(trainer, "r1_step", run=False)
    spy(trainer, "pl_step", run=False)
    calls.clear()
    trainer.train_step()
    assert calls == []


# -- BigGAN: hinge losses and the conditioning of its generator ------------------------------


def test_biggan_d_hinge_loss_on_given_logits():
    # relu(1 - real): 0, 2, 0.5; relu(1 + fake): 0, 1, 2.5, 1.25
    expected = (0 + 2 + 0.5) / 3 + (0 + 1 + 2.5 + 1.25) / 4
    assert float(biggan.hinge_d_loss(LOGITS_REAL, LOGITS_FAKE)) == pytest.approx(expected)


def test_biggan_g_hinge_loss_is_minus_the_mean_fake_logit():
    assert float(biggan.hinge_g_loss(LOGITS_FAKE)) == pytest.approx(-(-3 + 0 + 1.5 + 0.25) / 4)


@torch.no_grad()
def test_conditional_batchnorm_gain_is_one_plus_a_linear_map_of_the_condition():
    """BigGAN-PyTorch's ccbn: out = bn(x) (1 + W_g y) + W_b y (eval: running statistics
    0 and 1, and the spectral norm from the stored vector, so every value is fixed)."""
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm(3, 5).eval()
    x, y = torch.randn(2, 3, 2, 2), torch.randn(2, 5)
    gain, bias = y @ cbn.gain.weight.T, y @ cbn.bias.weight.T
    expected = x / math.sqrt(1 + 1e-5) * (1 + gain[:, :, None, None]) + bias[:, :, None, None]
    torch.testing.assert_close(cbn(x, y), expected)


@torch.no_grad()
def test_each_biggan_block_is_conditioned_on_the_class_and_its_own_z_chunk():
    torch.manual_seed(0)
    generator = BigGANGenerator(3, 32, ch=4, z_dim=16, shared_dim=8).eval()
    chunk = generator.chunk
    assert (chunk, len(generator.blocks)) == (4, 3)  # 3 blocks and the 4x4 input: 4 chunks
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, value: torch.Tensor) -> None:  # a pre-hook returning None
        seen[name] = value

    generator.linear.register_forward_pre_hook(lambda m, args: keep("in", args[0]))
    for index, block in enumerate(generator.blocks):
        block.register_forward_pre_hook(lambda m, args, i=index: keep(str(i), args[1]))
    z, labels = torch.randn(2, 16), torch.tensor([2, 0])
    generator(z, labels)
    torch.testing.assert_close(seen["in"], z[:, :chunk])
    classes = generator.shared(labels)
    for index in range(3):
        own = z[:, chunk * (index + 1) : chunk * (index + 2)]
        torch.testing.assert_close(seen[str(index)], torch.cat([classes, own], dim=1))


# -- FastGAN: hinge losses with random margins, the reconstruction in D's loss -----------------


def margins(logits: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand_like(logits) * 0.2 + 0.8


def test_fastgan_hinge_losses_draw_a_margin_in_0_8_to_1_per_logit():
    logits = torch.tensor([[-2.0, 0.9], [0.0, 1.5]])
    m = margins(logits, 3)
    assert m.min() >= 0.8 and m.max() <= 1.0
    torch.manual_seed(3)
    assert float(fastgan.hinge_real(logits)) == pytest.approx(float((m - logits).relu().mean()))
    torch.manual_seed(3)
    assert float(fastgan.hinge_fake(logits)) == pytest.approx(float((m + logits).relu().mean()))
    # far on the right side of the margin costs nothing, whatever the margin
    assert float(fastgan.hinge_real(torch.full((3,), 1.0))) == 0.0
    assert float(fastgan.hinge_fake(torch.full((3,), -1.0))) == 0.0
    # on the wrong side, the margin adds to the distance: relu(m + 2) >= 2.8 for a fake at 2
    assert 2.8 <= float(fastgan.hinge_fake(torch.full((3,), 2.0))) <= 3.0


def test_fastgan_d_loss_adds_the_reconstruction_and_g_loss_is_minus_the_mean_logit():
    real, fake = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.4, 3.0]])
    m_real, m_fake = margins(real, 5), torch.rand_like(fake) * 0.2 + 0.8  # drawn in this order
    expected = (m_real - real).relu().mean() + (m_fake + fake).relu().mean() + 7.0
    torch.manual_seed(5)
    loss = fastgan.discriminator_loss(real, fake, torch.tensor(7.0))
    assert float(loss) == pytest.approx(float(expected))
    assert float(fastgan.generator_loss(fake)) == pytest.approx(-(0.2 - 0.4 + 3.0) / 3)


def test_fastgan_reconstruction_loss_sums_the_distances_over_decoders_and_images():
    recs = [torch.full((2, 1, 1, 2), 0.5), torch.ones(2, 1, 1, 2)]
    targets = [torch.tensor([1.5, -0.5, 0.5, 2.5]).view(2, 1, 1, 2), torch.ones(2, 1, 1, 2)]
    # per-image MSE: (1 + 1) / 2 = 1 and (0 + 4) / 2 = 2, then 0 and 0
    torch.testing.assert_close(fastgan.mse_distance(recs[0], targets[0]), torch.tensor([1.0, 2.0]))
    total = fastgan.reconstruction_loss(fastgan.mse_distance, recs, targets)
    assert float(total) == pytest.approx(3.0)


# -- one training step of each trainer: its losses are the formulas of its D's logits --------


def recording(function, seen: list):
    def wrapper(*args, **kwargs):
        out = function(*args, **kwargs)
        seen.append(out)
        return out

    return wrapper


def test_a_stylegan2_step_takes_the_logistic_losses_of_its_logits(minimal_config, data, tmp_path):
    trainer = GANTrainer(tiny_spec(minimal_config, method="none"), paths(data, tmp_path), LOG)
    seen: list[torch.Tensor] = []
    trainer.discriminate = recording(trainer.discriminate, seen)
    trainer.step = 1  # no R1, no path length
    stats = trainer.train_step()
    g_logits, d_fake, d_real = (floats(x.detach()) for x in seen)  # G step, then D's fakes, reals
    assert float(stats["loss_g"]) == pytest.approx(mean([softplus(-x) for x in g_logits]))
    expected = mean([softplus(x) for x in d_fake]) + mean([softplus(-x) for x in d_real])
    assert float(stats["loss_d"]) == pytest.approx(expected)


def test_a_biggan_step_takes_the_hinge_losses_of_its_logits(minimal_config, data32, tmp_path):
    spec = biggan_spec(biggan_config(minimal_config))
    trainer = biggan.BigGANTrainer(spec, paths(data32, tmp_path), LOG)
    seen: list[torch.Tensor] = []
    trainer.discriminate = recording(trainer.discriminate, seen)
    stats = trainer.train_step()
    d_real, d_fake, g_logits = (floats(x.detach()) for x in seen)
    expected_d = mean([max(0, 1 - x) for x in d_real]) + mean([max(0, 1 + x) for x in d_fake])
    assert float(stats["loss_d"]) == pytest.approx(expected_d)
    assert float(stats["loss_g"]) == pytest.approx(-mean(g_logits))


def fastgan_step(trainer: FastGANTrainer) -> tuple[dict, list, torch.Tensor]:
    """One step with D's outputs recorded, and the RNG state right after D's second call, the
    last before D's loss (the hinge losses draw their margins from there)."""
    seen: list = []
    states: list[torch.Tensor] = []

    def hook(module, args, out):
        seen.append(out)
        states.append(torch.get_rng_state())

    handle = trainer.D.register_forward_hook(hook)
    stats = trainer.train_step()
    handle.remove()
    return stats, seen, states[1]


def decoders(trainer: FastGANTrainer) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone()
        for k, v in trainer.D.named_parameters()
        if k.startswith(("decoder_big", "decoder_part", "decoder_small"))
    }


def test_a_fastgan_step_takes_the_hinge_and_reconstruction_losses(minimal_config, data32, tmp_path):
    trainer = FastGANTrainer(fastgan_spec(minimal_config), paths(data32, tmp_path), LOG)
    before = decoders(trainer)
    stats, seen, state = fastgan_step(trainer)
    (real, _), fake, g_logits = seen  # D on the reals (with decodings), on the fakes; G step
    torch.set_rng_state(state)
    m_real, m_fake = (torch.rand_like(x) * 0.2 + 0.8 for x in (real, fake))
    recon = float(stats["reconstruction"])
    assert recon > 0.5  # summed over decoders and images: too big to hide in the margins
    expected = (m_real - real).relu().mean() + (m_fake + fake).relu().mean() + recon
    assert float(stats["loss_d"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(stats["loss_g"]) == pytest.approx(-float(g_logits.detach().mean()), rel=1e-5)
    # the decoders serve the reconstruction loss only: D's step moved them
    assert all(not torch.equal(before[k], v) for k, v in decoders(trainer).items())


def fastgan_mixdl_trainer(minimal_config, data, run_dir, num_latents=None) -> FastGANTrainer:
    """A FastGAN run of method [mixdl] without the backbone's DiffAugment (D sees the images
    G made), with N = ``num_latents`` edges."""
    config = fastgan_config(minimal_config, diffaug_policy=[])
    config["parts"]["mixdl"] = {"kind": "mixdl", "projection_dim": 8, "num_latents": num_latents}
    config["methods"]["mixdl"] = ["mixdl"]
    config["tables"]["scoremix_table1"]["rows"].append({"backbone": "fg", "method": "mixdl"})
    spec = Study(config).run_spec(RunKey("shapes", "n12", "fg", "mixdl", 0))
    return FastGANTrainer(spec, paths(data, run_dir), LOG)


@pytest.mark.parametrize("num_latents", [None, 3])
def test_mixdl_on_fastgan_keeps_the_reconstruction_in_ds_loss(
    minimal_config, data32, tmp_path, num_latents
):
    trainer = fastgan_mixdl_trainer(minimal_config, data32, tmp_path, num_latents)
    [part] = trainer.parts
    assert part.computes_losses(0)
    before = decoders(trainer)
    kls = []
    part.discriminator_distance = recording(part.discriminator_distance, kls)
    stats, seen, state = fastgan_step(trainer)
    (real, _), fake = seen[:2]  # fakes: N edges then B anchors; the anchors are judged
    assert len(fake) == (num_latents or 4) + 4
    torch.set_rng_state(state)
    anchors = fake[-len(real) :]
    m_real, m_fake = (torch.rand_like(x) * 0.2 + 0.8 for x in (real, anchors))
    expected = (
        (m_real - real).relu().mean()
        + (m_fake + anchors).relu().mean()
        + float(stats["reconstruction"])
        + part.settings["lambda_d"] * float(kls[0].detach())
    )
    assert float(stats["loss_d"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert all(not torch.equal(before[k], v) for k, v in decoders(trainer).items())


@pytest.mark.parametrize("num_latents", [None, 3])
def test_mixdl_on_fastgan_g_loss_judges_the_anchors_and_adds_lambda_g_times_the_distance(
    minimal_config, data32, tmp_path, num_latents
):
    trainer = fastgan_mixdl_trainer(minimal_config, data32, tmp_path, num_latents)
    [part] = trainer.parts
    made, judged, kls = [], [], []
    trainer.G.register_forward_hook(lambda m, args, out: made.append(out.detach()))
    trainer.D.register_forward_hook(lambda m, args, out: judged.append((args[0], out)))
    part.generator_distance = recording(part.generator_distance, kls)
    loss = part.g_loss(trainer, 4)
    [images] = made
    [(seen, logits)] = judged
    assert len(images) == (num_latents or 4) + 4
    assert torch.equal(seen, images[-4:])  # the anchors, after the N edges
    expected = -float(logits.detach().mean()) + 1000 * float(kls[0].detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
