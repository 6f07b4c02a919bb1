"""The `nvs` command as a user runs it (subprocesses): bad numbers, taken outputs, a busy port, an
output that cannot be written, a data set with corrupt or mis-sized images. Every failure is a
message and a non-zero exit code, never a traceback or a false success."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nvs.commands.cli import main
from nvs.datasets.formats import write_dataset
from nvs.datasets.procedural import object_scene

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "nvs" / "assets" / "lact_object.safetensors"


def nvs(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nvs", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.slow
def test_the_issue_s_numbers_are_usage_errors(tmp_path):
    _refused(nvs("render", "--checkpoint", CHECKPOINT, "--scene", tmp_path, "--fps", "-5", "--out", tmp_path / "v.mp4"),
             "--fps")
    assert not (tmp_path / "v.mp4").exists()
    _refused(nvs("data", "synth", "--size", "0", "0", "--out", tmp_path / "d"), "--size")
    _refused(nvs("eval", "--checkpoint", CHECKPOINT, "--data", tmp_path, "--targets", "-1", "--out", tmp_path / "e"),
             "--targets")
    _refused(nvs("reconstruct", tmp_path, "--frames", "0", "--out", tmp_path / "r"), "--frames")
    _refused(nvs("train", ROOT / "configs" / "train-object-cpu.yaml", "run.ckpt_every=0", "--out", tmp_path / "t"),
             "run.ckpt_every")
    assert not (tmp_path / "t").exists()


def test_in_process_main_returns_2_for_config_values_before_training(tmp_path, capsys):
    for override in ("run.log_every=0", "optim.grad_accum=0", "data.height=-64", "optim.lr=.nan"):
        assert main(["train", str(ROOT / "configs" / "train-object-cpu.yaml"), override, "--out", str(tmp_path / "t")]) == 2
        assert override.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_an_existing_file_as_out_is_refused(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    for argv in (["demo", "--out", str(taken)], ["data", "synth", "--out", str(taken)],
                 ["render", "--checkpoint", "c", "--scene", "s", "--out", str(taken / "v.mp4")],
                 ["reconstruct", "photos", "--out", str(taken)]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and "--out" in capsys.readouterr().err
    assert taken.read_text() == "keep me"


@pytest.mark.slow
def test_a_busy_port_is_a_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = nvs("app", "--port", port, timeout=120)
    _refused(result, "--port", str(port), "choose another --port")


@pytest.mark.slow
def test_a_render_that_cannot_write_its_output_fails(tmp_path):
    scene = object_scene(3, 4, 64, 64)
    write_dataset(tmp_path / "data", "lact", [("s", scene.images, scene.cameras)])
    # /proc accepts no new folders: the video cannot be written, even as root
    result = nvs("render", "--checkpoint", CHECKPOINT, "--scene", tmp_path / "data", "--frames", 4, "--views", 2,
                 "--size", 64, 64, "--out", "/proc/nvs-no-such/v.mp4")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "rendered" not in result.stdout and "/proc/nvs-no-such" in result.stderr


def test_data_info_decodes_images_and_reports_corrupt_and_mis_sized_ones(tmp_path, capsys):
    scenes = [(f"s{i}", *(lambda s: (s.images, s.cameras))(object_scene(i, 3, 32, 32))) for i in range(3)]
    write_dataset(tmp_path / "data", "lact", scenes)
    images = tmp_path / "data" / "scenes"
    (images / "s1" / "images" / "001.png").write_bytes((images / "s1" / "images" / "001.png").read_bytes()[:300])
    from nvs.io.media import save_image
    save_image(scenes[0][1][0, :, :16, :24], images / "s2" / "images" / "002.png")  # 16x24, its camera says 32x32
    code = main(["data", "info", str(tmp_path / "data")])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["valid_scenes"] == 1 and report["invalid_scenes"] == 2
    problems = " ".join(report["problems"])
    assert "s1" in problems and "001.png" in problems and "not a readable image" in problems
    assert "(16, 24) pixels, its camera says (32, 32)" in problems
