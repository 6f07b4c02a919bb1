"""`nvs adapt`, `nvs eval --adapt`, `nvs render --adapt` and the adaptation benchmark's sets."""

import json

import pytest
import torch

from nvs.adaptation.adapter import Adapter, apply_adapter
from nvs.models.checkpoint import param_checksum
from nvs.commands.cli import main
from nvs.models import LaCTRenderer, load_renderer, save_renderer
from tests.helpers import shared_path, tiny_config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    assert main(["data", "synth", "--scenes", "2", "--views", "6", "--size", "32", "32", "--out", str(root / "data")]) == 0
    torch.manual_seed(0)
    ckpt = save_renderer(LaCTRenderer(tiny_config(newton_schulz_dtype="float32")), root / "model.safetensors")
    return root, ckpt


def test_adapt_command_saves_an_adapter_for_its_base(workspace, capsys):
    root, ckpt = workspace
    out = root / "scene.safetensors"
    args = ["adapt", "--checkpoint", str(ckpt), "--scene", str(root / "data"), "--views", "5", "--size", "32", "32",
            "--budget", "300", "--steps", "4", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "verifier PSNR" in printed and "verifier curve" in printed
    report = json.loads((root / "scene.safetensors.json").read_text())
    assert report["steps"] == 4 and report["curve"][0]["phase"] == "base" and report["input_views"]
    adapter = Adapter.load(out)
    base = load_renderer(ckpt)
    assert adapter.base_checksum == param_checksum(base)
    apply_adapter(base, adapter)  # fits its base
    assert main([*args[:-1], str(root / "again.safetensors")]) == 0  # same seed, same steps: the same adapter
    again = Adapter.load(root / "again.safetensors")
    assert adapter.tensors.keys() == again.tensors.keys()
    assert all(torch.equal(adapter.tensors[k], again.tensors[k]) for k in adapter.tensors)


def test_adapt_warns_when_the_renderer_is_not_of_the_captures_kind(workspace, tmp_path, capsys):
    """A renderer trained on walks (a scene normalisation in its checkpoint) given a turntable on
    white: nvs adapt says so, as nvs render does, and keeps it in its report."""
    root, _ = workspace
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(newton_schulz_dtype="float32"))
    model.normalization = "lvsm"
    walks = save_renderer(model, tmp_path / "walks.safetensors")
    out = tmp_path / "scene.safetensors"
    assert main(["adapt", "--checkpoint", str(walks), "--scene", str(root / "data"), "--views", "5", "--size", "32", "32",
                 "--budget", "300", "--steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: the input cameras circle an object on white" in printed and "--checkpoint object" in printed
    report = json.loads((tmp_path / "scene.safetensors.json").read_text())
    assert "--checkpoint object" in report["capture_warning"]
    assert main(["adapt", "--checkpoint", str(workspace[1]), "--scene", str(root / "data"), "--views", "5", "--size", "32",
                 "32", "--budget", "300", "--steps", "1", "--out", str(out)]) == 0
    assert "warning:" not in capsys.readouterr().out  # an object renderer on a turntable
    assert json.loads((tmp_path / "scene.safetensors.json").read_text())["capture_warning"] is None


def test_eval_and_render_adapt(workspace):
    root, ckpt = workspace
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(root / "data"), "--views", "4", "--size", "32", "32",
                 "--no-images", "--lpips-net", "alex", "--adapt", "--adapt-steps", "2", "--adapt-budget", "300",
                 "--out", str(root / "ev")]) == 0
    summary = json.loads((root / "ev" / "summary.json").read_text())
    assert summary["adapt_seconds_per_scene"] > 0 and summary["adapt"]["steps"] == 2 and summary["scenes"] == 2
    assert main(["render", "--checkpoint", str(ckpt), "--scene", str(root / "data"), "--views", "4", "--size", "32", "32",
                 "--frames", "3", "--adapt", "--adapt-steps", "2", "--adapt-budget", "300", "--out", str(root / "v.gif")]) == 0
    assert "curve" in json.loads((root / "v.gif.json").read_text())["adaptation"]


def test_bad_adapt_inputs_are_messages(workspace, tmp_path, capsys):
    root, ckpt = workspace
    assert main(["adapt", "--checkpoint", str(ckpt), "--scene", str(root / "data"), "--views", "2", "--size", "32", "32",
                 "--out", str(tmp_path / "a.safetensors")]) == 2
    assert "at least 4 input views (2 to learn from, 1 to verify, 1 to confirm), got 2" in capsys.readouterr().err
    assert main(["adapt", "--checkpoint", str(ckpt), "--scene", str(root / "data"), "--views", "2", "--size", "32", "32",
                 "--confirm-views", "0", "--out", str(tmp_path / "a.safetensors")]) == 2
    assert "at least 3 input views (2 to learn from, 1 to verify), got 2" in capsys.readouterr().err
    assert not (tmp_path / "a.safetensors").exists()
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        Adapter.load(tmp_path / "x.safetensors")


