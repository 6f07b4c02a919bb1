"""Plausibility of the intrinsics SfM recovered: on weak geometry (few photos, a narrow ring) bundle
adjustment can trade focal length against lens distortion and return a camera no lens has."""

from __future__ import annotations

MAX_RADIAL = 0.5  # |k1|, |k2| of the normalised radial model; real lenses stay well inside
EXIF_FOCAL_TOLERANCE = 0.15  # relative distance from the EXIF focal length
GUESS_FOCAL_RANGE = (0.5, 2.0)  # ratio to COLMAP's prior (1.2 x the long side) without EXIF
MAX_ASPECT = 1.05  # fx / fy


def camera_warnings(model: str, params: list[float], width: int, height: int, exif_focal: float | None,
                    label: str = "the camera") -> list[str]:
    """Plain-words warnings about one recovered camera (empty when it looks like a real lens)."""
    from nvs.datasets.colmap import intrinsics_and_distortion

    (fx, fy, _, _), (k1, k2, _, _, _) = intrinsics_and_distortion(model, list(params), label)
    out = []
    if max(abs(k1), abs(k2)) > MAX_RADIAL:
        out.append(f"{label}: radial distortion k1 = {k1:.2f}, k2 = {k2:.2f} is implausibly strong (real lenses stay "
                   f"within ±{MAX_RADIAL}); the geometry may be too weak to separate focal length and distortion")
    focal = (fx + fy) / 2
    if exif_focal:
        off = focal / exif_focal - 1
        if abs(off) > EXIF_FOCAL_TOLERANCE:
            out.append(f"{label}: focal length {focal:.0f} px is {off:+.0%} off the {exif_focal:.0f} px the photos' EXIF gives")
    else:
        guess = 1.2 * max(width, height)
        low, high = GUESS_FOCAL_RANGE
        if not low <= focal / guess <= high:
            out.append(f"{label}: focal length {focal:.0f} px is far from any usual lens for {width}x{height} photos "
                       f"(expected about {guess:.0f} px)")
    if max(fx, fy) / max(min(fx, fy), 1e-9) > MAX_ASPECT:
        out.append(f"{label}: fx = {fx:.0f} and fy = {fy:.0f} differ by more than {MAX_ASPECT - 1:.0%}")
    return out


def reconstruction_warnings(recon, exif_focal: float | None) -> list[str]:
    """Warnings for every camera of a pycolmap reconstruction (at most 10)."""
    cams = list(recon.cameras.values())
    out = []
    for cam in cams:
        label = "the shared camera" if len(cams) == 1 else f"camera {cam.camera_id}"
        out += camera_warnings(cam.model.name, [float(v) for v in cam.params], cam.width, cam.height, exif_focal, label)
    return out[:10]


def radial_strength(recon) -> float:
    """The largest |k1|, |k2| over the cameras of a reconstruction (0 for pinhole models)."""
    from nvs.datasets.colmap import intrinsics_and_distortion

    worst = 0.0
    for cam in recon.cameras.values():
        _, (k1, k2, _, _, _) = intrinsics_and_distortion(cam.model.name, [float(v) for v in cam.params], "camera")
        worst = max(worst, abs(k1), abs(k2))
    return worst
