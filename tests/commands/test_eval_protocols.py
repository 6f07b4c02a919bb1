"""`nvs eval` / `nvs render` with the published protocol: official checkpoints default to the lact
normalisation and the official resize; kmeans and official view selection; index files reused."""

import csv
import json

import pytest
import torch

from nvs.datasets.views import OfficialSampler
from nvs.models import LaCTRenderer, save_renderer
from nvs.models.checkpoint import save_official_checkpoint

from tests.helpers import run_nvs, tiny_config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    out = run_nvs("data", "synth", "--kind", "room", "--scenes", "2", "--views", "17", "--size", "32", "32", "--out", root / "data")
    assert out.returncode == 0, out.stderr
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config())
    official, _ = save_official_checkpoint(model, root / "official.pt")
    ours = save_renderer(model, root / "ours.safetensors")
    return root, official, ours


def _psnrs(folder):
    return [float(r["psnr"]) for r in csv.DictReader(open(folder / "per_view.csv"))]


@pytest.mark.slow
def test_official_checkpoint_defaults_to_the_official_protocol_and_kmeans_index_is_reused(workspace):
    root, official, ours = workspace
    out = run_nvs("eval", "--checkpoint", official, "--data", root / "data", "--views", "2", "--selection", "kmeans",
                  "--size", "32", "32", "--no-images", "--write-index", root / "kmeans.json", "--out", root / "ev")
    assert out.returncode == 0, out.stderr
    summary = json.loads((root / "ev" / "summary.json").read_text())
    assert summary["protocol"]["normalize"] == "lact" and summary["protocol"]["resize"] == "official"
    assert set(summary["psnr_pooled"]) == {"mean", "std", "per_scene"} and len(summary["psnr_pooled"]["per_scene"]) == 2
    assert summary["psnr_pooled"]["mean"] <= summary["psnr"]["mean"] + 1e-9  # pooling the MSE favours the worst views
    index = json.loads((root / "kmeans.json").read_text())
    assert [entry["target"] for entry in index.values()] == [[0, 8, 16]] * 2
    again = run_nvs("eval", "--checkpoint", official, "--data", root / "data", "--index", root / "kmeans.json",
                    "--size", "32", "32", "--no-images", "--out", root / "ev2")
    assert again.returncode == 0, again.stderr
    assert _psnrs(root / "ev2") == _psnrs(root / "ev")
    ours_run = run_nvs("eval", "--checkpoint", ours, "--data", root / "data", "--index", root / "kmeans.json",
                       "--size", "32", "32", "--no-images", "--out", root / "ev3")
    assert ours_run.returncode == 0, ours_run.stderr
    protocol = json.loads((root / "ev3" / "summary.json").read_text())["protocol"]
    assert (protocol["normalize"], protocol["resize"]) == ("none", "bilinear")


def test_render_with_the_official_selection_and_a_named_normalisation(workspace):
    root, _, ours = workspace
    out = run_nvs("render", "--checkpoint", ours, "--scene", root / "data", "--scene-index", "1", "--views", "3",
                  "--selection", "official", "--normalize", "lact", "--size", "32", "32", "--frames", "2",
                  "--write-index", root / "render_index.json", "--out", root / "frames")
    assert out.returncode == 0, out.stderr
    summary = json.loads((root / "frames.json").read_text())
    sampler = OfficialSampler()
    sampler.select(17, 3, 1)  # scene 0 comes first in the run-wide sampling
    assert summary["input_views"] == sampler.select(17, 3, 1)[0]
    assert (summary["selection"], summary["normalize"]) == ("official", "lact")
    assert len(list((root / "frames").glob("*.png"))) == 2
    (name, entry), = json.loads((root / "render_index.json").read_text()).items()
    assert entry["context"] == summary["input_views"] and name == summary["scene"]
