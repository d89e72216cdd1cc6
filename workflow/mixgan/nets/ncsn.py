"""The score network S_θ(x, σ): the RefineNet of NCSN (Song & Ermon, 2019) and NCSNv2 (2020).

Layout (driven by the image resolution, ``ngf`` is the base width):

* a 3×3 stem on the centred input ``2x - 1`` (pixels arrive in [0, 1], as in NCSN);
* residual stages of two pre-activation residual blocks each: one full-resolution stage of
  width ``ngf``, then stages with a true 2× mean-pool down-sampling (width ``2 ngf``), then two
  stages that keep the resolution but dilate their convolutions by 2 and 4;
  32² and below: 1 pooled + 2 dilated stages (NCSN's CIFAR-10 model, NCSNv2's ``NCSNv2``);
  64²: 2 pooled + 2 dilated stages of width ``4 ngf`` (NCSNv2's ``NCSNv2Deeper``);
  128² and above: 3 pooled + 2 dilated stages of width ``4 ngf`` (NCSNv2's ``NCSNv2Deepest``);
* one RefineNet block per stage, deepest first: residual conv units (RCU) on each input,
  multi-resolution fusion of the skip and the coarser path, chained residual pooling, output
  RCUs (three in the last block);
* a final normalisation, ELU and a 3×3 conv back to image channels.

Normalisation (``norm``):

* ``"cond_instance_plus"`` (default, the ScoreMix paper: "conditional instance normalization for
  every convolutional layer", i.e. NCSN): conditional InstanceNorm++ whose scale, mean-shift and
  bias are embedded per noise-level index, in front of every convolution, including those of the
  RefineNet blocks; chained residual pooling averages (NCSN). The output is the raw network
  output.
* ``"instance_plus"`` (NCSNv2): unconditional InstanceNorm++ in the residual stages and before
  the output conv only, RefineNet blocks without normalisation, max pooling in the chained
  residual pooling, and the network output divided by σ — the noise level enters only there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("cond_instance_plus", "instance_plus")

NormFactory = Callable[[int], nn.Module]


class InstanceNormPlus(nn.Module):
    """InstanceNorm++: instance norm that keeps the (normalised) channel means as a feature.

    ``out = γ (IN(x) + α m) + β`` with ``m`` the per-channel means of ``x`` standardised across
    channels. With ``num_levels`` the triple (γ, α, β) is looked up per noise-level index
    (conditional InstanceNorm++), otherwise it is one learned vector per channel.
    """

    def __init__(self, channels: int, num_levels: int | None = None):
        super().__init__()
        self.instance_norm = nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
        if num_levels is None:
            self.embed = None
            self.gamma_alpha = nn.Parameter(1.0 + 0.02 * torch.randn(2 * channels))
            self.beta = nn.Parameter(torch.zeros(channels))
        else:
            self.embed = nn.Embedding(num_levels, 3 * channels)
            with torch.no_grad():
                self.embed.weight[:, : 2 * channels].normal_(1.0, 0.02)
                self.embed.weight[:, 2 * channels :].zero_()

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        means = x.mean(dim=(2, 3))
        means = (means - means.mean(dim=1, keepdim=True)) / torch.sqrt(
            means.var(dim=1, keepdim=True) + 1e-5
        )
        if self.embed is None:
            gamma, alpha = self.gamma_alpha.chunk(2)
            beta = self.beta
        else:
            gamma, alpha, beta = self.embed(level).chunk(3, dim=1)
        h = self.instance_norm(x) + _spatial(alpha * means)
        return _spatial(gamma) * h + _spatial(beta)


class NoNorm(nn.Module):
    """Identity with the normalisation layers' ``(x, level)`` signature."""

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return x


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``norm-ELU-conv-norm-ELU-conv`` (+ shortcut).

    The first conv keeps ``c_in`` channels, the second maps to ``c_out``; ``pool`` mean-pools
    both paths by 2 after their convolutions; ``dilation`` dilates the 3×3 convolutions. A
    learned shortcut (1×1 conv when pooling, else a dilated 3×3 conv) replaces the identity when
    ``shortcut`` is set.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        norm: NormFactory,
        *,
        pool: bool = False,
        dilation: int = 1,
        shortcut: bool = False,
    ):
        super().__init__()
        if not shortcut and (c_in != c_out or pool):
            raise ValueError("changing channels or resolution needs a learned shortcut")
        self.pool = pool
        self.norm1 = norm(c_in)
        self.conv1 = _conv3x3(c_in, c_in, dilation=dilation)
        self.norm2 = norm(c_in)
        self.conv2 = _conv3x3(c_in, c_out, dilation=dilation)
        self.shortcut: nn.Module | None = None
        if shortcut:
            self.shortcut = (
                nn.Conv2d(c_in, c_out, 1) if pool else _conv3x3(c_in, c_out, dilation=dilation)
            )

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        h = self.conv1(F.elu(self.norm1(x, level)))
        h = self.conv2(F.elu(self.norm2(h, level)))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.pool:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return skip + h


