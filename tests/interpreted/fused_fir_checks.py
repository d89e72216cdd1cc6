"""Checks of the fused Triton FIR kernel against the convolution path, run on CPU tensors by
Triton's interpreter: ``tests/test_fused_fir.py`` runs this file in a pytest process of its own
with TRITON_INTERPRET=1, which Triton reads when it is first imported."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run by tests/test_fused_fir.py with TRITON_INTERPRET=1", allow_module_level=True)
pytest.importorskip("triton")

from mixgan.nets import fused_fir, stylegan2  # noqa: E402  (after the checks above)
from mixgan.nets.stylegan2 import Discriminator, upfirdn2d  # noqa: E402


@pytest.fixture
def interpreted_kernel():
    """``use_fused_fir``, to switch the package's FIR resampling to the (interpreted) kernel;
    back to the convolutions afterwards."""
    yield stylegan2.use_fused_fir
    stylegan2.use_fused_fir(False)


CASES = [  # up, down, (before, after) padding of both axes
    (1, 1, (2, 1)),
    (2, 1, (2, 1)),
    (1, 2, (1, 1)),
    (2, 1, (-1, 3)),
    (2, 2, (3, 3)),
    (1, 1, (-1, -1)),
]


@pytest.mark.parametrize(("up", "down", "pad"), CASES)
def test_fused_kernel_equals_the_convolutions_in_both_layouts(interpreted_kernel, up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)
    f = torch.tensor([1.0, 2.0, 4.0, 1.0])  # asymmetric, to check the orientation
    reference = upfirdn2d(x, f, up, down, pad, gain=up * up)
    reference_bf16 = upfirdn2d(x.bfloat16().float(), f, up, down, pad, gain=up * up)
    interpreted_kernel(True)
    assert fused_fir.available(x)
    fused = upfirdn2d(x, f, up, down, pad, gain=up * up)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    nhwc = upfirdn2d(
        x.contiguous(memory_format=torch.channels_last), f, up, down, pad, gain=up * up
    )
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, reference, rtol=1e-5, atol=1e-5)
    bf16 = upfirdn2d(x.bfloat16(), f, up, down, pad, gain=up * up)
    assert bf16.dtype == torch.bfloat16
    # float32 sums of the rounded inputs, cast once: within one bf16 step (2^-7 relative)
    torch.testing.assert_close(bf16.float(), reference_bf16, rtol=2**-7, atol=1e-3)


def test_fused_kernel_gives_the_first_and_second_order_gradients_of_r1(
    interpreted_kernel, monkeypatch
):
    # D's logits and the R1 penalty's gradient with respect to D's weights: the forward pass,
    # the adjoint and the adjoint's adjoint all run the kernel.
    torch.manual_seed(0)
    D = Discriminator(img_resolution=16, channel_base=64, channel_max=8, mbstd_group_size=2)
    images = torch.randn(2, 3, 16, 16)

    def r1_and_weight_grads():
        x = images.clone().requires_grad_(True)
        logits = D(x)
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        weight_grads = torch.autograd.grad(
            grad.square().sum(), list(D.parameters()), allow_unused=True, materialize_grads=True
        )  # the last bias does not reach the input gradient
        return logits.detach(), grad.detach(), weight_grads

    reference = r1_and_weight_grads()
    interpreted_kernel(True)
    kernel, resamplings = fused_fir.upfirdn2d, set()

    def counted(x, f, up, down, pad, gain):
        resamplings.add((up, down))
        return kernel(x, f, up, down, pad, gain)

    monkeypatch.setattr(fused_fir, "upfirdn2d", counted)
    fused = r1_and_weight_grads()
    assert resamplings == {(1, 1), (1, 2), (2, 1)}  # blur, downsampling and its adjoint
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused[1], reference[1], rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(fused[2], reference[2], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-5)
