"""Method parts: small objects that hook into the GAN loop without forking it.

A method is a list of named parts from the config (``[diffaug, scoremix, ada]``). Each part may
act at these points of a D step:

* ``extra_real`` — extra images D sees as real (ScoreMix's static augmented set);
* ``augment_real`` — transform the real batch (ScoreMix's growing-mu mode, AugMix);
* ``augment_d_input`` — transform every batch D sees, real and fake (mixup, CutMix,
  DiffAugment, ADA); it also runs in G steps;
* ``d_regularizer`` — extra loss terms of D (LeCam);
* ``after_d_step`` — read D's outputs on reals (ADA's p);

and at one more point of a G step: ``g_regularizer`` — an extra loss term of G from the
batch's latents z and images (MSGAN, N-Div, DistanceGAN). Before training,
``set_training_images`` shows each part the training subset (DistanceGAN's statistics) and
``initialize_networks`` and ``initial_ema`` let it set the starting weights of G, D and G_ema
(CDC's source model, whose record ``networks`` returns for the run's provenance).

A part may also take over whole steps (MixDL, CDC): ``computes_losses(step)`` says which steps,
and on those the loop asks the part for the G step's loss (``g_loss``) and the D step's loss
and logits (``d_loss``) instead of computing the standard non-saturating losses; it lends the
part the networks, the step, its latent sampling, the other parts' ``augment_d_input`` and
its autocast (``Players``). The remaining D-step hooks still run on such steps
(``augment_real`` on the real batch, ``d_regularizer`` and ``after_d_step`` with the part's
logits, and the lazy R1 on the part's ``r1_logits`` when it gives some: CDC's patch level);
``g_regularizer`` runs on standard steps only. At most one part of a method may
take over steps. Modules a part trains beside D (``trainable_modules``: heads reading D's
features) are trained by D's optimiser with its Adam settings, frozen in G steps, and saved
with the part's ``state_dict``.

In a class-conditional run (BigGAN) ``augment_real`` and ``augment_d_input`` also get the
batch's class labels, which a transform must keep true (mixing pairs images of one class),
and ``extra_real_labels`` gives the classes of ``extra_real``'s images.

Parts run in the order of their ``stage`` (1: real data, 2: mixing within a batch,
3: differentiable augmentation, 4: regularizers), config order within a stage, so
``[diffaug, mixup]`` mixes first and augments the mixtures.

A new augmentation or regularizer is one class here, one entry of ``PART_BUILDERS`` and one
``kind`` in the config schema (and ``mixgan.registry.PARTS``). MixDL's losses, samplers and
heads live in ``mixgan.train.mixdl``, the mode-collapse losses in
``mixgan.train.mode_collapse``, CDC's in ``mixgan.train.cdc``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mixgan.augment.ada import AdaController, ada_augment
from mixgan.augment.diffaug import diff_augment
from mixgan.augment.mixing import cutmix, make_augmix, mixup, partners
from mixgan.augment.scoremix import ScoreMixer
from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.io import read_json
from mixgan.nets.stylegan2 import Discriminator, FullyConnectedLayer, Generator
from mixgan.scores import sample_lambdas
from mixgan.train import cdc, mixdl, mode_collapse
from mixgan.train.scorenet import load_score_net


@dataclass
class PartInputs:
    """Files and device some parts need (from the training command's arguments)."""

    augmented_zip: Path | None = None
    scorenet: Path | None = None
    source_model: Path | None = None
    device: torch.device = torch.device("cpu")


class Players(Protocol):
    """What the training loop lends a part that computes a step's losses (``GANTrainer``)."""

    G: Generator
    D: Discriminator
    step: int

    def sample_z(self, count: int) -> torch.Tensor:
        """Input latents z ~ N(0, I) of ``count`` new samples."""
        ...

    def generate_ws(self, z: torch.Tensor) -> torch.Tensor:
        """w [len(z), num_ws, w_dim] of input latents ``z``, with the run's style mixing."""
        ...

    def mapped_ws(self, count: int) -> torch.Tensor:
        """w [count, num_ws, w_dim] of new latents z ~ N(0, I), without style mixing."""
        ...

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """The method's ``augment_d_input`` chain, as every batch D sees gets it."""
        ...

    def autocast(self) -> torch.autocast:
        """The run's autocast for the synthesis network and D."""
        ...


class Part:
    """Base class: every hook is a no-op."""

    stage: ClassVar[int] = 0
    takes_steps: ClassVar[bool] = False  # may return True from computes_losses

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.settings = settings

    def extra_real(self) -> torch.Tensor | None:
        """NCHW uint8 images to add to the real pool, or ``None``."""
        return None

    def extra_real_labels(self) -> torch.Tensor | None:
        """The class labels of :meth:`extra_real`'s images (class-conditional runs)."""
        return None

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Transform the real batch ([-1, 1]) before D sees it; a class-conditional run gives
        the batch's ``labels``, which a transform must keep true."""
        return real

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Transform a batch D sees (real or fake, with its ``labels`` when conditional)."""
        return images

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        return None

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        """Called once per D step with D's logits on the (augmented) real batch."""

    def g_regularizer(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        """An extra term of G's loss on a standard step: ``latents`` [B, z_dim] are the
        samples' input latents z, ``images`` G's output ([-1, 1], before any augmentation)."""
        return None

    def set_training_images(self, images: torch.Tensor) -> None:
        """Called once before training with the training subset (NCHW uint8, on the CPU)."""

    def initialize_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """Called once with the new G and D (on their device), before the EMA copy of G,
        the parts' modules and the optimisers exist; a resumed run then loads its
        checkpoint over them."""

    def initial_ema(self) -> dict[str, torch.Tensor] | None:
        """G_ema's starting weights when not G's (CDC: the source's G_ema), or ``None``."""
        return None

    def networks(self) -> dict[str, dict[str, Any]]:
        """Records (path, SHA-256, stand-in flag) of pretrained networks the part uses."""
        return {}

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        """Modules to train beside D, built for these networks (called once, before the
        optimisers exist); the loop moves them to D's device and format, optimises them with
        D's Adam and freezes them in G steps. ``state_dict`` must carry their weights."""
        return []

    def computes_losses(self, step: int) -> bool:
        """True when this part computes the losses of training step ``step`` itself."""
        return False

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        """The G step's loss on a step this part computes (``batch`` samples)."""
        raise NotImplementedError

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The D step's loss on a step this part computes, given the real batch (after the
        ``augment_real`` hooks), with the logits on reals and fakes that the other hooks and
        the training curve get (one value per image, ``[N, 1]``)."""
        raise NotImplementedError

    def r1_logits(self, players: Players, real: torch.Tensor) -> torch.Tensor | None:
        """On a step this part computes, the logits [N, 1] of the (augmented) reals ``real``
        whose input gradient the lazy R1 penalises, differentiable twice; ``None``: D's."""
        return None

    def stats(self) -> dict[str, float]:
        """Values to log in the training curve."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""


class ScoreMixStatic(Part):
    """ScoreMix with a static ratio mu: the augmented set (mu x N images) is extra real data."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], augmented_zip: Path | None):
        super().__init__(name, settings)
        if settings["mu"] > 0 and augmented_zip is None:
            raise ValueError(f"part {name}: mu = {settings['mu']} needs its augmented set")
        self.augmented_zip = augmented_zip

    def extra_real(self) -> torch.Tensor | None:
        if self.settings["mu"] == 0:
            return None
        return to_tensor(read_image_zip(self.augmented_zip))

    def extra_real_labels(self) -> torch.Tensor | None:
        """Each augmented image's class (its pair's), from the set's record; only a set
        mixed within classes (``pairs: same_class``) has them."""
        if self.settings["mu"] == 0:
            return None
        record = self.augmented_zip.with_suffix(".json")
        labels = read_json(record).get("labels")
        if labels is None:
            raise ValueError(
                f"{record}: part {self.name} mixed across classes; a class-conditional run "
                f"needs parts.{self.name}.pairs: same_class"
            )
        return torch.tensor(labels)


class ScoreMixOnline(Part):
    """ScoreMix with growing mu: at each D step, with probability ``probability``, the real
    batch is replaced by ScoreMix images of pairs drawn within it, so the number of augmented
    images D has seen grows without bound (mu -> infinity, Figure 4's "growing" curve)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], mixer: ScoreMixer):
        super().__init__(name, settings)
        self.mixer = mixer
        self.augmented_batches = 0

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        count = len(real)
        if count < 2 or torch.rand(()) >= self.settings["probability"]:
            return real
        partner = partners(count, labels)
        lam = sample_lambdas(count, self.settings["alpha"])
        images = (real + 1) / 2
        self.augmented_batches += 1
        return self.mixer(images, images[partner.to(real.device)], lam) * 2 - 1

    def stats(self) -> dict[str, float]:
        return {"scoremix_batches": float(self.augmented_batches)}

    def state_dict(self) -> dict[str, Any]:
        return {"augmented_batches": self.augmented_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augmented_batches = state.get("augmented_batches", 0)


class AugMixReal(Part):
    """torchvision's AugMix of each real image, as the paper uses it (severity, width, depth
    and alpha from the config; the reference implementation's values by default)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.augmix = make_augmix(
            settings["severity"], settings["width"], settings["depth"], settings["alpha"]
        )

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = (real + 1) / 2
        return self.augmix(images, images, torch.ones(len(real))) * 2 - 1


