"""The optional fused Triton FIR kernel: equal to the convolution path (checked by Triton's
CPU interpreter in a process of its own), and used only where it can run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixgan.nets import fused_fir, stylegan2
from mixgan.nets.stylegan2 import upfirdn2d

CHECKS = Path(__file__).parent / "interpreted" / "fused_fir_checks.py"


def test_fused_kernel_equals_the_convolutions_under_the_triton_interpreter():
    pytest.importorskip("triton")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHECKS)],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_fused_kernel_is_not_used_where_it_cannot_run():
    # Without a GPU or the interpreter, CPU tensors take the convolution path even when enabled.
    x = torch.randn(1, 2, 8, 8)
    f = stylegan2.fir_filter()
    convolutions = upfirdn2d(x, f, padding=(2, 1))
    stylegan2.use_fused_fir(True)
    try:
        assert not fused_fir.available(x)
        torch.testing.assert_close(upfirdn2d(x, f, padding=(2, 1)), convolutions)
    finally:
        stylegan2.use_fused_fir(False)
