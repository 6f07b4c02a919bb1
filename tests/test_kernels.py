"""Kernel selection, and the Triton kernels checked in Triton's CPU interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvs import kernels


def test_cpu_tensors_use_the_reference(monkeypatch):
    t = torch.zeros(1, 2, 2)
    assert not kernels.use_triton(t)
    monkeypatch.setenv("NVS_KERNELS", "triton")  # asked for explicitly: an error, not a silent fallback
    with pytest.raises(RuntimeError, match="NVS_KERNELS=triton"):
        kernels.use_triton(t)
    monkeypatch.setenv("NVS_KERNELS", "cuda")
    with pytest.raises(ValueError, match="choose one of"):
        kernels.use_triton(t)


def test_triton_kernels_match_the_reference_in_the_interpreter():
    if not kernels.HAVE_TRITON:
        pytest.skip("triton is not installed (requirements.txt installs it)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-m", "tests.triton_interpreter_checks"], env=env, capture_output=True,
                         text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "match the reference" in out.stdout