class BatchMixing(Part):
    """mixup or CutMix of every batch D sees with a shuffled copy of itself, so reals mix
    with reals and fakes with fakes (no label leaking); lambda ~ Beta(alpha, alpha). In a
    class-conditional run each image mixes with one of its own class, keeping its label."""

    stage = 2

    def __init__(self, name: str, settings: dict[str, Any], mix: Callable):
        super().__init__(name, settings)
        self.mix = mix

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        count = len(images)
        if count < 2:
            return images
        partner = partners(count, labels)
        lam = sample_lambdas(count, self.settings["alpha"]).float()
        return self.mix(images, images[partner.to(images.device)], lam)


class DiffAugment(Part):
    """DiffAugment on every image D sees, real and fake (Zhao et al. 2020)."""

    stage = 3

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return diff_augment(images, self.settings["policy"])


class ADA(Part):
    """Adaptive discriminator augmentation: the bgc pipeline on every image D sees, with a
    probability p steered by the sign of D's outputs on reals (target ``target``)."""

    stage = 3

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.controller = AdaController(
            settings["target"], settings["interval"], settings["speed_kimg"]
        )

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return ada_augment(images, self.controller.p)

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        self.controller.update(logits_real)

    def stats(self) -> dict[str, float]:
        return {"ada_p": self.controller.p, "ada_rt": self.controller.last_rt}

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.controller.load_state_dict(state)


