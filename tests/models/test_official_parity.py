"""Parity with the official LaCT NVS model: test vectors computed by its code (random weights).

Three precisions of the same computation (../shared/reference/lact_official/README.md):
- ``*_fp64``: float64 everywhere, Newton-Schulz in float64, the learning-rate projection in
  float32 as the official code computes it. Within 1e-6 (measured here: 1.3e-7). That float32
  projection is the one machine-dependent op: with Intel MKL on its SSE code path
  (``MKL_CBWR=COMPATIBLE``) it rounds as on the machine that wrote the files, and the files
  match to 1e-12 (measured: 2.3e-14) where ATen runs its AVX512 kernels, as there; on an AVX2-only
  CPU they missed by 1.4e-8, and the test skips with the error measured.
- ``*_fp32ns``: float32 with Newton-Schulz in float32. Within 1e-4: the network amplifies a
  one-ulp difference of float32 kernels about 100x (measured here: 1.4e-5 / 1.6e-5). The official
  code, run on this CPU (torch 2.13, MKL 2024.2, AVX512 + AMX), agrees with ours bit for bit in
  every block's output and fast weights, and misses the files by the same amount (1.6e-5 / 1.3e-5
  at its fast weights); no setting of thread count, MKL code path, oneDNN ISA or ATen CPU
  capability tried here brings both files below 1e-5 (closest: 1.1e-5). So 1e-5 is not reachable
  on this machine.
- the originals: Newton-Schulz in bfloat16, as published. Chaotic in float32 rounding, so exact
  only where both the bfloat16 products are native and the float32 kernels round as on the
  machine that wrote them; skipped elsewhere, with the measured error in the reason (the official
  code on this CPU misses them by as much as ours: 0.16 / 0.31 at the fast weights).

The fp32ns/fp64 fixtures hold only outputs and fast-weight states: their model weights and
inputs are the numbers of the original files (widened to float64 where float64).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from nvs.cameras import Cameras
from nvs.models import FastWeights, LaCTRenderer, ModelConfig, SceneState, load_renderer
from nvs.models.fast_weight import cpu_has_native_bf16

from tests.helpers import FIXTURES, ROOT

CASES = ["one_head", "two_heads"]
TOLERANCE = {"float64": 1e-6, "float32": 1e-4}


def _config(name: str) -> ModelConfig:
    return ModelConfig.from_official(json.loads((FIXTURES / "configs.json").read_text())[name])


def _inputs(name: str, dtype: torch.dtype):
    t = load_file(FIXTURES / f"{name}.safetensors")
    h, w = t["input.image"].shape[-2:]
    cams_in = Cameras(t["input.fxfycxcy"].to(dtype), t["input.c2w"].to(dtype), h, w)
    cams_tg = Cameras(t["target.fxfycxcy"].to(dtype), t["target.c2w"].to(dtype), h, w)
    return t["input.image"].to(dtype), cams_in, cams_tg


def _expected(name: str, precision: str) -> dict[str, torch.Tensor]:
    if precision == "bfloat16":
        return {k: v for k, v in load_file(FIXTURES / f"{name}.safetensors").items() if k.startswith(("output.", "state."))}
    suffix = {"float32": "fp32ns", "float64": "fp64"}[precision]
    return load_file(FIXTURES / f"{name}_{suffix}_outputs.safetensors")


def _errors(model: LaCTRenderer, name: str, precision: str) -> dict[str, float]:
    """Max |ours - official| for output.joint, output.split and every state.<layer>.<w>."""
    dtype = next(model.parameters()).dtype
    images, cams_in, cams_tg = _inputs(name, dtype)
    expected = _expected(name, precision)
    with torch.no_grad():
        joint = model(images, cams_in, cams_tg)
        state = model.memorize(images, cams_in)
        split = model.render(state, cams_tg)
    errors = {"output.joint": joint, "output.split": split}
    for i, layer in enumerate(state.layers):
        for key, w in zip(("w0", "w1", "w2"), layer.flat()):
            errors[f"state.{i}.{key}"] = w
    assert set(errors) == set(expected)
    return {k: float((v.to(expected[k].dtype) - expected[k]).abs().max()) for k, v in errors.items()}


def _load(name: str, precision: str) -> LaCTRenderer:
    model = load_renderer(FIXTURES / f"{name}.safetensors", newton_schulz_dtype=None if precision == "bfloat16" else precision)
    return model.double() if precision == "float64" else model


@pytest.mark.parametrize("name", CASES)
def test_config_inferred_from_official_tensors(name):
    model = load_renderer(FIXTURES / f"{name}.safetensors")
    assert model.config == _config(name) and model.source_format == "official"
    assert model.config.newton_schulz_dtype == "bfloat16"  # the published behaviour is the default


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("name", CASES)
def test_matches_the_official_high_precision_files(name, precision):
    model = _load(name, precision)
    assert model.config.newton_schulz_dtype == precision
    errors = _errors(model, name, precision)
    print(f"{name} {precision}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE[precision], f"{worst}: {errors[worst]:.3g}"


# Prints {case: {key: error}} for the float64 files; run in a fresh process, as MKL reads MKL_CBWR once.
_FLOAT64_ERRORS_SCRIPT = """
import json, sys
from tests.models.test_official_parity import _errors, _load
print(json.dumps({name: _errors(_load(name, "float64"), name, "float64") for name in sys.argv[1:]}))
"""


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch is built without Intel MKL")
def test_float64_files_to_1e_12_when_the_float32_projection_rounds_as_the_fixture_machine():
    """The float64 files' one float32 op (the learning-rate projection) rounds as on the machine that
    wrote them when MKL takes its SSE code path; everything else then agrees to float64 rounding."""
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    result = subprocess.run([sys.executable, "-c", _FLOAT64_ERRORS_SCRIPT, *CASES], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.splitlines()[-1])
    largest = max(max(case.values()) for case in errors.values())
    capability = torch.backends.cpu.get_cpu_capability()
    if largest >= 1e-12 and capability != "AVX512":  # the files were written where ATen ran its AVX512 kernels
        pytest.skip(f"ATen runs its {capability} kernels on this CPU, not the AVX512 ones of the machine that wrote the "
                    f"files: the float64 files are off by {largest:.2g} here "
                    f"(test_matches_the_official_high_precision_files holds them to 1e-6)")
    for name in CASES:
        print(f"{name} float64, MKL_CBWR=COMPATIBLE: max error {max(errors[name].values()):.2e}")
        worst = max(errors[name], key=errors[name].get)
        assert errors[name][worst] < 1e-12, f"{name} {worst}: {errors[name][worst]:.3g}"  # measured: 2.3e-14


@pytest.mark.parametrize("mistake", ["four_newton_schulz_steps", "layernorm_eps_1e-6"])
def test_the_float64_tolerance_catches_small_mistakes(mistake):
    model = _load("one_head", "float64")
    for module in model.modules():
        if mistake == "four_newton_schulz_steps" and hasattr(module, "muon_steps"):
            module.muon_steps = 4
        if mistake == "layernorm_eps_1e-6" and isinstance(module, torch.nn.LayerNorm):
            module.eps = 1e-6
    assert max(_errors(model, "one_head", "float64").values()) > 2 * TOLERANCE["float64"]


@pytest.mark.parametrize("name", CASES)
def test_matches_the_published_bfloat16_files_bit_for_bit_where_possible(name):
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 matrix products (AVX512-BF16/AMX): the published bfloat16 "
                    "Newton-Schulz cannot be reproduced bit for bit here")
    errors = _errors(_load(name, "bfloat16"), name, "bfloat16")
    measured = f"{name} bfloat16: max error {max(errors.values()):.3g} (" + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()) + ")"
    print(measured)
    float32_gap = max(_errors(_load(name, "float32"), name, "float32").values())
    if float32_gap > 0:
        pytest.skip(f"this CPU's float32 kernels round differently from the fixture machine's (float32 files off by "
                    f"{float32_gap:.2g}, not 0), and the bfloat16 Newton-Schulz amplifies that (the official code "
                    f"run on an AVX512-BF16/AMX CPU with torch 2.13 misses these files by as much as ours); {measured}")
    assert max(errors.values()) < 1e-6, measured


@pytest.mark.parametrize("name", CASES)
def test_render_from_the_official_bfloat16_state(name):
    """The read-out path alone (no Newton-Schulz): from the official fast weights to the official images."""
    model = _load(name, "bfloat16")
    expected = _expected(name, "bfloat16")
    _, _, cams_tg = _inputs(name, torch.float32)
    layers = [FastWeights(*(expected[f"state.{i}.{k}"].unflatten(0, (1, -1)) for k in ("w0", "w1", "w2")))
              for i in range(model.config.layers)]
    with torch.no_grad():
        out = model.render(SceneState(layers, num_views=3), cams_tg)
    assert (out - expected["output.split"]).abs().max() < 2e-6  # measured here: 9e-7
    assert (out - expected["output.joint"]).abs().max() < 2e-6


def test_float64_weights_load_without_narrowing(tmp_path):
    from nvs.models import save_renderer

    model = _load("one_head", "float64")
    with torch.no_grad():
        model.blocks[0].ttt.w0.add_(1e-12)  # not representable next to float32 values of this size
    save_renderer(model, tmp_path / "fp64.safetensors")
    loaded = load_renderer(tmp_path / "fp64.safetensors")
    assert next(loaded.parameters()).dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert loaded.config.newton_schulz_dtype == "float64"  # as stored
    assert load_renderer(tmp_path / "fp64.safetensors", newton_schulz_dtype="bfloat16").config.newton_schulz_dtype == "bfloat16"


def test_an_unknown_newton_schulz_dtype_is_named():
    from nvs.models import CheckpointError

    with pytest.raises(CheckpointError, match="newton_schulz_dtype must be one of"):
        load_renderer(FIXTURES / "one_head.safetensors", newton_schulz_dtype="float16")


def test_a_double_renderer_computes_in_float64_except_the_learning_rates():
    model = _load("two_heads", "float64")
    images, cams_in, cams_tg = _inputs("two_heads", torch.float64)
    seen = {}

    def record(name):
        def hook(module, args, out):
            first = out[0] if isinstance(out, tuple) else out
            seen[name] = first.dtype
        return hook

    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(record(name))
    with torch.no_grad():
        out = model(images, cams_in, cams_tg)
        lrs = model.blocks[0].ttt.learning_rates(torch.randn(1, 4, 64, dtype=torch.float64))
    assert out.dtype == torch.float64 and lrs.dtype == torch.float32
    assert len(seen) > 20 and {name for name, dtype in seen.items() if dtype != torch.float64} == set()