class ResidualConvUnits(nn.Module):
    """``n_units`` RefineNet residual conv units, each ``2 × (norm-ELU-conv)`` plus identity."""

    def __init__(self, channels: int, n_units: int, norm: NormFactory):
        super().__init__()
        self.n_units = n_units
        self.norms = nn.ModuleList(norm(channels) for _ in range(2 * n_units))
        self.convs = nn.ModuleList(
            _conv3x3(channels, channels, bias=False) for _ in range(2 * n_units)
        )

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        for unit in range(self.n_units):
            h = x
            for stage in (2 * unit, 2 * unit + 1):
                h = self.convs[stage](F.elu(self.norms[stage](h, level)))
            x = x + h
        return x


class SameMaxPool2d(nn.Module):
    """``nn.MaxPool2d(size, 1, size // 2)`` (NCSNv2's chained residual pooling) value for value,
    its gradient to the rounding of the sums, computed faster: two 1-D poolings (a row, then a
    column) where autograd records, and on the CPU without autograd (sampling, SDEdit) as maxima
    of shifted views (about 7x faster than the 2-D pooling there, 1.5x with autograd, at 32²
    with 32 channels on one CPU thread)."""

    def __init__(self, size: int = 5):
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"the pool size must be odd, got {size}")
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        half = self.size // 2
        if torch.is_grad_enabled() or x.device.type != "cpu":
            rows = F.max_pool2d(x, (1, self.size), 1, (0, half))
            return F.max_pool2d(rows, (self.size, 1), 1, (half, 0))
        for dim in (-1, -2):
            length = x.shape[dim]
            padded = F.pad(x, (half, half) if dim == -1 else (0, 0, half, half), value=-math.inf)
            x = padded.narrow(dim, 0, length)
            for shift in range(1, self.size):
                x = torch.maximum(x, padded.narrow(dim, shift, length))
        return x


class ChainedResidualPooling(nn.Module):
    """RefineNet chained residual pooling: ELU, then two ``norm-pool(5×5)-conv`` links summed."""

    def __init__(self, channels: int, norm: NormFactory, pool: nn.Module, n_links: int = 2):
        super().__init__()
        self.pool = pool
        self.norms = nn.ModuleList(norm(channels) for _ in range(n_links))
        self.convs = nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(n_links))

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        x = F.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            path = conv(self.pool(norm(path, level)))
            x = x + path
        return x


class MultiResolutionFusion(nn.Module):
    """RefineNet fusion: ``norm-conv`` each input, upsample bilinearly to one size, sum."""

    def __init__(self, in_channels: Sequence[int], channels: int, norm: NormFactory):
        super().__init__()
        self.norms = nn.ModuleList(norm(c) for c in in_channels)
        self.convs = nn.ModuleList(_conv3x3(c, channels) for c in in_channels)

    def forward(self, xs: Sequence[Tensor], level: Tensor, size: torch.Size) -> Tensor:
        total = 0
        for x, norm, conv in zip(xs, self.norms, self.convs, strict=True):
            h = conv(norm(x, level))
            total = total + F.interpolate(h, size=size, mode="bilinear", align_corners=True)
        return total


