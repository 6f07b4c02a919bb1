"""Pinhole cameras in the OpenCV convention, batched.

Conventions (see DESIGN.md): camera x right, y down, z forward; ``c2w`` maps camera coordinates
to world coordinates; intrinsics ``[fx, fy, cx, cy]`` are in pixels of the image as stored, with
pixel centres at integer + 0.5 (the top-left pixel covers [0, 1] x [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from nvs.geometry.vectors import vector_norm

# Flips y and z: the same matrix turns OpenGL camera axes into OpenCV ones and back.
_GL_CV_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def _check_c2w_shape(c2w: Tensor, name: str = "c2w") -> None:
    if c2w.ndim < 2 or tuple(c2w.shape[-2:]) not in ((4, 4), (3, 4)):
        raise ValueError(f"{name} must have shape [..., 4, 4] or [..., 3, 4], got {tuple(c2w.shape)}")


def to_homogeneous(pose: Tensor) -> Tensor:
    """[..., 3, 4] or [..., 4, 4] -> [..., 4, 4] with last row [0, 0, 0, 1]."""
    _check_c2w_shape(pose, "pose")
    if pose.shape[-2] == 4:
        return pose
    bottom = torch.zeros(*pose.shape[:-2], 1, 4, dtype=pose.dtype, device=pose.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([pose, bottom], dim=-2)


def full_precision(device: torch.device | str):
    """A context without autocast on ``device``: camera geometry runs in its tensors' own dtype
    also inside a bfloat16 region (``--dtype bf16``), where a matrix product would round poses
    and projections to 3 significant digits."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def invert_rigid(pose: Tensor) -> Tensor:
    """Inverse of rigid transforms [..., 4, 4] (w2c <-> c2w) without a general matrix inverse."""
    pose = to_homogeneous(pose)
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot_t
    with full_precision(pose.device):
        out[..., :3, 3:] = -rot_t @ trans
    out[..., 3, 3] = 1.0
    return out


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Camera-to-world with OpenGL camera axes (y up, z backward) -> OpenCV axes. [..., 4, 4]."""
    c2w = to_homogeneous(c2w)
    return c2w @ _GL_CV_FLIP.to(c2w)


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """Inverse of :func:`opengl_to_opencv` (the flip is its own inverse). [..., 4, 4]."""
    return opengl_to_opencv(c2w)


def normalized_to_pixel_intrinsics(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """[fx/W, fy/H, cx/W, cy/H] -> pixels. [..., 4]."""
    scale = torch.tensor([width, height, width, height], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * scale


def pixel_to_normalized_intrinsics(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """Pixels -> [fx/W, fy/H, cx/W, cy/H]. [..., 4]."""
    scale = torch.tensor([width, height, width, height], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics / scale


def intrinsics_matrix(intrinsics: Tensor) -> Tensor:
    """[..., 4] fx, fy, cx, cy -> [..., 3, 3] K."""
    fx, fy, cx, cy = intrinsics.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1), torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, dim=-2)


def fov_to_focal(fov_radians: float | Tensor, size: int) -> float | Tensor:
    """Focal length in pixels for a field of view spanning ``size`` pixels."""
    half = torch.as_tensor(fov_radians) / 2
    focal = size / (2 * torch.tan(half))
    return focal if isinstance(fov_radians, Tensor) else float(focal)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world [..., 4, 4] for cameras at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image (OpenCV's -y).
    """
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=-1)
    down = torch.linalg.cross(forward, right)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = down
    c2w[..., :3, 2] = forward
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


