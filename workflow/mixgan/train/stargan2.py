"""StarGAN v2 training (clovaai/stargan-v2 ``core/solver.py``): losses and one training step.

The losses are pure functions of tensors (``compute_d_loss`` / ``compute_g_loss`` split into
their terms). :class:`StarGANv2Trainer` holds the networks, their EMA copies and the Adam
optimisers and runs the official iteration (core/solver.py:99-143): a D step with a
latent-guided fake, a D step with a reference-guided fake, a G step with latent-guided styles
(updating G, the mapping network F and the style encoder E) and a G step with reference-guided
styles (updating G only), then the EMA of G, F and E.

Two hook points carry the augmentations of the image-to-image tracks (both ``None`` by default,
which is the official baseline bit for bit):

* ``augment_inputs(images, labels) -> images``: applied once per iteration to the source batch
  (the generator's input, which D also sees as real); ScoreMix, mixup, CutMix and AugMix
  augment there with labels kept true.
* ``style_mixer(style_a, style_b) -> style``: in the two reference-guided steps the style code
  becomes ``style_mixer(E(x_ref, y), E(x_ref2, y))``, the two references of one target domain
  that the official loader draws anyway (``ReferenceDataset``: a second random image of the
  same domain); the interpolation point of ReMix ("we interpolate the output of the style
  encoder"). The diversity term keeps ``E(x_ref2, y)`` as its second style.
* ``style_loss(style_pred, style_a, style_b) -> loss`` replaces the style reconstruction term
  of the reference-guided G step, given E(G(x, s'), y) and the two references' styles
  (ReMix's relative form, or the target of mixup / WM; ``mixgan.train.i2i_parts``).

Three more carry the discriminator-side parts (DiffAugment, ADA, LeCam): ``augment_d(images,
labels)`` transforms every batch D sees (reals, whose R1 gradient flows through it, and
fakes, in D and G steps), ``d_regularizer(logits_real, logits_fake)`` adds a term to D's loss,
and ``after_d_step(logits_real)`` reads D's outputs on the reals after each D step.

Randomness: the networks are built and He-initialised under ``torch.manual_seed(seed)`` (as
main.py:35 seeds before building the Solver) inside a forked RNG, and the latents a batch does
not bring come from the trainer's own generator, saved with its state, so a resumed run is
bit-exact on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixgan.nets.stargan2 import StarGANv2Config, StarGANv2Nets, build_nets, he_init

AugmentInputs = Callable[[Tensor, Tensor], Tensor]
StyleMixer = Callable[[Tensor, Tensor], Tensor]
StyleLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
DRegularizer = Callable[[Tensor, Tensor], Tensor | None]
AfterDStep = Callable[[Tensor], None]

#: the networks the EMA tracks and the official checkpoint ``_nets_ema`` holds (solver.py:137)
EMA_NETS = ("generator", "mapping_network", "style_encoder")


@dataclass(frozen=True)
class StarGANv2TrainSettings:
    """Loss weights and optimiser settings; defaults are the official AFHQ training command.

    Sources (clovaai/stargan-v2): ``lambda_reg`` 1, ``lambda_sty`` 1, ``lambda_cyc`` 1 and
    ``lambda_ds`` 2 (README, "Training networks", AFHQ: ``--lambda_reg 1 --lambda_sty 1
    --lambda_ds 2 --lambda_cyc 1``; main.py:105's default 1 is the CelebA-HQ value),
    ``ds_iter`` 100,000 (main.py:107), ``total_iters`` 100,000 (main.py:115), ``batch_size``
    8 (main.py:119; the trainer trains on the batch it is given), ``lr`` 1e-4 for G, E and D
    (main.py:123), ``f_lr`` 1e-6 for the mapping network (main.py:125, solver.py:49), Adam
    ``betas`` (0, 0.99) (main.py:127-130), ``weight_decay`` 1e-4 (main.py:131, Adam's L2
    term), ``ema_beta`` 0.999 (solver.py:137-139).
    """

    lambda_reg: float = 1.0
    lambda_sty: float = 1.0
    lambda_ds: float = 2.0
    lambda_cyc: float = 1.0
    ds_iter: int = 100_000
    total_iters: int = 100_000
    batch_size: int = 8
    lr: float = 1e-4
    f_lr: float = 1e-6
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    ema_beta: float = 0.999


# ----------------------------------------------------------------------------------------------
# Losses (core/solver.py:201-292).


def adversarial_loss(logits: Tensor, target: int) -> Tensor:
    """Non-saturating loss: binary cross-entropy of the logits against a constant 1 or 0
    (solver.py ``adv_loss``); mean over the batch."""
    if target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target}")
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def r1_penalty(logits: Tensor, images: Tensor) -> Tensor:
    """Zero-centred gradient penalty on real images (solver.py ``r1_reg``): half the squared
    norm of d(sum logits)/d images per image, averaged over the batch; differentiable."""
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True, retain_graph=True)
    return 0.5 * grad.pow(2).reshape(len(images), -1).sum(1).mean(0)


def discriminator_loss(
    logits_real: Tensor, logits_fake: Tensor, r1: Tensor, lambda_reg: float
) -> Tensor:
    """D's loss: real -> 1, fake -> 0, plus ``lambda_reg`` times R1 (solver.py:220)."""
    return adversarial_loss(logits_real, 1) + adversarial_loss(logits_fake, 0) + lambda_reg * r1


def style_reconstruction_loss(style_pred: Tensor, style_target: Tensor) -> Tensor:
    """Mean absolute error between E(G(x, s), y) and s (solver.py:244-245)."""
    return torch.mean(torch.abs(style_pred - style_target))


def diversity_loss(fake: Tensor, fake2: Tensor) -> Tensor:
    """Mean absolute difference of two outputs from two styles, the second detached
    (solver.py:252-254); G maximises it (it enters G's loss with a minus sign)."""
    return torch.mean(torch.abs(fake - fake2.detach()))


def cycle_loss(reconstructed: Tensor, real: Tensor) -> Tensor:
    """Mean absolute error between G(G(x, s), E(x, y_org)) and x (solver.py:258-260)."""
    return torch.mean(torch.abs(reconstructed - real))


def ds_weight(step: int, initial: float, ds_iter: int) -> float:
    """λ_ds at iteration ``step`` (0-based): ``initial`` decayed linearly to 0 over ``ds_iter``
    iterations. The official code subtracts ``initial / ds_iter`` after every iteration while
    the weight is positive (solver.py:141-143), i.e. this up to float rounding; clamped at 0."""
    return max(0.0, initial * (1.0 - step / ds_iter))


def generator_loss(
    adv: Tensor,
    sty: Tensor,
    ds: Tensor,
    cyc: Tensor,
    lambda_sty: float,
    lambda_ds: float,
    lambda_cyc: float,
) -> Tensor:
    """G's loss: adv + λ_sty sty − λ_ds ds + λ_cyc cyc (solver.py:262-263)."""
    return adv + lambda_sty * sty - lambda_ds * ds + lambda_cyc * cyc


# ----------------------------------------------------------------------------------------------
# Training.


@dataclass
class StarGANv2Batch:
    """One iteration's inputs (the official ``InputFetcher`` in train mode): source images and
    their domains, two reference images of each target domain, and optionally the two latents
    (drawn by the trainer when absent). Images are NCHW in [-1, 1]."""

    x_src: Tensor
    y_src: Tensor
    x_ref: Tensor
    x_ref2: Tensor
    y_ref: Tensor
    z_trg: Tensor | None = None
    z_trg2: Tensor | None = None


def moving_average(model: nn.Module, ema: nn.Module, beta: float) -> None:
    """ema <- lerp(param, ema, beta) = param + beta (ema − param), parameters only
    (solver.py ``moving_average``; the networks have no buffers)."""
    with torch.no_grad():
        for param, param_ema in zip(model.parameters(), ema.parameters(), strict=True):
            param_ema.copy_(torch.lerp(param, param_ema, beta))


class StarGANv2Trainer:
    """Networks, EMA copies, optimisers and the official training iteration."""

    def __init__(
        self,
        config: StarGANv2Config,
        settings: StarGANv2TrainSettings | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        augment_inputs: AugmentInputs | None = None,
        style_mixer: StyleMixer | None = None,
        style_loss: StyleLoss | None = None,
        augment_d: AugmentInputs | None = None,
        d_regularizer: DRegularizer | None = None,
        after_d_step: AfterDStep | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or StarGANv2TrainSettings()
        self.device = torch.device(device)
        self.augment_inputs = augment_inputs
        self.style_mixer = style_mixer
        self.style_loss = style_loss
        self.augment_d = augment_d
        self.d_regularizer = d_regularizer
        self.after_d_step = after_d_step
        self._logits_real: Tensor | None = None
        self.step = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets = build_nets(config)
            # The official EMA copies are deep copies made in build_model (core/model.py:288-
            # 290), before the Solver He-initialises the trained networks (solver.py:61-65):
            # they start from PyTorch's default initialisation.
            ema = StarGANv2Nets(*(copy.deepcopy(getattr(nets, name)) for name in EMA_NETS))
            for _, module in nets.items():
                module.apply(he_init)
        self.nets = StarGANv2Nets(*(module.to(self.device) for _, module in nets.items()))
        self.nets_ema = StarGANv2Nets(*(module.to(self.device) for _, module in ema.items()))
        for _, module in self.nets_ema.items():
            module.requires_grad_(False)
        s = self.settings
        self.optims = {
            name: torch.optim.Adam(
                module.parameters(),
                lr=s.f_lr if name == "mapping_network" else s.lr,
                betas=(s.beta1, s.beta2),
                weight_decay=s.weight_decay,
            )
            for name, module in self.nets.items()
        }
        self.rng = torch.Generator().manual_seed(seed)

    # -- one iteration ---------------------------------------------------------------------

    def _styles(
        self, labels: Tensor, z: Tensor | None, refs: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """The target style: F(z, y), E(x_ref, y), or the style mixer of E(x_ref, y) and
        E(x_ref2, y) when one is set."""
        nets = self.nets
        if z is not None:
            return nets.mapping_network(z, labels)
        assert refs is not None
        style = nets.style_encoder(refs[0], labels)
        if self.style_mixer is not None:
            style = self.style_mixer(style, nets.style_encoder(refs[1], labels))
        return style

    def _d(self, images: Tensor, labels: Tensor) -> Tensor:
        """D's logits of ``images`` seen through ``augment_d`` (when set)."""
        if self.augment_d is not None:
            images = self.augment_d(images, labels)
        return self.nets.discriminator(images, labels)

    def d_loss(
        self,
        x_real: Tensor,
        y_org: Tensor,
        y_trg: Tensor,
        z: Tensor | None = None,
        refs: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """D's loss with a latent-guided (``z``) or reference-guided (``refs``) fake
        (solver.py ``compute_d_loss``) and its terms."""
        if (z is None) == (refs is None):
            raise ValueError("give exactly one of z and refs")
        x_real = x_real.detach().requires_grad_(True)
        out_real = self._d(x_real, y_org)
        r1 = r1_penalty(out_real, x_real)
        with torch.no_grad():
            x_fake = self.nets.generator(x_real, self._styles(y_trg, z, refs))
        out_fake = self._d(x_fake, y_trg)
        loss = discriminator_loss(out_real, out_fake, r1, self.settings.lambda_reg)
        real, fake = adversarial_loss(out_real, 1), adversarial_loss(out_fake, 0)
        terms = {"real": real.item(), "fake": fake.item(), "reg": r1.item()}
        if self.d_regularizer is not None:
            extra = self.d_regularizer(out_real, out_fake)
            if extra is not None:
                loss = loss + extra
                terms["extra"] = extra.item()
        self._logits_real = out_real.detach()
        return loss, terms

    def g_loss(
        self,
        x_real: Tensor,
        y_org: Tensor,
        y_trg: Tensor,
        zs: tuple[Tensor, Tensor] | None = None,
        refs: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """G's loss with latent-guided (``zs``) or reference-guided (``refs``) styles
        (solver.py ``compute_g_loss``) and its terms."""
        if (zs is None) == (refs is None):
            raise ValueError("give exactly one of zs and refs")
        nets, s = self.nets, self.settings
        style = self._styles(y_trg, zs[0] if zs else None, refs)
        x_fake = nets.generator(x_real, style)
        adv = adversarial_loss(self._d(x_fake, y_trg), 1)
        style_pred = nets.style_encoder(x_fake, y_trg)
        if refs is not None and self.style_loss is not None:
            style_b = nets.style_encoder(refs[1], y_trg)
            sty = self.style_loss(style_pred, nets.style_encoder(refs[0], y_trg), style_b)
        else:
            sty = style_reconstruction_loss(style_pred, style)
        if zs is not None:
            style2 = nets.mapping_network(zs[1], y_trg)
        else:
            assert refs is not None
            style2 = nets.style_encoder(refs[1], y_trg)
        ds = diversity_loss(x_fake, nets.generator(x_real, style2))
        x_rec = nets.generator(x_fake, nets.style_encoder(x_real, y_org))
        cyc = cycle_loss(x_rec, x_real)
        lambda_ds = ds_weight(self.step, s.lambda_ds, s.ds_iter)
        loss = generator_loss(adv, sty, ds, cyc, s.lambda_sty, lambda_ds, s.lambda_cyc)
        terms = {"adv": adv.item(), "sty": sty.item(), "ds": ds.item(), "cyc": cyc.item()}
        return loss, terms

    def _d_update(self, loss: Tensor) -> None:
        """D's step, then ``after_d_step`` with its logits on the reals."""
        self._update(loss, "discriminator")
        if self.after_d_step is not None and self._logits_real is not None:
            self.after_d_step(self._logits_real)

    def _update(self, loss: Tensor, *names: str) -> None:
        """Zero every optimiser's gradients (solver.py ``_reset_grad``), backpropagate, and
        step the optimisers of ``names``."""
        for optim in self.optims.values():
            optim.zero_grad()
        loss.backward()
        for name in names:
            self.optims[name].step()

    def _latents(self, batch: StarGANv2Batch) -> tuple[Tensor, Tensor]:
        count, dim = len(batch.x_src), self.config.latent_dim
        z = batch.z_trg if batch.z_trg is not None else torch.randn(count, dim, generator=self.rng)
        z2 = batch.z_trg2
        if z2 is None:
            z2 = torch.randn(count, dim, generator=self.rng)
        return z.to(self.device), z2.to(self.device)

    def train_step(self, batch: StarGANv2Batch) -> dict[str, float]:
        """One official iteration; returns the loss terms (``D/latent_real``, …, ``G/ref_cyc``)
        and the λ_ds it used."""
        dev = self.device
        x_real, y_org = batch.x_src.to(dev), batch.y_src.to(dev)
        x_ref, x_ref2, y_trg = batch.x_ref.to(dev), batch.x_ref2.to(dev), batch.y_ref.to(dev)
        z_trg, z_trg2 = self._latents(batch)
        if self.augment_inputs is not None:
            x_real = self.augment_inputs(x_real, y_org).detach()
        refs = (x_ref, x_ref2)

        loss, d_latent = self.d_loss(x_real, y_org, y_trg, z=z_trg)
        self._d_update(loss)
        loss, d_ref = self.d_loss(x_real, y_org, y_trg, refs=refs)
        self._d_update(loss)
        loss, g_latent = self.g_loss(x_real, y_org, y_trg, zs=(z_trg, z_trg2))
        self._update(loss, "generator", "mapping_network", "style_encoder")
        loss, g_ref = self.g_loss(x_real, y_org, y_trg, refs=refs)
        self._update(loss, "generator")

        for name in EMA_NETS:
            moving_average(
                getattr(self.nets, name), getattr(self.nets_ema, name), self.settings.ema_beta
            )
        stats = {
            "G/lambda_ds": ds_weight(self.step, self.settings.lambda_ds, self.settings.ds_iter)
        }
        for prefix, terms in (
            ("D/latent_", d_latent),
            ("D/ref_", d_ref),
            ("G/latent_", g_latent),
            ("G/ref_", g_ref),
        ):
            stats.update({prefix + key: value for key, value in terms.items()})
        self.step += 1
        return stats

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs: step, networks, EMA copies, optimisers, the latent
        generator's state, and the settings (checked on load)."""
        return {
            "step": self.step,
            "config": asdict(self.config),
            "settings": asdict(self.settings),
            "nets": {name: module.state_dict() for name, module in self.nets.items()},
            "nets_ema": {name: module.state_dict() for name, module in self.nets_ema.items()},
            "optims": {name: optim.state_dict() for name, optim in self.optims.items()},
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into a trainer built with the same settings."""
        if state["config"] != asdict(self.config) or state["settings"] != asdict(self.settings):
            raise ValueError("the checkpoint was written with other StarGAN v2 settings")
        for name, module in self.nets.items():
            module.load_state_dict(state["nets"][name])
        for name, module in self.nets_ema.items():
            module.load_state_dict(state["nets_ema"][name])
        for name, optim in self.optims.items():
            optim.load_state_dict(state["optims"][name])
        self.rng.set_state(state["rng"])
        self.step = int(state["step"])
