"""The StyleGAN2 trainer: networks, optimisers and one training step with the method parts.

``GANTrainer`` holds a run's state (G, D, G_ema, optimisers, parts, real pool, RNG) and runs
one step of StyleGAN2's schedule: D's non-saturating loss with the lazy R1, G's loss with lazy
path-length regularisation, the parts' hooks (``mixgan.train.part_api``) at their points. The
loop that calls it (``mixgan.train.loop``) is shared by every backbone; FastGAN and BigGAN
subclass this trainer (``mixgan.train.fastgan``, ``mixgan.train.biggan``).

On a GPU the run's ``precision``, ``channels_last`` and ``fused_fir`` settings choose the
arithmetic and kernels (see ``GANTrainer.__init__``); ``fp16`` builds NVIDIA's mixed-precision
networks (paper256: FP16 in the 4 highest resolutions, activations clamped at 256), without
loss scaling, with NVIDIA's gradient sanitisation before each optimiser step.

Real batches are drawn uniformly with replacement from the pool; with ``train.mirror`` each
real image is flipped left-right with probability 1/2 as it is drawn (the official codes'
``RandomHorizontalFlip``). With several processes (``mixgan.train.distributed``) each trains
on its share of the batch; what makes the global batch (latents, real indices, flips, style
mixing, path-length noise) comes from ``batch_rng``, a stream every rank draws alike.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.io import read_json
from mixgan.metrics.inception import pick_device
from mixgan.nets.stylegan2 import FP16_CONV_CLAMP, Discriminator, Generator, use_fused_fir
from mixgan.train import distributed
from mixgan.train.checkpoint import seed_everything
from mixgan.train.part_api import Part, PartInputs
from mixgan.train.parts import build_parts
from mixgan.train.paths import TrainPaths

#: FP16 resolutions of G and D in ``precision: fp16`` (stylegan2-ada-pytorch train.py:181-182,
#: every --cfg: num_fp16_res 4, conv_clamp 256; --fp32 turns both off, train.py:331-333)
FP16_RESOLUTIONS = 4


def network_kwargs(
    spec: dict[str, Any], precision: str = "fp32"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generator and discriminator constructor arguments of a run spec, for the arithmetic
    ``precision`` the trainer runs (``fp16``: NVIDIA's FP16 blocks and conv_clamp)."""
    backbone = spec["backbone"]
    fp16 = precision == "fp16"
    shared = {
        "c_dim": 0,
        "img_resolution": spec["resolution"],
        "img_channels": 3,
        "channel_base": backbone["channel_base"],
        "channel_max": backbone["channel_max"],
        "width": backbone["width"],
        "conv_clamp": FP16_CONV_CLAMP if fp16 else None,
        "num_fp16_res": FP16_RESOLUTIONS if fp16 else 0,
    }
    g_kwargs = {
        **shared,
        "z_dim": backbone["z_dim"],
        "w_dim": backbone["w_dim"],
        "mapping_layers": backbone["mapping_layers"],
    }
    d_kwargs = {**shared, "mbstd_group_size": backbone["mbstd_group"]}
    return g_kwargs, d_kwargs


def load_real_pool(paths: TrainPaths, parts: list[Part]) -> tuple[torch.Tensor, int]:
    """NCHW uint8 images D sees as real: the subset plus what the parts add; and the subset size."""
    names = [image["name"] for image in read_json(paths.subset_manifest)["images"]]
    pool = [to_tensor(read_image_zip(paths.data_zip, names))]
    pool += [extra for part in parts if (extra := part.extra_real()) is not None]
    return torch.cat(pool), len(names)


