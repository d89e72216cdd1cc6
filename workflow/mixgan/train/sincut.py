"""SinCUT training (Park et al., ECCV 2020; ScoreMix §4.6): losses and one training step.

Source: taesungp/contrastive-unpaired-translation at commit b3ac297, ``--model sincut``
(``CUTModel`` in models/cut_model.py with the overrides of models/sincut_model.py). The losses
are pure functions of tensors; :class:`SinCUTTrainer` holds G, D, the projection head F and
their Adam optimisers and runs the official iteration (cut_model.py:113-133): G translates the
source and target patches in one batch (``nce_idt``), D takes a step on the detached fakes with
R1 on the real target patches, then G and F take a step on the GAN, PatchNCE, identity-NCE and
identity-L1 terms, with D frozen.

``augment_inputs(patches) -> patches`` (None by default, which is the official baseline) is
applied once per iteration to the source patches, the generator's translation input, before
anything else sees them; ScoreMix mixes crops there. The target patches (D's reals and the
identity input) are left as they come.

Randomness: the networks are built under ``torch.manual_seed(seed)`` in a forked RNG; the
noise of G's upsampling conv comes from the trainer's generator on the device, the PatchNCE
positions from its CPU generator (the official code draws both from the global RNGs); both
states are saved, so a resumed run is bit-exact on the CPU. The official warm-up pass
(``data_dependent_initialize``, cut_model.py:94-111, which only builds F lazily and takes no
step) is not needed: F is built with the other networks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixgan.nets.sincut import (
    SCOREMIX_PATCH_SIZE,
    SINCUT_NCE_LAYERS,
    SINCUT_NDF,
    SINCUT_NETF_NC,
    SINCUT_NGF,
    PatchSampleF,
    SinCUTDiscriminator,
    SinCUTGenerator,
)

AugmentInputs = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SinCUTSettings:
    """Networks, losses and optimiser settings; defaults are the official SinCUT ones.

    Sources (taesungp/contrastive-unpaired-translation b3ac297): ``ngf`` 10, ``ndf`` 8,
    ``num_downsampling`` 1 (``stylegan2_G_num_downsampling``), ``nce_layers`` (0, 2, 4),
    ``num_patches`` 1, ``lambda_nce`` 4, ``lr`` 0.002, ``beta1`` 0, ``beta2`` 0.99,
    ``batch_size`` 16, ``n_epochs`` 8, ``n_epochs_decay`` 8, ``gan_mode`` nonsaturating,
    ``nce_includes_all_negatives_from_minibatch`` True (models/sincut_model.py:20-46);
    ``lambda_r1`` 1 and ``lambda_identity`` 1 (sincut_model.py:15-18); ``nce_idt`` True and
    ``lambda_gan`` 1 (``CUT_mode=CUT``, models/cut_model.py:24, 44-45; SinCUT's
    ``lambda_NCE=4`` overrides CUT's 1); ``nce_t`` 0.07 and ``netf_nc`` 256 (cut_model.py:32-
    33); ``n_blocks`` 6 (models/networks.py:260); ``dataset_length`` 100,000 crops per epoch
    (data/singleimage_dataset.py:105-108), i.e. 6,250 iterations of 16 per epoch and 100,000
    in all; ``lr_policy`` linear (options/train_options.py:40). ``patch_size`` is ScoreMix's
    128 (§4.6; SinCUT's ``crop_size`` is 64); it sets the networks' widths and D's input size.
    """

    patch_size: int = SCOREMIX_PATCH_SIZE
    ngf: int = SINCUT_NGF
    ndf: int = SINCUT_NDF
    num_downsampling: int = 1
    n_blocks: int = 6
    netf_nc: int = SINCUT_NETF_NC
    nce_layers: tuple[int, ...] = SINCUT_NCE_LAYERS
    num_patches: int = 1
    nce_t: float = 0.07
    nce_includes_all_negatives_from_minibatch: bool = True
    nce_idt: bool = True
    lambda_gan: float = 1.0
    lambda_nce: float = 4.0
    lambda_identity: float = 1.0
    lambda_r1: float = 1.0
    lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    batch_size: int = 16
    n_epochs: int = 8
    n_epochs_decay: int = 8
    dataset_length: int = 100_000

    @property
    def iterations_per_epoch(self) -> int:
        """Iterations of one official epoch (``drop_last`` batches of the 100,000 crops)."""
        return self.dataset_length // self.batch_size

    @property
    def total_iterations(self) -> int:
        """Iterations of the whole official run (``n_epochs + n_epochs_decay`` epochs)."""
        return (self.n_epochs + self.n_epochs_decay) * self.iterations_per_epoch


# ----------------------------------------------------------------------------------------------
# Losses.


def nonsaturating_loss(logits: Tensor, target_is_real: bool) -> Tensor:
    """``GANLoss('nonsaturating')`` (models/networks.py:404-408) averaged over the batch as
    the callers do: softplus(-logits) against real, softplus(logits) against fake."""
    per_sample = F.softplus(-logits if target_is_real else logits)
    return per_sample.reshape(len(logits), -1).mean(dim=1).mean()


def discriminator_gan_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's GAN loss: the mean of its real and fake terms (cut_model.py:159-172)."""
    return 0.5 * (nonsaturating_loss(logits_fake, False) + nonsaturating_loss(logits_real, True))


def r1_penalty(logits_real: Tensor, real: Tensor, lambda_r1: float = 1.0) -> Tensor:
    """R1 on the real target patches, every iteration (sincut_model.py:64-79): ``lambda_r1 /
    2`` times the squared norm of d(sum logits)/d(real) per image, averaged; differentiable."""
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True, retain_graph=True)
    return grad.pow(2).reshape(len(real), -1).sum(dim=1).mean() * (lambda_r1 * 0.5)