def test_middlebury_cameras_project_the_temple_into_every_image():
    from nvs.datasets.formats import read_any_scene

    root = shared_path("middlebury_templeSparseRing")
    record = read_any_scene(root)
    assert record.cameras.shape[0] == 16 and (record.cameras.height, record.cameras.width) == (480, 640)
    # the README's bounding box centre lies in front of every camera, inside its image
    centre = torch.tensor([[-0.023, 0.102, 0.025]]).expand(16, 1, 3)
    pixels, depth = record.cameras.project(centre)
    u, v = pixels[..., 0], pixels[..., 1]
    assert (depth > 0).all() and ((u > 100) & (u < 540)).all() and ((v > 80) & (v < 400)).all(), pixels


def test_bad_middlebury_file_is_a_message(tmp_path):
    from nvs.datasets.middlebury import read_middlebury_scene

    (tmp_path / "x_par.txt").write_text("2\na.png 1 2 3\n")
    with pytest.raises(ValueError, match="expected 2 lines"):
        read_middlebury_scene(tmp_path / "x_par.txt")


def test_bench_sets_and_summary(tmp_path):
    from nvs.commands.bench_adapt import heldout_scenes, plot_gain, summarize

    for name in ("objects", "rooms"):
        (scene_name, inputs, in_cams, targets, tg_cams), = list(heldout_scenes(name, 1))
        assert inputs.shape == (8, 3, 128, 128) and targets.shape == (4, 3, 128, 128) and tg_cams.shape[0] == 4
    rows = [{"set": "rooms", "scene": f"r{i}", "budget_s": b, "seconds": b, "psnr_base": 15.0, "psnr_adapted": 15.0 + g,
             "ssim_base": 0.5, "ssim_adapted": 0.6, "lpips_base": 0.4, "lpips_adapted": 0.3, "gain_db": g, "fallback": False}
            for i, (b, g) in enumerate([(30, 0.5), (60, 1.0), (60, 2.0)])]
    table = summarize(rows)
    assert [t["budget_s"] for t in table] == [30, 60] and table[1]["gain_db"] == 1.5 and table[1]["worst_gain_db"] == 1.0
    assert plot_gain(rows, tmp_path / "gain.png").stat().st_size > 1000


def test_adapt_says_which_frame_a_fallbacks_search_chose():
    from nvs.adaptation.search import AdaptResult
    from nvs.commands.adapt import describe

    result = AdaptResult(None, Adapter.empty(0.0), True, 12.0, 11.5, fallback_reason="the verifier did not improve",
                         searched_frame="object")
    assert "the verifier did not improve: the unadapted model is kept (the search chose frame 'object', not kept)" \
        in describe(result)
    result.searched_frame = "as given"
    assert "the unadapted model is kept\n" in describe(result)


@pytest.mark.slow
def test_bench_adapts_each_scene_with_the_renderer_nvs_adapt_picks(tmp_path):
    """`nvs bench adapt` measures what `nvs adapt` does: with auto, a turntable on white goes to the
    object renderer and a walk to the scene renderer, each in its own frame; a file is used as given."""
    from nvs.assets import OBJECT_CHECKPOINT, SCENE_CHECKPOINT
    from nvs.commands.bench_adapt import bench_adapt, heldout_scenes, scene_renderer
    from nvs.commands.bench_adapt_ablation import ablation_arms, bench_adapt_ablation, summarize_ablation
    from nvs.inference import renderer_frame

    loaded = {}
    for name, shipped in (("objects", OBJECT_CHECKPOINT), ("rooms", SCENE_CHECKPOINT)):
        (_, inputs, in_cams, _, tg_cams), = list(heldout_scenes(name, 1))
        model, path, moved_in, moved_tg = scene_renderer("auto", inputs, in_cams, tg_cams, loaded)
        assert path == shipped and loaded[path] is model
        move = renderer_frame(model, in_cams)
        assert torch.allclose(moved_in.c2w, move(in_cams).c2w) and torch.allclose(moved_tg.c2w, move(tg_cams).c2w)
    assert scene_renderer("auto", inputs, in_cams, tg_cams, loaded)[0] is loaded[SCENE_CHECKPOINT]  # read once
    assert scene_renderer("object", inputs, in_cams, tg_cams, loaded)[1] == OBJECT_CHECKPOINT
    torch.manual_seed(0)
    tiny = save_renderer(LaCTRenderer(tiny_config(newton_schulz_dtype="float32")), tmp_path / "tiny.safetensors")
    rows = bench_adapt(tiny, tmp_path / "bench", ("objects",), 1, (2.0,), log=lambda line: None)
    assert rows[0]["renderer"] == "tiny.safetensors" and rows[0]["set"] == "objects" and rows[0]["curve"]
    assert isinstance(rows[0]["searched_frame"], str)
    assert json.loads((tmp_path / "bench" / "adapt.json").read_text())[0]["psnr_base"] == rows[0]["psnr_base"]
    arm, = ablation_arms(["none"], [0.0])
    rows = bench_adapt_ablation(tiny, tmp_path / "ablation", ("objects",), 1, [arm], steps=1, log=lambda line: None)
    assert rows[0]["renderer"] == "tiny.safetensors" and rows[0]["steps"] == 1 and isinstance(rows[0]["searched_frame"], str)
    assert summarize_ablation(rows)[0]["renderer"] == "tiny.safetensors"
    with pytest.raises(ValueError, match="missing.safetensors: checkpoint file not found"):  # before any scene is made
        bench_adapt(tmp_path / "missing.safetensors", tmp_path / "bench", ("furniture",), 1, (2.0,))
