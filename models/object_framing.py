"""Object framing: photos of an object that fills more of the frame than the object renderer's
training furniture did, zoomed out to that size before it memorises them.

The object renderer saw its furniture models inside the unit sphere, seen from 2.7 away through a
50 deg lens: their silhouettes never reached farther from the image centre than 0.85 of the
half-frame (tan(asin(1 / 2.7)) / tan(25 deg)); its procedural objects, 30% of its training,
sometimes did. An object framed tighter (a box fitted into [-1, 1]^3 instead of the unit sphere
reaches the edge) renders worse. Zooming every camera out about its image centre by ``scale`` =
trained extent / seen extent (focal lengths scaled, the photos resampled, their edge pixels
continued into the rim the zoom uncovers) shows the renderer the object at its trained size; the
renders are resampled back to the cameras asked for. What it costs: the object is read and drawn
``scale`` times as many pixels across.

With ``canvas``, each framed scene is also memorised on a wider canvas: its photos kept pixel for
pixel, centred, their edge pixels continued into a rim wide enough that the object reaches no
farther than the extent of the canvas (focal lengths kept, the field of view widened). That view of
the object keeps its pixels but shows it larger than trained, the zoomed one the reverse; the
renderer errs differently on each, and the two renders are averaged (for framed scenes, a second
memorise and render, on the canvas's larger views).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.models.plane_sweep import carving_views, silhouettes
from nvs.models.wrapping import RendererWrapper


def centred_grid(height: int, width: int, scale: Tensor) -> Tensor:
    """The normalised sampling grid (grid_sample, align_corners=False) [B, H, W, 2] that reads each
    pixel at ``scale`` [B] times its offset from the image centre."""
    ys = (torch.arange(height, dtype=scale.dtype, device=scale.device) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=scale.dtype, device=scale.device) + 0.5) / width * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] as (x, y)
    return grid[None] * scale[:, None, None, None]


def silhouette_extent(images: Tensor) -> Tensor:
    """images [B, V, 3, H, W] -> [B]: how far the object reaches from the image centre, as a share of
    the half-frame (the larger of its horizontal and vertical reach: 1 touches an edge), the median
    over the photos that show it on a plain bright backdrop (:func:`carving_views`); 0 for a scene
    with none of those."""
    foreground = silhouettes(images, grow=0)[:, :, 0]  # [B, V, H, W]
    # opened (eroded, then grown back) by one pixel: a stray pixel or a speck of dust reaches nowhere
    masks = F.max_pool2d(-F.max_pool2d(-foreground, 3, 1, 1), 3, 1, 1) > 0.5
    height, width = masks.shape[-2:]
    # to the outer side of each pixel: an object in the edge pixels reaches 1
    rows = (torch.arange(height, device=images.device) + 0.5 - height / 2).abs().add(0.5) / (height / 2)
    cols = (torch.arange(width, device=images.device) + 0.5 - width / 2).abs().add(0.5) / (width / 2)
    reach = torch.maximum(rows[:, None], cols[None, :])
    per_view = torch.where(masks, reach, torch.zeros_like(reach)).flatten(2).amax(dim=2)  # [B, V]
    carving = carving_views(masks[:, :, None].to(images.dtype))
    extents = [view[keep].median() if bool(keep.any()) else view.new_zeros(()) for view, keep in zip(per_view, carving)]
    return torch.stack(extents)


def framing_scale(images: Tensor, extent: float) -> Tensor:
    """images [B, V, 3, H, W] -> [B]: the zoom that brings each scene's object to ``extent`` of the
    half-frame (:func:`silhouette_extent`), 1.0 where it reaches no farther already."""
    seen = silhouette_extent(images).float()
    return torch.where(seen > extent, extent / seen.clamp_min(extent), torch.ones_like(seen))


def resample_about_centre(images: Tensor, scale: Tensor, mode: str) -> Tensor:
    """images [B, N, C, H, W] -> the same, each pixel read (``mode``: grid_sample's) at ``scale``
    [B] times its offset from the image centre; reads beyond the edge take the edge pixel."""
    b, n, c, h, w = images.shape
    grid = centred_grid(h, w, scale.to(images)).repeat_interleave(n, dim=0)
    out = F.grid_sample(images.flatten(0, 1), grid, mode=mode, padding_mode="border", align_corners=False)
    return out.unflatten(0, (b, n))


def zoom_images(images: Tensor, scale: Tensor) -> Tensor:
    """images [B, V, 3, H, W] as ``Cameras.zoom`` sees them (bilinear): each pixel reads the photo
    at 1 / scale [B] times its offset from the centre. The rim beyond the photo continues its edge
    pixels, so the rim of a photo on a plain backdrop is backdrop, and an object the photo's edge
    cuts is continued there, not ended: the silhouettes do not carve away what of it the photo
    did not see."""
    return resample_about_centre(images, 1.0 / scale, "bilinear")


def unzoom_images(renders: Tensor, scale: Tensor) -> Tensor:
    """renders [B, T, 3, H, W] of ``Cameras.zoom`` -> the same views through the cameras as
    given: each pixel reads the render at ``scale`` [B] times its offset from the centre (bicubic,
    its overshoot clipped to [0, 1])."""
    return resample_about_centre(renders, scale, "bicubic").clamp(0.0, 1.0)


def canvas_size(height: int, width: int, scale: float, multiple: int) -> tuple[int, int]:
    """The smallest canvas, each side a multiple of ``multiple`` pixels, on which a ``height`` x
    ``width`` photo spans at most ``scale`` of each side."""
    def side(pixels: int) -> int:
        return math.ceil(pixels / scale / multiple - 1e-6) * multiple
    return side(height), side(width)


def centred_window(height: int, width: int, inner_height: int, inner_width: int) -> tuple[int, int]:
    """(top, left) of an ``inner_height`` x ``inner_width`` window centred in a ``height`` x
    ``width`` canvas, where ``Cameras.center_pad`` and ``Cameras.center_crop`` put it."""
    return (height - inner_height) // 2, (width - inner_width) // 2


def pad_images(images: Tensor, height: int, width: int) -> Tensor:
    """images [B, N, C, h, w] centred on a ``height`` x ``width`` canvas as ``Cameras.center_pad``
    places them, the rim continuing their edge pixels (as :func:`zoom_images`'s does)."""
    b, n, c, h, w = images.shape
    top, left = centred_window(height, width, h, w)
    out = F.pad(images.flatten(0, 1), (left, width - w - left, top, height - h - top), mode="replicate")
    return out.unflatten(0, (b, n))


def crop_centre(images: Tensor, height: int, width: int) -> Tensor:
    """images [..., H, W] -> their centred ``height`` x ``width`` window (undoes :func:`pad_images`)."""
    top, left = centred_window(*images.shape[-2:], height, width)
    return images[..., top : top + height, left : left + width]


@dataclass
class Canvas:
    """One scene memorised on a wider canvas (:func:`canvas_size` of its photos at ``scale``): the
    wrapped renderer's state; its targets go on the canvas of their own size at that scale."""

    inner: object
    scale: float


@dataclass
class FramedState:
    """A memorised scene (``inner``, the wrapped renderer's) and the zoom [B] it was memorised at;
    with a canvas, each scene's :class:`Canvas` (None for a scene not framed)."""

    inner: object
    scale: Tensor
    canvases: list[Canvas | None] = field(default_factory=list)


class ObjectFraming(RendererWrapper):
    """``renderer`` (or a turn ensemble of it) run on cameras zoomed out so that each scene's object
    reaches no farther than ``extent`` of the half-frame (:func:`framing_scale`), its renders
    resampled back; with ``canvas``, averaged with its renders on a canvas that wide (module
    docstring). Same memorize / render / forward interface, inference only."""

    def __init__(self, renderer: nn.Module, extent: float, canvas: bool = False):
        super().__init__(renderer)
        if not 0.0 < extent < 1.0:
            raise ValueError(f"object framing needs an extent in (0, 1), got {extent!r}")
        self.extent = extent
        self.canvas = canvas

    def memorize(self, images: Tensor, cams: Cameras) -> FramedState:
        """images [B, V, 3, H, W], cams [B, V] -> the wrapped renderer's state of the zoomed views
        and, with a canvas, each framed scene's state on its canvas."""
        scale = framing_scale(images.detach(), self.extent).to(images.device)
        if bool((scale == 1).all()):
            return FramedState(self.renderer.memorize(images, cams), scale)
        state = FramedState(self.renderer.memorize(zoom_images(images, scale), cams.zoom(scale)), scale)
        if self.canvas:
            state.canvases = [None if float(s) == 1.0 else
                              self._memorize_on_canvas(images[b : b + 1], cams[b : b + 1], float(s))
                              for b, s in enumerate(scale)]
        return state

    def _canvas(self, cams: Cameras, scale: float) -> tuple[int, int]:
        return canvas_size(cams.height, cams.width, scale, self.config.patch_size)

    def _memorize_on_canvas(self, images: Tensor, cams: Cameras, scale: float) -> Canvas:
        """One scene, images [1, V, 3, H, W] and cams [1, V], memorised on its canvas at ``scale``."""
        height, width = self._canvas(cams, scale)
        return Canvas(self.renderer.memorize(pad_images(images, height, width), cams.center_pad(height, width)), scale)

    def render(self, state: FramedState, target_cams: Cameras) -> Tensor:
        """target_cams [B, T] -> images [B, T, 3, H, W]."""
        if not isinstance(state, FramedState):
            raise ValueError("state must come from this object framing's memorize()")
        if bool((state.scale == 1).all()):
            return self.renderer.render(state.inner, target_cams)
        renders = unzoom_images(self.renderer.render(state.inner, target_cams.zoom(state.scale)), state.scale)
        for b, canvas in enumerate(state.canvases):
            if canvas is not None:
                wide_cams = target_cams[b : b + 1].center_pad(*self._canvas(target_cams, canvas.scale))
                wide = self.renderer.render(canvas.inner, wide_cams)
                renders[b] = (renders[b] + crop_centre(wide[0], target_cams.height, target_cams.width)) / 2
        return renders
