"""FIR resampling of StyleGAN2 (NVIDIA's ``upfirdn2d`` and ``conv2d_resample``) in plain PyTorch.

Upsampling, downsampling and the resampling convolutions of ``mixgan.nets.stylegan2`` with the
[1, 3, 3, 1] filter and NVIDIA's padding; every op can be differentiated any number of times
(R1, path-length regularisation). On a GPU the FIR resampling can run as one fused Triton kernel
instead (``use_fused_fir``, ``mixgan.nets.fused_fir``). ADA (``mixgan.augment.ada``) uses the
same filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
Padding4 = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes them


def fir_filter(taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """1-D low-pass filter, normalised so that its (separable) 2-D version has unit DC gain."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return f / f.sum()


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter, then keep every
    ``down``-th pixel; applied to each channel of an NCHW tensor.

    ``f`` is a 1-D filter applied along both axes, ``padding`` gives the (before, after) zero
    padding of both axes of the upsampled image (negative values crop), and ``gain`` scales the
    output of the 2-D filter. Its gradient is again an ``upfirdn2d`` (see ``_FIRResample``), so
    it can be differentiated any number of times.
    """
    pad = (padding[0], padding[1], padding[0], padding[1])
    return _FIRResample.apply(x, f, up, down, pad, gain)


def upsample_and_pad(x: Tensor, up: int, pad: Padding4) -> Tensor:
    """Insert ``up - 1`` zeros after every pixel along both axes, then pad (negative crops)."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    return F.pad(x, pad)


_fused_fir = {"enabled": False}


def use_fused_fir(enabled: bool) -> None:
    """Run the FIR resampling through the fused Triton kernel (``fused_fir``) wherever it can
    run (CUDA tensors, Triton importable) and the code is not being compiled."""
    _fused_fir["enabled"] = enabled


def _fir_resample(x: Tensor, f: Tensor, up: int, down: int, pad: Padding4, gain: float) -> Tensor:
    """``upfirdn2d`` with (left, right, top, bottom) padding: the fused kernel if enabled, else
    one grouped convolution with the 2-D filter, a transposed one of stride ``up`` where the
    padding allows (no zero-filled intermediate), otherwise a strided one after explicit zero
    insertion and padding."""
    if _fused_fir["enabled"] and not torch.compiler.is_compiling():
        from . import fused_fir  # imports Triton (0.2 s): only once the fused path is on

        if fused_fir.available(x):
            return fused_fir.upfirdn2d(x, f, up, down, pad, gain)
    c, k = x.shape[1], f.numel()
    kernel = (torch.outer(f, f) * gain).to(x.dtype)  # the 2-D filter of a true convolution
    if up > 1 and down == 1:
        crop = _transposed_crop(k, up, pad)
        if crop is not None:
            padding, output_padding = crop
            weight = kernel.expand(c, 1, k, k)
            return F.conv_transpose2d(
                x, weight, stride=up, padding=padding, output_padding=output_padding, groups=c
            )
    x = upsample_and_pad(x, up, pad)
    return F.conv2d(x, kernel.flip(0, 1).expand(c, 1, k, k), stride=down, groups=c)


def _transposed_crop(
    k: int, up: int, pad: Padding4
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``padding`` and ``output_padding`` of the transposed convolution of stride ``up`` that
    equals upsampling with a k-tap filter and ``pad``, or None where none does.

    The transposed convolution's full output starts ``k - 1 - before`` samples before the
    wanted output and ends ``k - up - after`` samples after it; ``padding`` crops the same
    number at both ends and ``output_padding`` gives back 0 to ``up - 1`` at the end.
    """
    left, right, top, bottom = pad
    crops = []
    for before, after in ((top, bottom), (left, right)):
        start, end = k - 1 - before, k - up - after
        if start < 0 or not 0 <= start - end < up:
            return None
        crops.append((start, start - end))
    (pad_h, extra_h), (pad_w, extra_w) = crops
    return (pad_h, pad_w), (extra_h, extra_w)


class _FIRResample(torch.autograd.Function):
    """FIR resampling whose backward pass is its adjoint, another FIR resampling (the flipped
    filter, ``up`` and ``down`` swapped, the padding mirrored).

    PyTorch's own double backward of a grouped convolution computes the (unused) filter
    gradient one channel at a time, each a convolution with an image-sized kernel: on an H200
    that made every R1 and path-length step of StyleGAN2 at 256² take about 10 s.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, f: Tensor, up: int, down: int, pad: Padding4, gain: float
    ) -> Tensor:
        y = _fir_resample(x, f, up, down, pad, gain)
        ctx.save_for_backward(f)
        ctx.setup = (x.shape[2], x.shape[3], y.shape[2], y.shape[3], up, down, pad, gain)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None, None]:
        (f,) = ctx.saved_tensors
        h, w, out_h, out_w, up, down, (left, right, top, bottom), gain = ctx.setup
        k = f.numel()
        adjoint_pad = (
            k - 1 - left,
            w * up - out_w * down + left,
            k - 1 - top,
            h * up - out_h * down + top,
        )
        grad_x = _FIRResample.apply(grad, f.flip(0), down, up, adjoint_pad, gain)
        return grad_x, None, None, None, None, None


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """Upsample 2x with the FIR filter ``f`` (output size exactly twice the input size)."""
    k = f.numel()
    return upfirdn2d(x, f, up=2, padding=((k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """Low-pass filter with ``f`` and downsample 2x (output size exactly half the input size)."""
    k = f.numel()
    return upfirdn2d(x, f, down=2, padding=((k - 1) // 2, (k - 2) // 2))


def conv2d_resample(
    x: Tensor, weight: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1
) -> Tensor:
    """'Same'-size convolution with an [out, in, k, k] ``weight`` (k odd), either on the
    FIR-upsampled input (``up=2``) or followed by FIR downsampling (``down=2``).

    Upsampling uses a stride-2 transposed convolution (zero insertion + convolution) followed by
    the FIR filter; downsampling filters first and then uses a stride-2 convolution.
    """
    k = weight.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=k // 2)
    if f is None or (up, down) not in ((2, 1), (1, 2)):
        raise ValueError("resampling needs a FIR filter and exactly one of up=2 or down=2")
    t = f.numel()
    if up == 2:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        pad = (k // 2 + (t + 1) // 2 - (k - 1), k // 2 + (t - 2) // 2 - (k - 2))
        return upfirdn2d(x, f, padding=pad, gain=4.0)
    pad = (k // 2 + (t - 1) // 2, k // 2 + (t - 2) // 2)
    if k == 1:  # a 1x1 conv commutes with filtering: downsample first, it is cheaper
        return F.conv2d(upfirdn2d(x, f, down=2, padding=pad), weight)
    return F.conv2d(upfirdn2d(x, f, padding=pad), weight, stride=2)
