import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from nvs.io.media import read_image, save_image
from nvs.evaluation.metrics import lpips, psnr, ssim

from tests.helpers import shared_path


def _skimage_ssim(a, b):
    return structural_similarity(a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
                                 gaussian_weights=True, data_range=1.0, channel_axis=2)


def test_psnr_closed_form():
    target = torch.full((3, 32, 32), 0.5)
    noise = torch.where(torch.rand(3, 32, 32) < 0.5, 0.1, -0.1)  # every pixel off by exactly 0.1
    assert psnr(target + noise, target).item() == pytest.approx(20.0, abs=1e-4)  # -10 log10(0.01)
    assert psnr(torch.full((3, 8, 8), 2.0), torch.ones(3, 8, 8)).item() == pytest.approx(100.0)  # clamped first


@pytest.mark.parametrize("kind", ["random", "structured", "same", "dark"])
def test_ssim_matches_scikit_image(kind):
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 48, 64, generator=g)
    if kind == "random":
        b = torch.rand(3, 48, 64, generator=g)
    elif kind == "structured":
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
        a = torch.stack([xx, yy, (xx * 7).sin() * 0.5 + 0.5])
        b = (a + 0.05 * torch.randn(3, 48, 64, generator=g)).clamp(0, 1).roll(1, dims=2)
    elif kind == "same":
        b = a.clone()
    else:
        a, b = a * 0.02, (a * 0.02).flip(-1)
    assert abs(ssim(a, b).item() - _skimage_ssim(a, b)) < 1e-4


def test_ssim_batched_and_small_images():
    a, b = torch.rand(2, 4, 3, 16, 16), torch.rand(2, 4, 3, 16, 16)
    assert ssim(a, b).shape == (2, 4)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


def _lpips_images():
    folder = shared_path("lpips")
    expected = json.loads((folder / "expected.json").read_text())
    return folder, expected, {n: read_image(folder / f"{n}.png") for n in ("ex_ref", "ex_p0", "ex_p1")}


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_matches_reference_values(net):
    _, expected, img = _lpips_images()
    for name in ("ex_p0", "ex_p1"):
        value = lpips(img["ex_ref"][None], img[name][None], net=net).item()
        assert abs(value - expected[net][name]) < expected["tolerance"], (net, name, value)


def test_lpips_identical_images_is_zero():
    x = torch.rand(2, 3, 64, 64)
    assert lpips(x, x).abs().max() < 1e-6


@pytest.mark.slow
def test_nvs_metrics_command(tmp_path):
    folder, expected, _ = _lpips_images()
    for net in ("vgg", "alex"):
        out = subprocess.run([sys.executable, "-m", "nvs", "metrics", str(folder / "ex_ref.png"), str(folder / "ex_p0.png"),
                              "--lpips-net", net], capture_output=True, text=True, check=True)
        values = json.loads(out.stdout)
        assert set(values) == {"psnr", "ssim", "lpips"}
        assert abs(values["lpips"] - expected[net]["ex_p0"]) < expected["tolerance"]
        assert math.isfinite(values["psnr"]) and 0 < values["ssim"] < 1


@pytest.mark.slow
def test_nvs_metrics_bad_input(tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    good = save_image(torch.rand(3, 16, 16), tmp_path / "good.png")
    small = save_image(torch.rand(3, 8, 16), tmp_path / "small.png")
    for a, b, message in ((bogus, good, "notes.png: not a readable image"), (good, small, "pixels but")):
        out = subprocess.run([sys.executable, "-m", "nvs", "metrics", str(a), str(b)], capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_read_image_conversions(tmp_path):
    import imageio.v3 as iio

    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    iio.imwrite(tmp_path / "g.png", gray)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white
    iio.imwrite(tmp_path / "a.png", rgba)
    deep = (np.ones((8, 8)) * 65535).astype(np.uint16)
    iio.imwrite(tmp_path / "d.png", deep)
    assert read_image(tmp_path / "g.png").shape == (3, 8, 8)
    assert torch.allclose(read_image(tmp_path / "a.png"), torch.ones(3, 8, 8))
    assert torch.allclose(read_image(tmp_path / "d.png"), torch.ones(3, 8, 8))


def test_pooled_psnr_is_per_scene_psnr_of_the_mean_mse():
    from nvs.evaluation.evaluate import pooled_psnr

    # scene a: PSNR 20 and 30 -> MSE 0.01 and 0.001 -> pooled 0.0055 -> 22.596 dB; scene b: 10 dB
    rows = [{"scene": "a", "psnr": 20.0}, {"scene": "a", "psnr": 30.0}, {"scene": "b", "psnr": 10.0}]
    pooled = pooled_psnr(rows)
    assert abs(pooled["per_scene"]["a"] - 22.5963731) < 1e-6 and abs(pooled["per_scene"]["b"] - 10.0) < 1e-9
    assert abs(pooled["mean"] - (22.5963731 + 10.0) / 2) < 1e-6