def patch_nce_loss(
    feat_q: Tensor,
    feat_k: Tensor,
    batch_size: int,
    all_negatives_from_minibatch: bool,
    temperature: float = 0.07,
) -> Tensor:
    """``PatchNCELoss`` (models/patchnce.py): per-sample cross-entropy of (positive,
    negatives) / temperature with the positive at index 0; returns [N] losses.

    ``feat_q`` (queries, from the output) and ``feat_k`` (keys, from the input; detached) are
    [N, dim] with N = images x patches, image-major. Each query's negatives are the keys of the
    other patches of its image (``batch_size`` images), or of every patch of the minibatch when
    ``all_negatives_from_minibatch`` (SinCUT: the crops all come from one image); its own key
    sits on the diagonal, which is filled with -10 (not excluded) as in the official code.
    """
    num, dim = feat_q.shape
    feat_k = feat_k.detach()
    l_pos = (feat_q * feat_k).sum(dim=1, keepdim=True)
    groups = 1 if all_negatives_from_minibatch else batch_size
    if num % groups:
        raise ValueError(f"{num} samples do not split into {groups} images")
    q = feat_q.reshape(groups, -1, dim)
    k = feat_k.reshape(groups, -1, dim)
    l_neg = torch.bmm(q, k.transpose(2, 1))
    diagonal = torch.eye(q.shape[1], device=q.device, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(diagonal, -10.0).reshape(-1, q.shape[1])
    logits = torch.cat((l_pos, l_neg), dim=1) / temperature
    target = torch.zeros(num, dtype=torch.long, device=feat_q.device)
    return F.cross_entropy(logits, target, reduction="none")


def multilayer_nce_loss(
    feats_q: Sequence[Tensor],
    feats_k: Sequence[Tensor],
    batch_size: int,
    all_negatives_from_minibatch: bool,
    lambda_nce: float,
    temperature: float = 0.07,
) -> Tensor:
    """``calculate_NCE_loss`` (cut_model.py:198-214): the mean over the NCE layers of
    ``lambda_nce`` times the mean PatchNCE loss of the layer's projected samples."""
    total = feats_q[0].new_zeros(())
    for q, k in zip(feats_q, feats_k, strict=True):
        loss = patch_nce_loss(q, k, batch_size, all_negatives_from_minibatch, temperature)
        total = total + (loss * lambda_nce).mean()
    return total / len(feats_q)


def identity_l1_loss(idt: Tensor, real_target: Tensor, lambda_identity: float = 1.0) -> Tensor:
    """SinCUT's identity loss ``L1(G(y), y) * lambda_identity`` (sincut_model.py:71-74)."""
    return F.l1_loss(idt, real_target) * lambda_identity


def generator_loss(
    gan: Tensor, nce: Tensor, nce_idt: Tensor | None, identity: Tensor | None
) -> Tensor:
    """G's loss: GAN + NCE (the mean of NCE(x, G(x)) and the identity NCE(y, G(y)) when
    ``nce_idt``, cut_model.py:189-196) + the identity L1 term (sincut_model.py:71-74)."""
    loss = gan + (nce if nce_idt is None else 0.5 * (nce + nce_idt))
    return loss if identity is None else loss + identity


def lr_factor(step: int, settings: SinCUTSettings) -> float:
    """The linear policy (networks.py:147-151) at iteration ``step`` (0-based): the rate is
    kept for ``n_epochs`` epochs, then multiplied by ``1 - (e + 1 - n_epochs) /
    (n_epochs_decay + 1)`` in epoch e (0-based; the scheduler steps after every epoch)."""
    epoch = step // settings.iterations_per_epoch
    decay = max(0, epoch + 1 - settings.n_epochs) / float(settings.n_epochs_decay + 1)
    return max(0.0, 1.0 - decay)


# ----------------------------------------------------------------------------------------------
# Training.


class SinCUTTrainer:
    """G, D, F, their optimisers and the official SinCUT iteration."""

    def __init__(
        self,
        settings: SinCUTSettings | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        augment_inputs: AugmentInputs | None = None,
    ) -> None:
        self.settings = s = settings or SinCUTSettings()
        self.device = torch.device(device)
        self.augment_inputs = augment_inputs
        self.step = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = SinCUTGenerator(s.patch_size, s.ngf, s.num_downsampling, s.n_blocks)
            self.discriminator = SinCUTDiscriminator(s.patch_size, s.ndf)
            self.projector = PatchSampleF(self.generator.nce_channels(s.nce_layers), s.netf_nc)
        self.nets: dict[str, nn.Module] = {
            "G": self.generator.to(self.device),
            "D": self.discriminator.to(self.device),
            "F": self.projector.to(self.device),
        }
        self.optims = {
            name: torch.optim.Adam(net.parameters(), lr=s.lr, betas=(s.beta1, s.beta2))
            for name, net in self.nets.items()
        }
        self.noise_rng = torch.Generator(self.device).manual_seed(seed)
        self.patch_rng = torch.Generator().manual_seed(seed)

    def nce_loss(self, source: Tensor, output: Tensor) -> Tensor:
        """PatchNCE between G's encodings of its input ``source`` (keys) and of its
        ``output`` (queries), sampled at shared positions (cut_model.py:198-214)."""
        s = self.settings
        feat_q = self.generator.encode(output, s.nce_layers)
        feat_k = self.generator.encode(source, s.nce_layers)
        pool_k, ids = self.projector(feat_k, s.num_patches, generator=self.patch_rng)
        pool_q, _ = self.projector(feat_q, s.num_patches, ids)
        return multilayer_nce_loss(
            pool_q, pool_k, len(source), s.nce_includes_all_negatives_from_minibatch,
            s.lambda_nce, s.nce_t,
        )  # fmt: skip

    def _set_lr(self) -> float:
        lr = self.settings.lr * lr_factor(self.step, self.settings)
        for optim in self.optims.values():
            for group in optim.param_groups:
                group["lr"] = lr
        return lr

    def train_step(self, source_batch: Tensor, target_batch: Tensor) -> dict[str, float]:
        """One iteration on already-cropped source and target patches ([N, 3, P, P] in
        [-1, 1]); returns the loss terms and the learning rate it used."""
        s = self.settings
        real_a = source_batch.to(self.device)
        real_b = target_batch.to(self.device)
        if self.augment_inputs is not None:
            real_a = self.augment_inputs(real_a).detach()
        lr = self._set_lr()
        G, D = self.generator, self.discriminator

        # forward (cut_model.py:146-157): one batch of sources and targets when nce_idt
        real = torch.cat((real_a, real_b)) if s.nce_idt else real_a
        fake = G(real, self.noise_rng)
        fake_b = fake[: len(real_a)]
        idt_b = fake[len(real_a) :] if s.nce_idt else None

        # D step (sincut_model.py:64-69, cut_model.py:117-122)
        D.requires_grad_(True)
        self.optims["D"].zero_grad()
        real_b = real_b.detach().requires_grad_(True)
        logits_fake = D(fake_b.detach())
        logits_real = D(real_b)
        d_gan = discriminator_gan_loss(logits_real, logits_fake)
        d_r1 = r1_penalty(logits_real, real_b, s.lambda_r1)
        (d_gan + d_r1).backward()
        self.optims["D"].step()

        # G and F step (cut_model.py:124-133), D frozen
        D.requires_grad_(False)
        self.optims["G"].zero_grad()
        self.optims["F"].zero_grad()
        real_b = real_b.detach()
        g_gan = nonsaturating_loss(D(fake_b), True) * s.lambda_gan
        nce = self.nce_loss(real_a, fake_b)
        nce_idt = idt = None
        if idt_b is not None:
            nce_idt = self.nce_loss(real_b, idt_b)
            idt = identity_l1_loss(idt_b, real_b, s.lambda_identity)
        loss = generator_loss(g_gan, nce, nce_idt, idt)
        loss.backward()
        self.optims["G"].step()
        self.optims["F"].step()
        D.requires_grad_(True)

        self.step += 1
        stats = {
            "D/gan": d_gan.item(),
            "D/r1": d_r1.item(),
            "G/gan": g_gan.item(),
            "G/nce": nce.item(),
            "G/total": loss.item(),
            "lr": lr,
        }
        if nce_idt is not None and idt is not None:
            stats.update({"G/nce_idt": nce_idt.item(), "G/idt": idt.item()})
        return stats

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs: step, settings (checked on load), networks,
        optimisers and both generators' states."""
        return {
            "step": self.step,
            "settings": asdict(self.settings),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optims": {name: optim.state_dict() for name, optim in self.optims.items()},
            "noise_rng": self.noise_rng.get_state(),
            "patch_rng": self.patch_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into a trainer built with the same settings."""
        if state["settings"] != asdict(self.settings):
            raise ValueError("the checkpoint was written with other SinCUT settings")
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        for name, optim in self.optims.items():
            optim.load_state_dict(state["optims"][name])
        self.noise_rng.set_state(state["noise_rng"])
        self.patch_rng.set_state(state["patch_rng"])
        self.step = int(state["step"])
