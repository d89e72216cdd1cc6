"""FIR resampling (``upfirdn2d``) as one fused Triton kernel, an optional fast path on a GPU.

Each program computes a tile of one channel's output: for every output pixel it gathers the
k×k input pixels the zero-inserted, padded and filtered signal draws from, so nothing
upsampled or padded is ever written to memory, and any memory layout (NCHW or channels-last)
is read in place. The filter is separable; products accumulate in float32 and the output
keeps the input's type. ``stylegan2.upfirdn2d`` calls it for the forward pass and for its
adjoint (the backward pass), so one kernel serves every order of derivative.

Triton compiles for CUDA devices; with ``TRITON_INTERPRET=1`` set before Triton is imported,
the same kernel runs on CPU tensors (slowly), which is how the tests check it.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with PyTorch's CUDA wheels; without it the convolutions run
    triton = None

BLOCK_H, BLOCK_W = 8, 64  # output tile of one program: 8 rows of 64 contiguous pixels


def available(x: Tensor) -> bool:
    """Whether the fused kernel can run on ``x``: Triton is importable and ``x`` is on a CUDA
    device, or Triton's interpreter is on."""
    if triton is None:
        return False
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def upfirdn2d(
    x: Tensor, f: Tensor, up: int, down: int, pad: tuple[int, int, int, int], gain: float
) -> Tensor:
    """Zero-insert ``up - 1`` samples after every pixel, pad by (left, right, top, bottom)
    (negative crops), convolve both axes with the 1-D filter ``f`` times ``gain`` overall, and
    keep every ``down``-th pixel; ``x`` is [N, C, H, W] in any memory layout."""
    if triton is None:
        raise RuntimeError("the fused FIR kernel needs Triton")
    n, c, h, w = x.shape
    k = f.numel()
    left, right, top, bottom = pad
    out_h = (h * up + top + bottom - k) // down + 1
    out_w = (w * up + left + right - k) // down + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"upfirdn2d of a {h}x{w} input with padding {pad} leaves no output")
    y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device)
    if x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    taps = f.detach().to(device=x.device, dtype=torch.float32).flip(0).contiguous()
    grid = (n * c, triton.cdiv(out_h, BLOCK_H), triton.cdiv(out_w, BLOCK_W))
    _upfirdn2d_kernel[grid](
        x, taps, y, c, h, w, out_h, out_w, *x.stride(), *y.stride(), float(gain),
        UP=up, DOWN=down, PAD_TOP=top, PAD_LEFT=left, K=k, BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W,
    )  # fmt: skip
    return y


if triton is not None:

    @triton.jit
    def _upfirdn2d_kernel(
        x_ptr, taps_ptr, y_ptr, channels, in_h, in_w, out_h, out_w,
        sxn, sxc, sxh, sxw, syn, syc, syh, syw, gain,
        UP: tl.constexpr, DOWN: tl.constexpr, PAD_TOP: tl.constexpr, PAD_LEFT: tl.constexpr,
        K: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):  # fmt: skip
        plane = tl.program_id(0)
        sample = (plane // channels).to(tl.int64)
        channel = (plane % channels).to(tl.int64)
        oy = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
        ox = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
        inside = (oy < out_h) & (ox < out_w)
        x_plane = x_ptr + sample * sxn + channel * sxc
        acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for ky in tl.static_range(K):
            # row of the zero-inserted, padded signal, and the input row it holds (if any)
            ty = oy * DOWN + ky - PAD_TOP
            iy = ty // UP
            row_ok = (ty >= 0) & (ty % UP == 0) & (iy < in_h)
            tap_y = tl.load(taps_ptr + ky)
            for kx in tl.static_range(K):
                tx = ox * DOWN + kx - PAD_LEFT
                ix = tx // UP
                ok = inside & row_ok & (tx >= 0) & (tx % UP == 0) & (ix < in_w)
                value = tl.load(x_plane + iy * sxh + ix * sxw, mask=ok, other=0.0)
                acc += value.to(tl.float32) * (tap_y * tl.load(taps_ptr + kx))
        y_plane = y_ptr + sample * syn + channel * syc
        tl.store(
            y_plane + oy * syh + ox * syw, (acc * gain).to(y_ptr.dtype.element_ty), mask=inside
        )
