"""Kernel selection, and the Triton kernels checked in Triton's CPU interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvs import kernels
from tests.helpers import ROOT


def test_cpu_tensors_use_the_reference(monkeypatch):
    t = torch.zeros(1, 2, 2)
    assert not kernels.use_triton(t)
    monkeypatch.setenv("NVS_KERNELS", "triton")  # asked for explicitly: an error, not a silent fallback
    with pytest.raises(RuntimeError, match="NVS_KERNELS=triton"):
        kernels.use_triton(t)
    monkeypatch.setenv("NVS_KERNELS", "cuda")
    with pytest.raises(ValueError, match="choose one of"):
        kernels.use_triton(t)


@pytest.mark.slow
def test_triton_kernels_match_the_reference_in_the_interpreter():
    if not kernels.HAVE_TRITON:
        pytest.skip("triton is not installed (requirements.txt installs it)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-m", "tests.kernels.triton_kernel_checks"], env=env, capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "match the reference" in out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
@pytest.mark.parametrize("sizes", [dict(n=2, length=50, d=40, dh=72), dict(n=1, length=4096, d=768, dh=1536)],
                         ids=["odd", "published"])
def test_triton_kernels_match_the_reference_on_cuda(sizes, monkeypatch):
    from tests.kernels.triton_kernel_checks import check

    cuda = torch.zeros(1, device="cuda")
    assert not kernels.use_triton(cuda)  # the default runs the reference, also on GPUs
    monkeypatch.setenv("NVS_KERNELS", "triton")
    assert kernels.use_triton(cuda)
    check("cuda", **sizes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
def test_triton_kernels_in_bf16_match_the_reference_on_cuda():
    from tests.kernels.triton_kernel_checks import check_bf16

    check_bf16("cuda")
