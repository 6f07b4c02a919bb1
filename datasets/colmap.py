"""COLMAP sparse models (text or binary), read and written with pycolmap.

A scene is a folder ``SCENE/{images/, sparse/0/}`` (``sparse/`` itself or the folder itself may
also hold the model files). Poses are COLMAP's world-to-camera (OpenCV axes); pixel coordinates
put the top-left pixel's centre at (0.5, 0.5), which is our convention too. Only registered images
are read, sorted by name. Pinhole and radial/OpenCV camera models are read; distortion is removed
with OpenCV when the images are loaded; other models (fisheye, ...) are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.datasets.records import SceneRecord, cameras_from_w2c, check_image, image_size
from nvs.io.untrusted import current, scene_path
from nvs.io.media import save_image

MODEL_FILES = ("cameras.bin", "cameras.txt")


def intrinsics_and_distortion(model: str, p: list[float], where: str) -> tuple[list[float], list[float]]:
    """(fx fy cx cy, k1 k2 p1 p2 k3) of a COLMAP camera model's parameter list."""
    if model == "SIMPLE_PINHOLE":
        return [p[0], p[0], p[1], p[2]], [0.0] * 5
    if model == "PINHOLE":
        return p[:4], [0.0] * 5
    if model == "SIMPLE_RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], 0.0, 0.0, 0.0, 0.0]
    if model == "RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], p[4], 0.0, 0.0, 0.0]
    if model == "OPENCV":
        return p[:4], [*p[4:8], 0.0]
    raise ValueError(f"{where}: COLMAP camera model {model} is not supported (pinhole, radial and OPENCV are); "
                     "undistort the images first, e.g. with `colmap image_undistorter`")


def image_w2c(image) -> Tensor:
    """World-to-camera [4, 4] float64 of a registered pycolmap image."""
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3] = torch.from_numpy(image.cam_from_world().matrix())
    return w2c


def image_camera(image, where: str) -> tuple[list[float], list[float], Tensor]:
    """(fx fy cx cy, k1 k2 p1 p2 k3, w2c [4, 4] float64) of a registered pycolmap image."""
    cam = image.camera
    intr, dist = intrinsics_and_distortion(cam.model.name, [float(v) for v in cam.params], where)
    return intr, dist, image_w2c(image)


def is_model_folder(path: Path) -> bool:
    return any((path / f).is_file() for f in MODEL_FILES)


def model_folders(scene: Path) -> list[Path]:
    """Every sparse model of a scene folder (``sparse/N``, ``sparse`` or the folder itself)."""
    candidates = sorted((scene / "sparse").glob("*")) if (scene / "sparse").is_dir() else []
    found = [p for p in [*candidates, scene / "sparse", scene] if p.is_dir() and is_model_folder(p)]
    return found


def is_colmap_scene(path: Path) -> bool:
    return bool(model_folders(path)) and (path / "images").is_dir()


def read_colmap_scene(scene: Path, name: str | None = None) -> SceneRecord:
    """The largest sparse model of ``scene``; images are read from ``scene/images``."""
    import pycolmap

    name = name or scene.name
    folders = model_folders(scene)
    if not folders:
        raise ValueError(f"{scene}: scene '{name}' has no COLMAP model (cameras.bin or cameras.txt under sparse/)")
    models = []
    for folder in folders:
        try:
            models.append((pycolmap.Reconstruction(folder), folder))
        except Exception as exc:  # pycolmap raises its own error types for truncated files
            raise ValueError(f"{folder}: scene '{name}': not a readable COLMAP model ({exc})") from exc
    recon, folder = max(models, key=lambda m: m[0].num_reg_images())
    images = sorted((im for im in recon.images.values() if im.has_pose), key=lambda im: im.name)
    if not images:
        raise ValueError(f"{folder}: scene '{name}': the COLMAP model registers no images")
    current().check_frames(len(images), f"{folder} (scene '{name}')")
    intr, w2c, paths, sizes, dist = [], [], [], set(), []
    for im in images:
        where = f"{folder} (scene '{name}', image {im.name})"
        k, d, pose = image_camera(im, where)
        path = check_image(scene_path(scene / "images", im.name, where), where)
        stored = image_size(path, where)
        if stored != (im.camera.height, im.camera.width):
            raise ValueError(f"{where}: image is {stored} pixels, its COLMAP camera says {(im.camera.height, im.camera.width)}")
        intr.append(k)
        dist.append(d)
        w2c.append(pose)
        paths.append(path)
        sizes.add(stored)
    cams = cameras_from_w2c(intr, w2c, sizes, f"{folder} (scene '{name}')")
    distortion = torch.tensor(dist, dtype=torch.float64)
    return SceneRecord(name, paths, cams, str(folder), distortion if distortion.abs().max() > 0 else None)


def write_colmap_model(folder: Path, names: list[str], cams: Cameras) -> Path:
    """A binary COLMAP model of pinhole cameras [V] (one camera per distinct intrinsics) in ``folder``."""
    import pycolmap

    recon = pycolmap.Reconstruction()
    camera_ids: dict[tuple[float, ...], int] = {}
    w2c = cams.w2c.double().numpy()
    for i, name in enumerate(names):
        key = tuple(float(v) for v in cams.intrinsics[i].double())
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            recon.add_camera_with_trivial_rig(pycolmap.Camera(model="PINHOLE", width=cams.width, height=cams.height,
                                                              params=list(key), camera_id=camera_ids[key]))
        image = pycolmap.Image(name=name, camera_id=camera_ids[key], image_id=i + 1)
        recon.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[i, :3]))
    folder.mkdir(parents=True, exist_ok=True)
    recon.write(folder)
    return folder


def write_colmap_scene(root: Path, name: str, images: Tensor, cams: Cameras) -> Path:
    """images [V, 3, H, W] -> root/scenes/<name>/{images/*.png, sparse/0/*.bin}; returns the scene folder."""
    folder = root / "scenes" / name
    names = [f"{i:03d}.png" for i in range(images.shape[0])]
    for image, file in zip(images, names):
        save_image(image, folder / "images" / file)
    write_colmap_model(folder / "sparse" / "0", names, cams)
    return folder