class GANTrainer:
    """State and steps of one StyleGAN2 run (subclasses change the networks and the step:
    ``mixgan.train.fastgan.FastGANTrainer``, ``mixgan.train.biggan.BigGANTrainer``)."""

    extra_columns: ClassVar[list[str]] = []  # the step's statistics beyond CURVE_COLUMNS
    #: trains as several processes (``mixgan.train.distributed``): the loop checks it
    multi_process: ClassVar[bool] = True
    #: G's buffers updated from each rank's samples, averaged over the ranks every step
    rank_buffers: ClassVar[tuple[str, ...]] = ("w_avg",)

    def __init__(self, spec: dict[str, Any], paths: TrainPaths, log: logging.Logger):
        self.spec, self.paths, self.log = spec, paths, log
        self.train_cfg = spec["backbone"]["train"]
        self.device = distributed.local_device(pick_device(spec["device"]))
        seed_everything(spec["seed"])  # the same networks and parts on every rank
        self.batch_rng = distributed.SharedRandom(spec["seed"], self.device)
        self.batch = distributed.local_batch(self.train_cfg["batch"])  # this rank's share
        inputs = PartInputs(paths.augmented_zip, paths.scorenet, paths.source_model, self.device)
        self.parts = build_parts(spec["method"]["parts"], inputs)
        self.pool, self.num_real = load_real_pool(paths, self.parts)
        for part in self.parts:
            part.set_training_images(self.pool[: self.num_real])
        on_gpu = self.device.type == "cuda"
        self.precision = self.train_cfg["precision"] if on_gpu else "fp32"
        self.memory_format = (
            torch.channels_last
            if on_gpu and self.train_cfg["channels_last"]
            else torch.contiguous_format
        )
        if on_gpu:
            use_gpu_arithmetic(self.precision)
        # Records (SHA-256, stand-in flag) of pretrained networks inside the losses, by role.
        self.loss_networks: dict[str, dict[str, Any]] = {}
        self.G, self.D = (
            net.to(self.device, memory_format=self.memory_format).train()
            for net in self.build_networks()
        )
        for part in self.parts:  # CDC starts from a source model's weights
            part.initialize_networks(self.G, self.D)
            self.loss_networks.update(part.networks())
        # Modules the parts train beside D (MixDL's heads), with D's optimiser.
        self.part_modules = [
            module.to(self.device, memory_format=self.memory_format).train()
            for part in self.parts
            for module in part.trainable_modules(self.G, self.D)
        ]
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        for part in self.parts:
            if (ema := part.initial_ema()) is not None:
                self.G_ema.load_state_dict(ema)
        for net in (self.G, self.D):  # global BatchNorm statistics (not G_ema's: rank 0 samples)
            distributed.sync_batchnorm(net)
        distributed.broadcast_modules([self.G, self.D, self.G_ema, *self.part_modules])
        distributed.seed_rank(spec["seed"])  # from here each rank draws its own noise
        d_params = [*self.D.parameters(), *(p for m in self.part_modules for p in m.parameters())]
        self.opt_g, self.opt_d = self.build_optimizers(d_params)
        self.pl_mean = torch.zeros((), device=self.device)
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self.fid_history: list[tuple[float, float]] = []
        self.best: dict[str, float] | None = None
        self.increases = 0
        self.stopped_early = False  # early stopping triggered (recorded in the checkpoints)

    @property
    def uses_pl(self) -> bool:
        return self.train_cfg["pl_weight"] > 0

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """G and D of the run (``self.g_kwargs`` keeps G's constructor arguments)."""
        self.g_kwargs, self.d_kwargs = network_kwargs(self.spec, self.precision)
        use_fused_fir(self.device.type == "cuda" and self.train_cfg["fused_fir"])
        return Generator(**self.g_kwargs), Discriminator(**self.d_kwargs)

    def build_optimizers(
        self, d_params: list[torch.Tensor]
    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """Adam for G and for D (with the parts' modules), adjusted for lazy regularisation;
        also the main passes, compiled when the run asks."""
        # The main passes may run compiled; R1 and path-length regularisation differentiate
        # twice, which torch.compile does not support, so they use the eager modules.
        compiled = self.train_cfg["compile"]
        self.synthesis_main = torch.compile(self.G.synthesis) if compiled else self.G.synthesis
        self.D_main = torch.compile(self.D) if compiled else self.D
        opt_g = self._adam(
            self.G.parameters(), self.train_cfg["pl_interval"] if self.uses_pl else None
        )
        return opt_g, self._adam(d_params, self.train_cfg["r1_interval"])

    def _adam(self, params: Iterable[torch.Tensor], reg_interval: int | None) -> torch.optim.Adam:
        lr, betas = self.train_cfg["lr"], self.train_cfg["betas"]
        ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
        return torch.optim.Adam(
            params,
            lr=lr * ratio,
            betas=[b**ratio for b in betas],
            eps=1e-8,
            fused=self.device.type == "cuda",
        )

    # -- state ----------------------------------------------------------------------

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    def state_dict(self) -> dict[str, Any]:
        """The run's resumable state (a collective with several processes: every rank's own
        random streams are gathered)."""
        rng = distributed.gather_rng_states()
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pl_mean": self.pl_mean,
            "parts": {p.name: p.state_dict() for p in self.parts},
            "rng": rng[0],
            "rng_ranks": rng,
            "batch_rng": self.batch_rng.state_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "fid_history": self.fid_history,
            "best": self.best,
            "increases": self.increases,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pl_mean = state.get("pl_mean", torch.zeros(())).to(self.device)
        for part in self.parts:
            part.load_state_dict(state["parts"].get(part.name, {}))
        self.step, self.images_seen = state["step"], state["images_seen"]
        distributed.restore_rng_state(
            state.get("rng_ranks", [state["rng"]]), self.spec["seed"], self.step
        )
        if "batch_rng" in state:
            self.batch_rng.load_state_dict(state["batch_rng"])
        self.elapsed, self.fid_history = state["elapsed"], [tuple(x) for x in state["fid_history"]]
        self.best, self.increases = state["best"], state["increases"]
        self.stopped_early = state.get("stopped_early", False)

    # -- one iteration ----------------------------------------------------------------

    def real_batch(self, batch: int) -> torch.Tensor:
        """``batch`` real images drawn uniformly with replacement from the pool."""
        return self.real_images(self.batch_rng.randint(len(self.pool), batch))

    def real_images(self, index: torch.Tensor) -> torch.Tensor:
        """The pool's images at ``index`` in [-1, 1] on the device; with ``train.mirror`` each
        is flipped left-right with probability 1/2 (one draw of ``batch_rng`` per image)."""
        images = self.pool[index]
        if self.train_cfg["mirror"]:
            flip = self.batch_rng.rand(len(index)) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
        images = images.to(self.device, torch.float32) / 127.5 - 1
        return images.contiguous(memory_format=self.memory_format)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` after averaging the gradients over the ranks; with FP16 layers
        first NVIDIA's gradient sanitisation (training_loop.py: NaN -> 0, +-inf -> +-1e5; it
        uses no loss scaling)."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        distributed.average_gradients(params)
        if self.precision == "fp16":
            for grad in (p.grad for p in params):
                if grad is not None:
                    torch.nan_to_num(grad, nan=0.0, posinf=1e5, neginf=-1e5, out=grad)
        optimizer.step()

    def autocast(self) -> torch.autocast:
        """bf16 autocast for the synthesis network and D when the run's precision is bf16."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")

    def sample_z(self, count: int) -> torch.Tensor:
        """Input latents z ~ N(0, I) of ``count`` new samples (this rank's rows)."""
        return self.batch_rng.randn(count, self.G.z_dim)

    def generate_ws(self, z: torch.Tensor, style_mixing: bool = True) -> torch.Tensor:
        """Latents w of samples with input latents ``z``, with style mixing (unless
        ``style_mixing`` is false): when drawn, the layers from a random cutoff on take the
        styles of a second, new latent."""
        ws = self.G.mapping(z, None, update_emas=True)
        mixing = self.train_cfg["style_mixing"] if style_mixing else 0
        if mixing > 0 and self.batch_rng.scalar() < mixing:
            cutoff = self.batch_rng.integer(1, ws.shape[1])
            z2 = self.sample_z(len(z))
            ws[:, cutoff:] = self.G.mapping(z2, None, update_emas=False)[:, cutoff:]
        return ws

    def mapped_ws(self, count: int) -> torch.Tensor:
        """Latents w of ``count`` new samples without style mixing (for the parts)."""
        return self.G.mapping(self.sample_z(count), None, update_emas=True)

    def generate(self, z: torch.Tensor, style_mixing: bool = True) -> torch.Tensor:
        """G's images ([-1, 1], float32) of input latents ``z`` (``style_mixing``: as
        :meth:`generate_ws`)."""
        ws = self.generate_ws(z, style_mixing)
        with self.autocast():
            images = self.synthesis_main(ws, noise_mode="random")
        return images.float()

    def augment(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The parts' ``augment_d_input``, in stage order (``labels``: class-conditional)."""
        for part in self.parts:
            images = part.augment_d_input(images, labels)
        return images

    def discriminate(self, images: torch.Tensor, main: bool = True) -> torch.Tensor:
        """D's logits (float32) on ``images`` after the parts' augmentations; ``main=False``
        uses the eager D, which can be differentiated twice."""
        images = self.augment(images)
        with self.autocast():
            logits = (self.D_main if main else self.D)(images, None)
        return logits.float()

    def g_regularization(self, z: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The sum of the parts' ``g_regularizer`` terms for latents ``z`` and images."""
        terms = [t for part in self.parts if (t := part.g_regularizer(z, images)) is not None]
        return sum(terms, torch.zeros((), device=self.device))

    def set_d_trainable(self, trainable: bool) -> None:
        """Switch gradients of D and the parts' modules on (D steps) or off (G steps)."""
        for module in (self.D, *self.part_modules):
            module.requires_grad_(trainable)

    def train_step(self) -> dict[str, torch.Tensor]:
        batch = self.batch
        # A part may compute this step's losses itself (MixDL's steps).
        owner = next((p for p in self.parts if p.computes_losses(self.step)), None)
        # Generator: non-saturating logistic loss.
        self.set_d_trainable(False)
        if owner is None:
            z = self.sample_z(batch)
            # A part comparing z with G(z) (MSGAN, N-Div, DistanceGAN) gets unmixed images.
            fake = self.generate(z, style_mixing=not any(p.regularizes_g for p in self.parts))
            loss_g = nonsaturating_g_loss(self.discriminate(fake)) + self.g_regularization(z, fake)
        else:
            loss_g = owner.g_loss(self, batch)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_step(self.opt_g)
        pl = torch.zeros((), device=self.device)
        if self.uses_pl and self.step % self.train_cfg["pl_interval"] == 0:
            pl = self.pl_step(batch)
        self.set_d_trainable(True)

        # Discriminator: logistic loss plus the parts' regularizers.
        if owner is None:
            with torch.no_grad():
                fake = self.generate(self.sample_z(batch))
        real = self.real_batch(batch)
        for part in self.parts:
            real = part.augment_real(real)
        if owner is None:
            logits_fake = self.discriminate(fake)
            logits_real = self.discriminate(real)
            loss_d = logistic_d_loss(logits_real, logits_fake)
        else:
            loss_d, logits_real, logits_fake = owner.d_loss(self, real)
        loss_d = self.step_d(loss_d, logits_real, logits_fake)

        r1 = torch.zeros((), device=self.device)
        if self.train_cfg["r1_gamma"] > 0 and self.step % self.train_cfg["r1_interval"] == 0:
            r1 = self.r1_step(real, owner)

        self.update_ema(self.train_cfg["batch"])
        self.step += 1
        self.images_seen += self.train_cfg["batch"]
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "r1": r1.detach(),
            "pl": pl.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }

    def step_d(
        self, loss_d: torch.Tensor, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor:
        """One optimiser step of D on ``loss_d`` plus the parts' ``d_regularizer`` terms (of
        D's logits on reals and fakes), then the parts' ``after_d_step``; returns the loss."""
        for part in self.parts:
            extra = part.d_regularizer(logits_real, logits_fake)
            if extra is not None:
                loss_d = loss_d + extra
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_step(self.opt_d)
        for part in self.parts:
            part.after_d_step(logits_real.detach())
        return loss_d

    def pl_step(self, batch: int) -> torch.Tensor:
        """Lazy path-length regularisation: weight E(|J_w^T y| - a)², a an EMA of |J_w^T y|,
        y ~ N(0, I / (H W)), on batch / pl_batch_shrink samples, scaled by the interval."""
        cfg = self.train_cfg
        ws = self.generate_ws(self.sample_z(max(batch // cfg["pl_batch_shrink"], 1)))
        with self.autocast():
            images = self.G.synthesis(ws, noise_mode="random").float()
        noise = self.batch_rng.randn(*images.shape) / math.sqrt(images.shape[2] * images.shape[3])
        lengths = path_lengths(images, ws, noise)
        batch_mean = distributed.mean_over_ranks(lengths.mean().detach())
        self.pl_mean = self.pl_mean.lerp(batch_mean, cfg["pl_decay"])
        penalty = (lengths - self.pl_mean).square().mean()
        self.opt_g.zero_grad(set_to_none=True)
        (penalty * cfg["pl_weight"] * cfg["pl_interval"]).backward()
        self.optimizer_step(self.opt_g)
        return penalty.detach()

    def r1_step(self, real: torch.Tensor, owner: Part | None = None) -> torch.Tensor:
        """Lazy R1: gamma/2 E||grad_x D(x)||² on reals, scaled by the interval; on a step a
        part computes, of the logits the part's ``r1_logits`` gives (default: D's)."""
        real = real.detach().requires_grad_(True)
        logits = owner.r1_logits(self, real) if owner is not None else None
        if logits is None:
            logits = self.discriminate(real, main=False)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3]).mean()
        loss = penalty * (self.train_cfg["r1_gamma"] / 2) * self.train_cfg["r1_interval"]
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_step(self.opt_d)
        return penalty.detach()

    @torch.no_grad()
    def update_ema(self, batch: int) -> None:
        half_life = self.train_cfg["ema_kimg"] * 1000
        beta = 0.5 ** (batch / max(half_life, 1e-8)) if half_life > 0 else 0.0
        params_ema, params = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(params_ema, params, 1.0 - beta)  # p_ema <- p + beta (p_ema - p)
        distributed.average_buffers(self.G, self.rank_buffers)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)


def nonsaturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's G loss, the non-saturating logistic loss: mean softplus(-D(G(z)))."""
    return F.softplus(-logits_fake).mean()


def logistic_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's D loss: mean softplus(D(G(z))) + mean softplus(-D(x))."""
    return F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()


def use_gpu_arithmetic(precision: str) -> None:
    """Set the process-wide GPU flags of a run's precision: TensorFloat-32 in cuDNN
    convolutions and cuBLAS matrix products for ``tf32`` and ``bf16`` (not for ``fp32``, nor
    for ``fp16``, whose float32 layers NVIDIA runs without TF32: training_loop.py allow_tf32
    False), and cuDNN's autotuner."""
    tf32 = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """|J_w^T y| per sample (StyleGAN2): y = ``noise``, J the Jacobian of ``images`` w.r.t.
    ``ws`` ([N, layers, w_dim]); squared norms averaged over the layers. Differentiable."""
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grads.square().sum(2).mean(1).sqrt()
