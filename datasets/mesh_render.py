"""Headless rasterisation of textured meshes with pyrender over EGL (Mesa's llvmpipe on the CPU).

Materials are built here, not by pyrender's trimesh conversion: the base colour is the texture
alone when there is one (the OBJ ``Kd`` is not multiplied in), untextured colours travel as
vertex colours (linear RGB and opacity), and only glass (OBJ ``d`` < 1) or
textures with cut-out alpha are blended. Surfaces are two-sided: pyrender's shader lights a face
with its vertex normals whichever side is seen, so each triangle is drawn twice, once per side,
wound to agree with its normals and with back faces culled. Shading is pyrender's metallic-roughness
model (non-metallic, roughness from the OBJ shininess) with ambient, directional and point lights.

Cameras are the project's :class:`Cameras` (OpenCV: x right, y down, z forward; intrinsics in
pixels, pixel (u, v) centred at (u + 0.5, v + 0.5)). pyrender's ``IntrinsicsCamera`` maps a camera
point to window x = fx X / Z + cx and image row fy Y / Z + cy in the same continuous convention,
so the intrinsics pass through unchanged; only the pose changes axes (OpenGL looks down -z with
y up): c2w_gl = c2w_cv @ diag(1, -1, -1, 1).

One offscreen context per image size is kept and reused (creating one costs far more than a view).
An EGL context can be current in one thread at a time and pyrender never releases one, so renders
are serialised by a lock and each releases its context when done: a viewer's worker threads can
then take turns.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # before OpenGL is first imported

import numpy as np
import torch
from torch import Tensor

from nvs.cameras import Cameras, opencv_to_opengl

_RENDERERS: dict[tuple[int, int], object] = {}
_UNAVAILABLE: list[str] = []
_GL_LOCK = threading.RLock()


def unavailable_reason() -> str | None:
    """Why meshes cannot be rendered here (missing pyrender or EGL), or None when they can."""
    if _UNAVAILABLE:
        return _UNAVAILABLE[0]
    try:
        with _GL_LOCK:
            _release(_renderer(8, 8))
    except Exception as exc:  # noqa: BLE001 - any failure to open a GL context means "unavailable"
        _UNAVAILABLE.append(f"headless OpenGL is unavailable ({type(exc).__name__}: {exc}); install pyrender and "
                            "Mesa's EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri; `make assets`)")
        return _UNAVAILABLE[0]
    return None


def _release(renderer) -> None:
    """Make the renderer's EGL context current in no thread (pyrender's make_uncurrent does nothing)."""
    display = getattr(renderer._platform, "_egl_display", None)
    if display is not None:
        from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglMakeCurrent

        eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)


def _renderer(height: int, width: int):
    """The offscreen renderer of this image size (call with _GL_LOCK held)."""
    # Mesa's llvmpipe and Triton (which torch.compile imports) each link their own LLVM: importing
    # Triton after an EGL context exists crashes the process, while the other order is safe.
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    import pyrender

    key = (int(height), int(width))
    if key not in _RENDERERS:
        _RENDERERS[key] = pyrender.OffscreenRenderer(viewport_width=key[1], viewport_height=key[0])
    return _RENDERERS[key]


def _linear(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


@dataclass
class Surface:
    """Material inputs: colour sRGB [3]; opacity in [0, 1]; texture uint8 [H, W, 3|4] or None;
    shininess (OBJ Ns, 0-1000); cutout: the texture's alpha makes holes."""

    color: np.ndarray
    opacity: float = 1.0
    texture: np.ndarray | None = None
    shininess: float = 0.0
    cutout: bool = False


def make_material(surface: Surface):
    """A pyrender material: texture as the base colour (factor 1) or the linearised colour,
    back faces culled (see two_sided), opaque unless glass or cut-out."""
    import pyrender

    roughness = float(np.clip(1.0 - np.sqrt(max(surface.shininess, 0.0) / 1000.0), 0.35, 0.95))
    blend = surface.opacity < 1.0 or surface.cutout
    if surface.texture is not None:
        factor = np.array([1.0, 1.0, 1.0, surface.opacity])
        # uploaded as RGBA: GL reads rows 4-byte aligned, so RGB rows of a width that is not a
        # multiple of 4 would be read past their end (and renders would vary with stale memory)
        pixels = surface.texture
        if pixels.shape[-1] == 3:
            pixels = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        texture = pyrender.Texture(source=pixels, source_channels="RGBA",
                                   sampler=pyrender.Sampler(magFilter=9729, minFilter=9987, wrapS=10497, wrapT=10497))
    else:
        factor = np.concatenate([_linear(surface.color), [surface.opacity]])
        texture = None
    return pyrender.MetallicRoughnessMaterial(
        baseColorFactor=factor, baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=roughness,
        alphaMode="BLEND" if blend else "OPAQUE", doubleSided=False)


def two_sided(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray | None):
    """Unindexed triangles [3T, ...] -> [6T, ...]: each triangle wound counter-clockwise as seen
    from the side its normals point to, followed by a copy wound the other way with negated normals."""
    tri = positions.reshape(-1, 3, 3)
    face = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (face * normals.reshape(-1, 3, 3).sum(1)).sum(-1) < 0
    order = np.where(flip[:, None], [0, 2, 1], [0, 1, 2])  # [T, 3]
    front = (np.arange(len(tri))[:, None] * 3 + order).reshape(-1)
    back = front.reshape(-1, 3)[:, [0, 2, 1]].reshape(-1)
    index = np.concatenate([front, back])
    n = normals[index]
    n[len(front):] *= -1
    return positions[index], n, (None if uvs is None else uvs[index])