@dataclass
class Cameras:
    """A batch of pinhole cameras sharing one image size.

    intrinsics: [..., 4] fx, fy, cx, cy in pixels.
    c2w: [..., 4, 4] OpenCV camera-to-world.
    height, width: image size in pixels that the intrinsics refer to.
    """

    intrinsics: Tensor
    c2w: Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.intrinsics, Tensor) or not isinstance(self.c2w, Tensor):
            raise ValueError("Cameras.intrinsics and Cameras.c2w must be torch tensors")
        _check_c2w_shape(self.c2w)
        if self.c2w.shape[-2] == 3:
            self.c2w = to_homogeneous(self.c2w)
        if self.intrinsics.shape[-1:] != (4,):
            raise ValueError(f"intrinsics must have shape [..., 4] (fx, fy, cx, cy), got {tuple(self.intrinsics.shape)}")
        if self.intrinsics.shape[:-1] != self.c2w.shape[:-2]:
            raise ValueError(
                f"intrinsics batch shape {tuple(self.intrinsics.shape[:-1])} does not match "
                f"c2w batch shape {tuple(self.c2w.shape[:-2])}"
            )
        self.height, self.width = int(self.height), int(self.width)
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_w2c(cls, intrinsics: Tensor, w2c: Tensor, height: int, width: int) -> "Cameras":
        return cls(intrinsics, invert_rigid(w2c), height, width)

    @classmethod
    def from_opengl(cls, intrinsics: Tensor, c2w_gl: Tensor, height: int, width: int) -> "Cameras":
        return cls(intrinsics, opengl_to_opencv(c2w_gl), height, width)

    @classmethod
    def cat(cls, cams: Sequence["Cameras"], dim: int = 0) -> "Cameras":
        sizes = {(c.height, c.width) for c in cams}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate cameras of different image sizes: {sorted(sizes)}")
        dim_i = dim if dim >= 0 else dim - 1  # intrinsics have one trailing dim, c2w two
        dim_c = dim if dim >= 0 else dim - 2
        return cls(
            torch.cat([c.intrinsics for c in cams], dim_i),
            torch.cat([c.c2w for c in cams], dim_c),
            cams[0].height,
            cams[0].width,
        )

    # ----- tensor-like behaviour ----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        """Batch shape, e.g. [B, V]."""
        return self.intrinsics.shape[:-1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> "Cameras":
        intr = self.intrinsics[index]
        if intr.ndim == 0 or intr.shape[-1:] != (4,):
            raise IndexError("Cameras can only be indexed over their batch dimensions")
        return Cameras(intr, self.c2w[index], self.height, self.width)

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.intrinsics.to(*args, **kwargs), self.c2w.to(*args, **kwargs), self.height, self.width)

    def reshape(self, *shape: int) -> "Cameras":
        return Cameras(self.intrinsics.reshape(*shape, 4), self.c2w.reshape(*shape, 4, 4), self.height, self.width)

    def unsqueeze(self, dim: int) -> "Cameras":
        dim_i = dim if dim >= 0 else dim - 1
        dim_c = dim if dim >= 0 else dim - 2
        return Cameras(self.intrinsics.unsqueeze(dim_i), self.c2w.unsqueeze(dim_c), self.height, self.width)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    # ----- derived quantities -------------------------------------------------------------
    @property
    def w2c(self) -> Tensor:
        """[..., 4, 4] world-to-camera."""
        return invert_rigid(self.c2w)

    @property
    def centers(self) -> Tensor:
        """[..., 3] camera centres in world coordinates."""
        return self.c2w[..., :3, 3]

    @property
    def K(self) -> Tensor:
        """[..., 3, 3] intrinsic matrices."""
        return intrinsics_matrix(self.intrinsics)

    def normalized_intrinsics(self) -> Tensor:
        """[..., 4] fx/W, fy/H, cx/W, cy/H."""
        return pixel_to_normalized_intrinsics(self.intrinsics, self.height, self.width)

    def project(self, points: Tensor, min_depth: float | None = None) -> tuple[Tensor, Tensor]:
        """Project world points.

        points: [..., N, 3] with the cameras' batch shape in front.
        Returns (pixels [..., N, 2] in continuous pixel coordinates, depth [..., N]). With
        ``min_depth``, points at a smaller depth get the pixel of the optical axis instead of an
        inf or a mirrored pixel (and a finite gradient); their depth says which they are.
        """
        w2c = self.w2c.to(points.dtype)
        with full_precision(points.device):
            cam = points @ w2c[..., :3, :3].transpose(-1, -2) + w2c[..., None, :3, 3]
        depth = cam[..., 2]
        divisor = depth if min_depth is None else torch.where(depth > min_depth, depth, torch.full_like(depth, torch.inf))
        fx, fy, cx, cy = self.intrinsics.to(points.dtype)[..., None, :].unbind(-1)
        u = fx * cam[..., 0] / divisor + cx
        v = fy * cam[..., 1] / divisor + cy
        return torch.stack([u, v], dim=-1), depth

    # ----- image-space edits (intrinsics follow the pixels) -----------------------------
    def resize(self, height: int, width: int) -> "Cameras":
        """Cameras for the same images rescaled to ``height`` x ``width``."""
        sx, sy = width / self.width, height / self.height
        scale = torch.tensor([sx, sy, sx, sy], dtype=self.intrinsics.dtype, device=self.device)
        return Cameras(self.intrinsics * scale, self.c2w, height, width)

    def crop(self, top: int, left: int, height: int, width: int) -> "Cameras":
        """Cameras for the window [top, top+height) x [left, left+width) of the images."""
        if top < 0 or left < 0 or top + height > self.height or left + width > self.width:
            raise ValueError(
                f"crop ({top}, {left}, {height}, {width}) lies outside the {self.height}x{self.width} image"
            )
        shift = torch.tensor([0.0, 0.0, left, top], dtype=self.intrinsics.dtype, device=self.device)
        return Cameras(self.intrinsics - shift, self.c2w, height, width)

    def center_crop(self, height: int, width: int) -> "Cameras":
        return self.crop((self.height - height) // 2, (self.width - width) // 2, height, width)

    def center_pad(self, height: int, width: int) -> "Cameras":
        """Cameras for the images centred on a ``height`` x ``width`` canvas around them (the
        inverse of :meth:`center_crop`: the same rays through the same pixels, more of them)."""
        if height < self.height or width < self.width:
            raise ValueError(f"a {height}x{width} canvas cannot hold the {self.height}x{self.width} image")
        top, left = (height - self.height) // 2, (width - self.width) // 2
        shift = torch.tensor([0.0, 0.0, left, top], dtype=self.intrinsics.dtype, device=self.device)
        return Cameras(self.intrinsics + shift, self.c2w, height, width)

    def zoom(self, scale: Tensor) -> "Cameras":
        """Cameras [B, ...] for the same images magnified by scale [B] about their centres (below 1:
        zoomed out, the pixels' content drawn nearer the centre): focal lengths times ``scale``,
        principal points ``scale`` times nearer the image centre; size and poses kept."""
        s = scale.to(self.intrinsics).reshape(-1, *([1] * (self.intrinsics.dim() - 1)))
        centre = torch.tensor([0.0, 0.0, self.width / 2, self.height / 2], dtype=self.intrinsics.dtype,
                              device=self.device)
        return Cameras(centre + (self.intrinsics - centre) * s, self.c2w, self.height, self.width)

    def mirror(self) -> "Cameras":
        """Cameras of the world reflected through the plane x = 0 that see each image flipped left to
        right: c2w -> M c2w F with M = diag(-1, 1, 1) in the world and F = diag(-1, 1, 1) in the
        camera (two reflections: still a rotation), the principal point's x -> width - x. A point p
        seen at pixel (u, v) is seen, reflected, at (width - u, v). The plane holds the y and z axes:
        the up axis of the object frame (+z) and of the scene frames (-y). Its own inverse."""
        reflect = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=self.c2w.dtype, device=self.device))
        intrinsics = self.intrinsics.clone()
        intrinsics[..., 2] = self.width - intrinsics[..., 2]
        with full_precision(self.device):
            return Cameras(intrinsics, reflect @ self.c2w @ reflect, self.height, self.width)

    # ----- checks -------------------------------------------------------------------------
    def validate(self, name: str = "cameras") -> "Cameras":
        """Raise ValueError on non-finite values, bad focal lengths or non-rigid poses."""
        if not torch.isfinite(self.intrinsics).all():
            raise ValueError(f"{name}: intrinsics contain NaN or inf")
        if not torch.isfinite(self.c2w).all():
            raise ValueError(f"{name}: c2w contains NaN or inf")
        if (self.intrinsics[..., :2] <= 0).any():
            raise ValueError(f"{name}: focal lengths must be positive")
        rot = self.c2w[..., :3, :3].double()
        det = torch.linalg.det(rot)
        if (det.abs() < 1e-6).any():
            raise ValueError(f"{name}: c2w is not invertible (rotation determinant ~ 0)")
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        err = (rot.transpose(-1, -2) @ rot - eye).abs().amax() if rot.numel() else torch.tensor(0.0)
        if err > 1e-3 or (det < 0).any():
            raise ValueError(f"{name}: c2w rotation is not a proper rotation (|R^T R - I| = {float(err):.2e})")
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=self.c2w.device)
        if self.c2w.numel() and (self.c2w[..., 3, :].double() - bottom).abs().max() > 1e-6:
            raise ValueError(f"{name}: the fourth row of c2w must be [0, 0, 0, 1]")
        return self