class RefineBlock(nn.Module):
    """RefineNet block: RCUs per input, fusion (if several inputs), pooling, output RCUs."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        norm: NormFactory,
        pool: nn.Module,
        end: bool = False,
    ):
        super().__init__()
        if len(in_channels) == 1 and in_channels[0] != channels:
            raise ValueError("a single-input refine block keeps its width")
        self.adapt = nn.ModuleList(ResidualConvUnits(c, 2, norm) for c in in_channels)
        self.fusion = (
            MultiResolutionFusion(in_channels, channels, norm) if len(in_channels) > 1 else None
        )
        self.pooling = ChainedResidualPooling(channels, norm, pool)
        self.output = ResidualConvUnits(channels, 3 if end else 1, norm)

    def forward(self, xs: Sequence[Tensor], level: Tensor) -> Tensor:
        hs = [adapt(x, level) for adapt, x in zip(self.adapt, xs, strict=True)]
        h = hs[0] if self.fusion is None else self.fusion(hs, level, xs[0].shape[-2:])
        return self.output(self.pooling(h, level), level)


class ScoreNet(nn.Module):
    """NCSN RefineNet estimating ∇ log q_σ(x) for pixels ``x`` in [0, 1] (see module docstring).

    ``sigmas`` (largest first) is stored as a buffer; ``forward(x, sigma_index)`` evaluates the
    score at the noise levels ``sigmas[sigma_index]`` and returns a tensor shaped like ``x``.
    """

    def __init__(
        self,
        sigmas: Tensor,
        resolution: int,
        channels: int = 3,
        ngf: int = 128,
        norm: str = "cond_instance_plus",
        pooled_stages: int | None = None,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        if sigmas.ndim != 1 or len(sigmas) < 1:
            raise ValueError("sigmas must be a non-empty 1-D tensor")
        stages = stage_layout(resolution, pooled_stages)
        self.resolution, self.channels, self.ngf, self.norm = resolution, channels, ngf, norm
        self.pooled_stages = sum(1 for _, pooled, _ in stages if pooled)
        self.conditional = norm == "cond_instance_plus"
        self.register_buffer("sigmas", sigmas.detach().to(torch.float32).clone())

        num_levels = len(sigmas) if self.conditional else None

        def block_norm(c: int) -> nn.Module:
            return InstanceNormPlus(c, num_levels)

        def refine_norm(c: int) -> nn.Module:
            return InstanceNormPlus(c, num_levels) if self.conditional else NoNorm()

        pool = nn.AvgPool2d(5, 1, 2) if self.conditional else SameMaxPool2d(5)

        widths = [ngf * multiplier for multiplier, _, _ in stages]
        self.stem = _conv3x3(channels, ngf)
        self.stages = nn.ModuleList()
        c_in = ngf
        for index, ((_, pool_stage, dilation), width) in enumerate(
            zip(stages, widths, strict=True)
        ):
            first = ResidualBlock(
                c_in, width, block_norm, pool=pool_stage, dilation=dilation, shortcut=index > 0
            )
            second = ResidualBlock(width, width, block_norm, dilation=dilation)
            self.stages.append(nn.ModuleList([first, second]))
            c_in = width
        self.refines = nn.ModuleList()
        for index in reversed(range(len(widths))):
            inputs = [widths[index]] if index == len(widths) - 1 else [widths[index]] * 2
            out = widths[max(index - 1, 0)]
            self.refines.append(RefineBlock(inputs, out, refine_norm, pool, end=index == 0))
        self.final_norm = block_norm(ngf)
        self.end_conv = _conv3x3(ngf, channels)

    def forward(self, x: Tensor, sigma_index: Tensor) -> Tensor:
        h = self.stem(2 * x - 1)
        skips = []
        for stage in self.stages:
            for block in stage:
                h = block(h, sigma_index)
            skips.append(h)
        inputs: list[Tensor] = []
        for skip, refine in zip(reversed(skips), self.refines, strict=True):
            h = refine([skip, *inputs], sigma_index)
            inputs = [h]
        out = self.end_conv(F.elu(self.final_norm(h, sigma_index)))
        if not self.conditional:
            out = out / self.sigmas[sigma_index].view(-1, *[1] * (x.ndim - 1))
        return out


def stage_layout(resolution: int, pooled: int | None = None) -> list[tuple[int, bool, int]]:
    """``(width multiplier, 2× pooling, dilation)`` of each residual stage.

    ``pooled`` (the depth: how many 2× down-sampling stages) defaults to NCSNv2's choice for
    the resolution: 1 up to 32², 2 up to 64², 3 above.
    """
    auto = 1 if resolution <= 32 else 2 if resolution <= 64 else 3
    pooled = auto if pooled is None else pooled
    if pooled < 1:
        raise ValueError(f"pooled stages must be at least 1, got {pooled}")
    if resolution % 2**pooled:
        raise ValueError(f"resolution {resolution} is not divisible by {2**pooled}")
    deep_width = 2 if pooled == 1 else 4
    return (
        [(1, False, 1)] + [(2, True, 1)] * pooled + [(deep_width, False, 2), (deep_width, False, 4)]
    )


def _spatial(v: Tensor) -> Tensor:
    """Per-channel vector(s) ``[C]`` or ``[N, C]`` broadcastable over ``[N, C, H, W]``."""
    return v[..., None, None]


def _conv3x3(c_in: int, c_out: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=bias)
