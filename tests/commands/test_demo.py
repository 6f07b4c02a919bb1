import json
import subprocess
import sys

import imageio.v2 as iio2
import pytest

from nvs.assets import OBJECT_CHECKPOINT, SCENE_CHECKPOINT
from nvs.models import LaCTRenderer, load_renderer


def test_shipped_renderers_load_and_are_small():
    for path, normalization in ((OBJECT_CHECKPOINT, "object"), (SCENE_CHECKPOINT, "lvsm")):
        model = load_renderer(path)
        assert isinstance(model, LaCTRenderer) and model.normalization == normalization
        assert path.stat().st_size < 25 * 2**20


@pytest.mark.slow
def test_nvs_demo_writes_its_outputs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nvs", "demo", "--out", str(tmp_path), "--scenes", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["scenes"] == 1 and metrics["input_views"] == 8
    from nvs.datasets.asset_scenes import unavailable_reason

    assets = unavailable_reason() is None
    expected_sets = {"procedural objects", "procedural rooms"} | ({"furniture models", "furnished rooms"} if assets else set())
    assert set(metrics["sets"]) == expected_sets, metrics["notes"]
    for name, used in metrics["renderers"].items():  # each capture went to the renderer of its kind
        assert used == (["lact_scene.safetensors"] if "room" in name else ["lact_object.safetensors"]), metrics["renderers"]
    for scores in metrics["sets"].values():
        for name in ("model", "nearest_view", "untrained"):
            assert set(scores[name]) == {"psnr", "ssim", "lpips"}
        # the trained model must beat the same architecture untrained by a wide margin
        assert scores["model"]["psnr"] > scores["untrained"]["psnr"] + 5
    assert iio2.get_reader(tmp_path / "orbit.mp4").count_frames() == 60
    assert iio2.imread(tmp_path / "grid.png").shape[0] > 64