def make_mesh(parts) -> "object":
    """A pyrender Mesh from parts with .positions [3T, 3], .normals [3T, 3], .uvs [3T, 2] | None
    and a material (datasets.furniture.Material or Surface).

    Textured parts become one primitive each; untextured parts are merged into at most two
    primitives (opaque, and glass) that carry their colours per vertex, since every primitive
    costs a full set of GL state changes per view."""
    import pyrender

    prims = []
    plain: dict[bool, list] = {False: [], True: []}
    for part in parts:
        m = part.material
        surface = m if isinstance(m, Surface) else Surface(m.color, m.opacity, m.texture, m.shininess, m.cutout)
        if part.uvs is not None and surface.texture is not None:
            # OBJ v grows upwards from the image's bottom row, as pyrender's texture upload expects
            positions, normals, uvs = two_sided(part.positions, part.normals, part.uvs)
            prims.append(pyrender.Primitive(positions=positions, normals=normals, texcoord_0=uvs,
                                            material=make_material(surface), mode=4))
        else:
            plain[surface.opacity < 1.0].append((part, surface))
    for glass, group in plain.items():
        if not group:
            continue
        positions, normals, colors, shine = [], [], [], []
        for part, surface in group:
            rgba = np.concatenate([_linear(surface.color), [surface.opacity]]).astype(np.float32)
            positions.append(part.positions)
            normals.append(part.normals)
            colors.append(np.broadcast_to(rgba, (len(part.positions), 4)))
            shine.append(surface.shininess)
        positions, normals, colors = (np.concatenate(x) for x in (positions, normals, colors))
        positions, normals, index = two_sided(positions, normals, np.arange(len(positions))[:, None])
        # the vertex alpha carries each part's opacity; an opacity under 1 here only selects blending
        material = make_material(Surface(np.ones(3), 0.999 if glass else 1.0, None, float(np.median(shine))))
        prims.append(pyrender.Primitive(positions=positions, normals=normals, color_0=colors[index[:, 0]],
                                        material=material, mode=4))
    return pyrender.Mesh(prims)


@dataclass
class Light:
    """kind: "directional" (direction: towards the light, world) or "point" (position, world);
    colour linear RGB [3]; intensity (W/m^2 for directional, W for point as pyrender defines)."""

    kind: str
    vector: np.ndarray
    color: np.ndarray
    intensity: float


def _light_pose(light: Light) -> np.ndarray:
    pose = np.eye(4)
    if light.kind == "point":
        pose[:3, 3] = light.vector
        return pose
    # a directional light shines along its -z axis
    z = np.asarray(light.vector, dtype=np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, np.cross(z, x), z
    return pose


def build_scene(meshes: list[tuple[object, np.ndarray]], lights: list[Light], ambient: float,
                background=(1.0, 1.0, 1.0)):
    """A pyrender Scene of (mesh, 4x4 pose) pairs and lights; ambient: linear grey level."""
    import pyrender

    scene = pyrender.Scene(bg_color=np.array([*map(float, background), 0.0]), ambient_light=np.full(3, float(ambient)))
    for mesh, pose in meshes:
        scene.add(mesh, pose=np.asarray(pose, dtype=np.float64))
    for light in lights:
        if light.kind == "directional":
            node = pyrender.DirectionalLight(color=light.color, intensity=light.intensity)
        elif light.kind == "point":
            node = pyrender.PointLight(color=light.color, intensity=light.intensity)
        else:
            raise ValueError(f"unknown light kind {light.kind!r}")
        scene.add(node, pose=_light_pose(light))
    return scene


def render_views(scene, cams: Cameras, znear: float = 0.05, zfar: float = 100.0) -> tuple[Tensor, Tensor]:
    """Render every camera of ``cams`` [V]. Returns RGBA [V, 4, H, W] in [0, 1] (RGB already over
    the scene's background colour; alpha = coverage) and z-depth [V, 1, H, W] (inf = background)."""
    import pyrender

    rgba, depth = [], []
    intr = cams.intrinsics.double().numpy()
    c2w_gl = opencv_to_opengl(cams.c2w.double()).numpy()
    with _GL_LOCK:
        renderer = _renderer(cams.height, cams.width)
        try:
            for i in range(cams.shape[0]):
                fx, fy, cx, cy = intr[i]
                node = scene.add(pyrender.IntrinsicsCamera(fx, fy, cx, cy, znear=znear, zfar=zfar), pose=c2w_gl[i])
                try:
                    color, z = renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
                finally:
                    scene.remove_node(node)
                rgba.append(color)
                depth.append(z)
        finally:
            _release(renderer)
    # stacked in numpy: torch's threaded copies stall while llvmpipe's threads hold the cores
    images = torch.from_numpy(np.stack(rgba).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    z = torch.from_numpy(np.stack(depth)[:, None].astype(np.float32))
    return images.contiguous(), torch.where(z > 0, z, torch.full_like(z, float("inf")))
