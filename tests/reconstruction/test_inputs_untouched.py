"""`nvs reconstruct` never writes into, replaces or deletes the user's files: --out equal to the
photo folder or to its parent (the COLMAP / nerfstudio layout), reruns into the same folder,
failed runs, and output names already taken. Checked by the sha256 of every input file."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvs.datasets.formats import list_scenes, read_scene
from nvs.datasets.procedural import object_scene, turntable_cameras
from nvs.io.outputs import MANIFEST, StagedOutput
from nvs.io.media import save_image
from nvs.reconstruction.sfm import ReconstructOptions, reconstruct

ROOT = Path(__file__).resolve().parents[2]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _photos(folder: Path, count: int = 12, size: int = 192) -> Path:
    scene = object_scene(2, count, size, size, cameras=turntable_cameras(count, size), texture="detail")
    for i, img in enumerate(scene.images):
        save_image(img, folder / f"view_{i:03d}.png")
    # a photo COLMAP cannot register, and a non-photo: both must survive as they are
    save_image(torch.rand(3, size, size, generator=torch.Generator().manual_seed(5)), folder / "noise.png")
    (folder / "notes.txt").write_text("the user's notes")
    return folder


def _run(*args):
    result = subprocess.run([sys.executable, "-m", "nvs", "reconstruct", *map(str, args)], capture_output=True,
                            text=True, timeout=900, cwd=ROOT)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.slow
def test_out_equal_to_the_photo_folder_or_its_parent_keeps_every_input(tmp_path):
    scene = tmp_path / "scene"
    photos = _photos(scene / "images")
    (scene / "sparse").mkdir()
    (scene / "sparse" / "keep.txt").write_text("a user's COLMAP model")
    before = _hashes(scene)

    # --out the parent: scene/images is an input, so the undistorted images take a new name
    result = _run(photos, "--out", scene)
    assert result.returncode == 0, result.stderr
    after = _hashes(scene)
    assert {k: after[k] for k in before} == before
    report = json.loads((scene / "report.json").read_text())
    assert report["outputs"]["images"] == "images_nvs" and (scene / "images_nvs").is_dir()
    assert report["files_given"] == 14  # 12 views, noise, notes
    assert not [p for p in scene.rglob(".nvs-staging-*")]
    fmt, refs = list_scenes(scene)
    assert fmt == "lact" and len(read_scene(fmt, refs[0]).sources) == report["images_registered"] >= 2

    # the same again: the earlier outputs are replaced, the inputs still untouched
    assert _run(photos, "--out", scene).returncode == 0
    assert {k: v for k, v in _hashes(scene).items() if k in before} == before
    assert not (scene / "images_nvs2").exists()

    # --out the photo folder itself, twice: new names inside it, never read back as photos
    for _ in range(2):
        result = _run(photos, "--out", photos)
        assert result.returncode == 0, result.stderr
        report = json.loads((photos / "report.json").read_text())
        assert report["files_given"] == 14, report["files_given"]  # not its own images/, colmap/ or JSON files
    assert {k: v for k, v in _hashes(scene).items() if k in before} == before
    assert not (photos / "colmap" / "input").exists()  # unpacked temporary files are gone after success
    manifest = json.loads((photos / MANIFEST).read_text())
    assert set(manifest["entries"]) == {"images", "colmap", "opencv_cameras.json", "index.json", "report.json"}


def test_a_failed_run_removes_only_what_it_wrote(tmp_path):
    photos = tmp_path / "photos"
    for i in range(2):  # two unrelated noise images: nothing to match
        save_image(torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)), photos / f"n{i}.png")
    before = _hashes(tmp_path)
    with pytest.raises(ValueError, match="could not reconstruct"):
        reconstruct(photos, photos, ReconstructOptions(max_size=96, retry=False))
    assert _hashes(tmp_path) == before and sorted(p.name for p in photos.iterdir()) == ["n0.png", "n1.png"]


def test_output_names_taken_by_someone_else_are_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.json").write_text('["the user\'s own index"]')
    with pytest.raises(ValueError, match="index.json already exist"):
        StagedOutput(out, [tmp_path / "photos"], {"images": True, "index.json": False})
    assert (out / "index.json").read_text() == '["the user\'s own index"]'
    assert sorted(p.name for p in out.iterdir()) == ["index.json"]

    (out / "images").mkdir()
    (out / "images" / "a.png").write_bytes(b"user data")
    staged = StagedOutput(out, [tmp_path / "photos"], {"images": True, "colmap": True})
    assert staged.names == {"images": "images_nvs", "colmap": "colmap"}
    staged.path("images").mkdir()
    (staged.path("images") / "b.png").write_bytes(b"ours")
    staged.commit()
    assert (out / "images" / "a.png").read_bytes() == b"user data" and (out / "images_nvs" / "b.png").exists()
    # a second run may replace its own outputs, and still not the user's
    again = StagedOutput(out, [tmp_path / "photos"], {"images": True})
    assert again.names == {"images": "images_nvs"}
    again.abort()
    assert not list(out.glob(".nvs-staging-*"))


def test_an_output_folder_that_holds_an_input_is_renamed(tmp_path):
    scene = tmp_path / "scene"
    (scene / "colmap" / "photos").mkdir(parents=True)
    staged = StagedOutput(scene, [scene / "colmap" / "photos"], {"colmap": True, "report.json": False})
    assert staged.names["colmap"] == "colmap_nvs"
    staged.abort()