def pixel_rays(cams: Cameras, dtype: torch.dtype = torch.float32, exact_norm: bool = True
               ) -> tuple[Tensor, Tensor]:
    """World-space origins and unit directions of the rays through every pixel centre.

    cams [...] -> (origins, directions), each [..., 3, H, W] (channels first, like images), in
    ``dtype`` with autocast off: d = normalise(R_c2w [(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1]).
    ``exact_norm``: divide by torch's norm (:func:`nvs.geometry.vectors.vector_norm`, its bits
    without its slow reduction), as the ray embedding must for the published LaCT model's outputs
    to be matched bit for bit; False: by torch's elementwise square root of the sum of squares,
    which a CPU's vector instructions may round an ulp off the correctly rounded root, for the
    rays the sweep and the warps cast (the shipped renderers' numbers were measured so).
    """
    with full_precision(cams.device):
        intr = cams.intrinsics.to(dtype)
        c2w = cams.c2w.to(dtype)
        u = torch.arange(cams.width, device=intr.device, dtype=dtype).repeat(cams.height)
        v = torch.arange(cams.height, device=intr.device, dtype=dtype).repeat_interleave(cams.width)
        fx, fy, cx, cy = (t[..., None] for t in intr.unbind(-1))
        camera_dirs = torch.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, torch.ones_like(fx * u)], dim=-2)
        dirs = c2w[..., :3, :3] @ camera_dirs  # [..., 3, HW]
        length = vector_norm(dirs, dim=-2) if exact_norm else dirs.square().sum(dim=-2, keepdim=True).sqrt()
        dirs = dirs / length
        origins = c2w[..., :3, 3:4].expand_as(dirs)
        shape = (*dirs.shape[:-1], cams.height, cams.width)
        return origins.reshape(shape), dirs.reshape(shape)