def lecam_penalty(
    logits_real: torch.Tensor,
    logits_fake: torch.Tensor,
    anchor_real: float | torch.Tensor,
    anchor_fake: float | torch.Tensor,
) -> torch.Tensor:
    """LeCam (Tseng et al. 2021): E[relu(D(x) - a_F)²] + E[relu(a_R - D(G(z)))²]."""
    return (
        F.relu(logits_real - anchor_fake).square().mean()
        + F.relu(anchor_real - logits_fake).square().mean()
    )


class LeCam(Part):
    """LeCam regularization of D, with EMA anchors a_R, a_F of D's mean outputs."""

    stage = 4

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.anchor_real: torch.Tensor | None = None
        self.anchor_fake: torch.Tensor | None = None

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        real, fake = logits_real.detach().mean(), logits_fake.detach().mean()
        if self.anchor_real is None:  # the first batch's means start the averages
            self.anchor_real, self.anchor_fake = real, fake
        else:
            decay = self.settings["ema_decay"]
            self.anchor_real = self.anchor_real.to(real.device).lerp(real, 1 - decay)
            self.anchor_fake = self.anchor_fake.to(fake.device).lerp(fake, 1 - decay)
        penalty = lecam_penalty(logits_real, logits_fake, self.anchor_real, self.anchor_fake)
        return self.settings["weight"] * penalty

    def stats(self) -> dict[str, float]:
        if self.anchor_real is None:
            return {"lecam_anchor_real": math.nan, "lecam_anchor_fake": math.nan}
        return {
            "lecam_anchor_real": float(self.anchor_real),
            "lecam_anchor_fake": float(self.anchor_fake),
        }

    def state_dict(self) -> dict[str, Any]:
        if self.anchor_real is None:
            return {}
        return {"anchor_real": float(self.anchor_real), "anchor_fake": float(self.anchor_fake)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.anchor_real = torch.tensor(state["anchor_real"])
            self.anchor_fake = torch.tensor(state["anchor_fake"])


def _per_image(patch_logits: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] patch logits -> [N, 1] means."""
    return patch_logits.flatten(1).mean(1, keepdim=True)


class MixDL(Part):
    """MixDL (Kong, SNU 2023 thesis, sections 3.2-3.4): mixup-based distance learning.

    Steps with ``step % standard_every == 0`` are standard GAN steps; the others are MixDL
    steps (official code: ``--interp_freq 2``, i.e. every other step; the thesis does not say).
    On a MixDL step, with N = ``num_latents`` (default: the batch size, as the official code's
    batch x batch coefficient matrix) and B = the batch size:

    * latents: N edges w_i = mapping(z_i) in W (no style mixing) and B anchors
      w0_b = sum_i c_bi w_i, c_b ~ ``coefficients`` (``mixgan.train.mixdl.sample_coefficients``),
      p_b = softmax(c_b);
    * G step: non-saturating loss of the anchors' images under the patch-level D (a random
      head of ``PatchHeads`` on D's activations at ``patch_resolutions``), plus lambda_G x
      KL(q || p), q_b = softmax_i cos(G_l(w0_b), G_l(w_i)) at a layer l drawn per anchor among
      the synthesis layers but the first and last (``generator_layer_candidates``). One batch
      of edges and anchors serves both terms (the official code draws a second batch for the
      distance term);
    * D step: logistic loss of the patch-level D on the real batch and on the anchors' images
      (each D call drawing its head), plus lambda_D x KL(r || p),
      r_b = softmax_i cos(proj(d1(G(w0_b))), proj(d1(G(w_i)))), d1 = D up to its last FC
      layer (its ``b4.fc`` features) and proj a linear layer of ``projection_dim`` outputs
      (thesis section 3.3; the official StyleGAN2 code has none, its FastGAN code a 512-wide
      one; ``projection_dim: 0`` compares d1 directly).

    The images pass through the method's other ``augment_d_input`` parts (DiffAugment, ADA)
    as in the official code. ``generator_loss``/``discriminator_loss: false`` drop the
    respective distance term (Table 5's D-only/G-only rows, the official code's
    ``--kl_wt 0``/``--d_kl_wt 0``) and leave the patch-level adversarial game. The logits the
    other hooks and the curve get are the per-image means of the patch logits (so ADA counts
    images, not patches). The passes run eagerly (not through ``torch.compile``). The KL is
    the thesis' KL(. || p) unless ``kl_direction: p_q`` (the official code's KL(p || .)), with
    the official reduction (``mixdl.distance_kl``). ``loss_g``/``loss_d`` of a MixDL step
    include the weighted distance terms; logged apart: ``mixdl_g_kl`` and ``mixdl_d_kl``, the
    unweighted distance losses of the latest MixDL step.
    """

    stage = 4
    takes_steps = True

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.patch_heads: mixdl.PatchHeads | None = None
        self.patch_names: list[str] = []
        self.projection: nn.Module | None = None
        self.layer_names: list[str] = []
        self.last: dict[str, torch.Tensor | float] = {}
        if settings["generator_loss"]:
            self.last["mixdl_g_kl"] = math.nan
        if settings["discriminator_loss"]:
            self.last["mixdl_d_kl"] = math.nan

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        if self.settings["generator_loss"]:
            self.layer_names = mixdl.generator_layer_candidates(generator.synthesis)
        taps = mixdl.patch_taps(discriminator, self.settings["patch_resolutions"])
        self.patch_names = [name for name, _ in taps]
        self.patch_heads = mixdl.PatchHeads([channels for _, channels in taps])
        modules: list[nn.Module] = [self.patch_heads]
        if self.settings["discriminator_loss"] and self.settings["projection_dim"] > 0:
            width = discriminator.channels[4]  # of d1's output, b4.fc
            self.projection = FullyConnectedLayer(width, self.settings["projection_dim"])
            modules.append(self.projection)
        return modules

    def computes_losses(self, step: int) -> bool:
        return step % self.settings["standard_every"] != 0

    def _latents(
        self, players: Players, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges ws [N, num_ws, w_dim], coefficients c [B, N] and anchors [B, num_ws, w_dim]."""
        count = self.settings["num_latents"] or batch
        ws = players.mapped_ws(count)
        c = mixdl.sample_coefficients(
            self.settings["coefficients"], batch, count, self.settings["dirichlet_alpha"],
            ws.device,
        )  # fmt: skip
        return ws, c, mixdl.mix_latents(c, ws)

    def _discriminate(
        self, players: Players, images: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Patch logits [N, 1, H, W] of ``images`` (augmented here) from a random head;
        ``features`` receives D's activations."""
        index = int(torch.randint(len(self.patch_names), ()))
        images = players.augment(images)
        with players.autocast():
            players.D(images, None, features=features)
            logits = self.patch_heads(features[self.patch_names[index]], index)
        return logits.float()

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        ws, c, anchors = self._latents(players, batch)
        distance = self.settings["generator_loss"]
        latents = torch.cat([ws, anchors]) if distance else anchors  # edges only for L_dist^G
        features: dict[str, torch.Tensor] = {}
        with players.autocast():
            images = players.G.synthesis(latents, noise_mode="random", features=features)
        logits = self._discriminate(players, images[-batch:].float(), {})
        loss = F.softplus(-logits).mean()
        if distance:
            kl = self.generator_distance(features, c, len(ws))
            self.last["mixdl_g_kl"] = kl.detach()
            loss = loss + self.settings["lambda_g"] * kl
        return loss

    def generator_distance(
        self, features: dict[str, torch.Tensor], c: torch.Tensor, num_edges: int
    ) -> torch.Tensor:
        """L_dist^G (unweighted) from the synthesis activations of N edges then B anchors
        mixed with coefficients ``c`` [B, N]; each anchor's layer is drawn here."""
        layers = torch.randint(len(self.layer_names), (len(c),))
        similarities = mixdl.generator_similarities(features, self.layer_names, layers, num_edges)
        return mixdl.distance_kl(similarities, c, self.settings["kl_direction"])

    def discriminator_distance(
        self, features: dict[str, torch.Tensor], c: torch.Tensor, num_edges: int
    ) -> torch.Tensor:
        """L_dist^D (unweighted) from D's activations on N edges then B anchors."""
        d1 = features[mixdl.D_FEATURES].float()
        embedded = d1 if self.projection is None else self.projection(d1)
        similarities = mixdl.cosine_similarities(embedded[num_edges:], embedded[:num_edges])
        return mixdl.distance_kl(similarities, c, self.settings["kl_direction"])

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = len(real)
        distance = self.settings["discriminator_loss"]
        with torch.no_grad():
            ws, c, anchors = self._latents(players, batch)
            latents = torch.cat([ws, anchors]) if distance else anchors  # edges only for L_dist^D
            with players.autocast():
                fake = players.G.synthesis(latents, noise_mode="random").float()
        logits_real = self._discriminate(players, real, {})
        features: dict[str, torch.Tensor] = {}
        logits_fake = self._discriminate(players, fake, features)[-batch:]  # the anchors'
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        if distance:
            kl = self.discriminator_distance(features, c, len(ws))
            self.last["mixdl_d_kl"] = kl.detach()
            loss = loss + self.settings["lambda_d"] * kl
        return loss, _per_image(logits_real), _per_image(logits_fake)

    def stats(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.last.items()}

    def _modules(self) -> dict[str, nn.Module]:
        """The part's trained modules by checkpoint key (the projection only when built)."""
        modules = {"patch_heads": self.patch_heads, "projection": self.projection}
        return {key: module for key, module in modules.items() if module is not None}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {key: module.state_dict() for key, module in self._modules().items()},
            "last": self.stats(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        for key, module in self._modules().items():
            module.load_state_dict(state["modules"][key])
        self.last.update({k: v for k, v in state["last"].items() if k in self.last})


class CDC(Part):
    """Cross-domain correspondence (Ojha et al. 2021; ``mixgan.train.cdc``): adapt a source
    StyleGAN2 (``--source-model``, a ``network.pt`` with G and D) to the training images.

    G, G_ema and D start from the source's last raw G, its selected G_ema and its last D, as
    the official code's; a frozen copy of the source's raw G anchors the distance consistency.
    Every step is the part's: on steps with ``step % anchor_every == 0`` the fakes come from
    latents near ``anchors`` fixed anchors (z = anchor + N(0, anchor_std²), no style mixing)
    and D's full output judges them; on the others z ~ N(0, I) with the run's style mixing and
    a patch-level head (a 3x3 conv on one of the first ``patch_layers`` D activations at
    ``patch_resolutions``, drawn per D call, as MixDL's heads) judges reals and fakes. G's
    loss adds ``weight`` x KL(p || q) over ``distance_batch`` new latents, each compared with
    the others at a synthesis layer drawn for it (every layer but the first and last). The
    images pass through the method's other ``augment_d_input`` parts. The lazy R1 follows
    the step's level, as the official code's: D's output near the anchors, else the per-image
    mean of a drawn head's patch logits.
    Logged: ``cdc_distance``, the unweighted distance loss of the latest step.
    """

    stage = 4
    takes_steps = True

    def __init__(self, name: str, settings: dict[str, Any], source_model: Path | None):
        super().__init__(name, settings)
        if source_model is None:
            raise ValueError(f"part {name}: CDC needs its source model (--source-model)")
        self.source_model = source_model
        self.source: Generator | None = None
        self.source_ema: dict[str, torch.Tensor] = {}
        self.record: dict[str, Any] = {}
        self.anchors: torch.Tensor | None = None
        self.layer_names: list[str] = []
        self.patch_heads: mixdl.PatchHeads | None = None
        self.patch_names: list[str] = []
        self.last: torch.Tensor | float = math.nan

    def initialize_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        if not isinstance(generator, Generator):
            raise ValueError(f"part {self.name}: CDC adapts a StyleGAN2 generator")
        states, self.record = cdc.load_source(self.source_model, generator, discriminator)
        generator.load_state_dict(states["G"])
        discriminator.load_state_dict(states["D"])
        self.source = copy.deepcopy(generator).eval().requires_grad_(False)
        self.source_ema = states["G_ema"]
        self.layer_names = mixdl.generator_layer_candidates(generator.synthesis)
        device = next(generator.parameters()).device
        self.anchors = torch.randn(self.settings["anchors"], generator.z_dim, device=device)

    def initial_ema(self) -> dict[str, torch.Tensor] | None:
        return self.source_ema

    def networks(self) -> dict[str, dict[str, Any]]:
        return {"cdc_source": self.record}

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        taps = mixdl.patch_taps(discriminator, self.settings["patch_resolutions"])
        taps = taps[: self.settings["patch_layers"]]
        self.patch_names = [name for name, _ in taps]
        self.patch_heads = mixdl.PatchHeads([channels for _, channels in taps])
        return [self.patch_heads]

    def computes_losses(self, step: int) -> bool:
        return True

    def _near_anchors(self, players: Players) -> bool:
        return players.step % self.settings["anchor_every"] == 0

    def _fake_ws(self, players: Players, batch: int) -> torch.Tensor:
        if self._near_anchors(players):
            z = cdc.sample_near_anchors(self.anchors, batch, self.settings["anchor_std"])
            return players.G.mapping(z, None, update_emas=True)
        return players.generate_ws(players.sample_z(batch))

    def _discriminate(self, players: Players, images: torch.Tensor) -> torch.Tensor:
        """D's full logits [N, 1] near the anchors, else a random head's patch logits
        [N, 1, H, W], of ``images`` after the other parts' augmentations."""
        images = players.augment(images)
        with players.autocast():
            if self._near_anchors(players):
                return players.D(images, None).float()
            features: dict[str, torch.Tensor] = {}
            index = int(torch.randint(len(self.patch_names), ()))
            players.D(images, None, features=features)
            return self.patch_heads(features[self.patch_names[index]], index).float()

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        ws = self._fake_ws(players, batch)
        with players.autocast():
            images = players.G.synthesis(ws, noise_mode="random").float()
        loss = F.softplus(-self._discriminate(players, images)).mean()
        distance = self.distance(players)
        self.last = distance.detach()
        return loss + self.settings["weight"] * distance

    def distance(self, players: Players) -> torch.Tensor:
        """The unweighted distance-consistency loss on ``distance_batch`` new latents."""
        z = players.sample_z(self.settings["distance_batch"])
        layers = torch.randint(len(self.layer_names), (len(z),))
        source: dict[str, torch.Tensor] = {}
        target: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            self.source.synthesis(
                self.source.mapping(z, None), noise_mode="random", features=source
            )
        with players.autocast():
            players.G.synthesis(players.G.mapping(z, None), noise_mode="random", features=target)
        return cdc.distance_consistency(
            cdc.within_batch_similarities(target, self.layer_names, layers),
            cdc.within_batch_similarities(source, self.layer_names, layers),
        )

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            ws = self._fake_ws(players, len(real))
            with players.autocast():
                fake = players.G.synthesis(ws, noise_mode="random").float()
        logits_real = self._discriminate(players, real)
        logits_fake = self._discriminate(players, fake)
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        return loss, _per_image(logits_real), _per_image(logits_fake)

    def r1_logits(self, players: Players, real: torch.Tensor) -> torch.Tensor | None:
        return _per_image(self._discriminate(players, real))

    def stats(self) -> dict[str, float]:
        return {"cdc_distance": float(self.last)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "anchors": self.anchors.cpu(),
            "patch_heads": self.patch_heads.state_dict(),
            "last": float(self.last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.anchors = state["anchors"].to(self.anchors.device)
        self.patch_heads.load_state_dict(state["patch_heads"])
        self.last = state["last"]


class GeneratorRegularizer(Part):
    """A mode-collapse regularizer of G (MixDL's Table 2 baselines): ``weight`` x a loss of
    the batch's latents and images, added to G's loss on standard steps. The unweighted loss
    of the latest step is logged as ``<kind>_loss``."""

    stage = 4
    kind: ClassVar[str]

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.last: torch.Tensor | float = math.nan  # a tensor: no device sync per step

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_regularizer(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        value = self.loss(latents, images)
        self.last = value.detach()
        return self.settings["weight"] * value

    def stats(self) -> dict[str, float]:
        return {f"{self.kind}_loss": float(self.last)}

    def state_dict(self) -> dict[str, Any]:
        return {"last": float(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = state.get("last", math.nan)


class ModeSeeking(GeneratorRegularizer):
    """MSGAN's mode-seeking loss (``mode_collapse.mode_seeking_loss``)."""

    kind = "msgan"

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return mode_collapse.mode_seeking_loss(latents, images)


class NormalizedDiversity(GeneratorRegularizer):
    """N-Div's normalized diversity loss with margin ``alpha``
    (``mode_collapse.normalized_diversity_loss``)."""

    kind = "ndiv"

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return mode_collapse.normalized_diversity_loss(latents, images, self.settings["alpha"])


class DistancePreservation(GeneratorRegularizer):
    """DistanceGAN's distance-preservation loss (``mode_collapse.distance_preservation_loss``),
    standardised with N(0, I)'s statistics for z and the pair-distance statistics of the
    first ``statistics_images`` training images (all pairs) for G(z)."""

    kind = "distancegan"

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.image_statistics: tuple[float, float] | None = None

    def set_training_images(self, images: torch.Tensor) -> None:
        if len(images) < 2:
            raise ValueError(f"part {self.name}: DistanceGAN needs at least 2 training images")
        chosen = images[: self.settings["statistics_images"]].float() / 127.5 - 1
        self.image_statistics = mode_collapse.distance_statistics(chosen)

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.image_statistics is None:
            raise RuntimeError(f"part {self.name}: set_training_images was not called")
        latent_statistics = mode_collapse.gaussian_distance_statistics(latents.shape[1])
        return mode_collapse.distance_preservation_loss(
            latents, images, latent_statistics, self.image_statistics
        )


def _scoremix(name: str, settings: dict[str, Any], inputs: PartInputs) -> Part:
    if settings["mu"] != "growing":
        return ScoreMixStatic(name, settings, inputs.augmented_zip)
    if inputs.scorenet is None:
        raise ValueError(f"part {name}: growing mu needs the score network (--scorenet)")
    score_net = load_score_net(inputs.scorenet, inputs.device)
    return ScoreMixOnline(name, settings, ScoreMixer.from_part(score_net, settings))


#: part kind -> builder(name, settings, inputs)
PART_BUILDERS: dict[str, Callable[[str, dict[str, Any], PartInputs], Part]] = {
    "scoremix": _scoremix,
    "diffaug": lambda name, settings, inputs: DiffAugment(name, settings),
    "ada": lambda name, settings, inputs: ADA(name, settings),
    "lecam": lambda name, settings, inputs: LeCam(name, settings),
    "mixup": lambda name, settings, inputs: BatchMixing(name, settings, mixup),
    "cutmix": lambda name, settings, inputs: BatchMixing(name, settings, cutmix),
    "augmix": lambda name, settings, inputs: AugMixReal(name, settings),
    "mixdl": lambda name, settings, inputs: MixDL(name, settings),
    "msgan": lambda name, settings, inputs: ModeSeeking(name, settings),
    "ndiv": lambda name, settings, inputs: NormalizedDiversity(name, settings),
    "distancegan": lambda name, settings, inputs: DistancePreservation(name, settings),
    "cdc": lambda name, settings, inputs: CDC(name, settings, inputs.source_model),
}


def build_parts(part_specs: list[dict[str, Any]], inputs: PartInputs | None = None) -> list[Part]:
    """Instantiate a method's parts, ordered by stage (config order within a stage)."""
    inputs = inputs or PartInputs()
    parts: list[Part] = []
    for spec in part_specs:
        builder = PART_BUILDERS.get(spec["kind"])
        if builder is None:
            raise ValueError(f"part {spec['name']}: kind '{spec['kind']}' is not implemented yet")
        settings = {k: v for k, v in spec.items() if k not in ("name", "kind")}
        parts.append(builder(spec["name"], settings, inputs))
    takers = [part.name for part in parts if part.takes_steps]
    if len(takers) > 1:
        raise ValueError(
            f"parts {', '.join(takers)} all compute whole steps; a method may have one"
        )
    return sorted(parts, key=lambda p: p.stage)
