"""Target pixels drawn from the input photos: the decoded colour blended with depth-warped samples.

A renderer with ``view_blend = k`` decodes, per target pixel, a colour (the published RGB head), a
depth along the pixel's ray and k + 1 blending logits. The pixel's surface point is projected into
the k input views nearest the target camera and their photos are sampled there; the output is the
softmax-weighted mix of the decoded colour and the samples that land in front of their camera and
inside its image. Where the depth is right, texture comes from the photos at full resolution
instead of through a token of 16x16 pixels; where no photo sees the point (disocclusions, views
outside the inputs), the decoded colour carries the pixel. Depth is learnt from the rendering loss,
from :func:`warp_loss` where a recipe adds it, and from true depth maps (:func:`depth_loss`) where
the training data has them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras, pixel_rays
from nvs.geometry.cameras import full_precision
from nvs.models.photo_sampling import sample_photos

MIN_LOG_DEPTH, MAX_LOG_DEPTH = -6.0, 6.0
SAMPLE_LOGIT_INIT = -2.0  # a new head starts close to its decoded colour (weight 0.79 with k = 2)
INVALID_LOGIT = -1e4
MIN_VIEW_DEPTH = 1e-6  # points nearer a view's camera plane than this are not sampled from it


def inside_frame(grid: Tensor) -> Tensor:
    """grid [..., 2] in grid_sample's coordinates -> [...] bool: inside the image (edges included).
    Two comparisons instead of an ``all`` over the last dimension, a reduction 3x slower here."""
    return (grid[..., 0].abs() <= 1.0) & (grid[..., 1].abs() <= 1.0)


def nearest_views(input_cams: Cameras, target_cams: Cameras, k: int) -> Tensor:
    """The k input views nearest each target: input_cams [B, V], target_cams [B, T] -> index [B, T, k].

    Distance = centre distance / the inputs' spread (largest distance from their mean centre)
    + distance between unit viewing directions, so position and orientation both count, whatever
    the scene's scale. k is capped at V.
    """
    centres, target_centres = input_cams.centers, target_cams.centers
    spread = (centres - centres.mean(dim=1, keepdim=True)).norm(dim=-1).amax(dim=1).clamp_min(1e-6)
    position = torch.cdist(target_centres, centres) / spread[:, None, None]
    direction = torch.cdist(target_cams.c2w[..., :3, 2], input_cams.c2w[..., :3, 2])
    return (position + direction).topk(min(k, centres.shape[1]), dim=-1, largest=False).indices


def gather(values: Tensor, index: Tensor) -> Tensor:
    """values [B, V, ...], index [B, T, k] -> [B, T, k, ...]."""
    rows = torch.arange(index.shape[0], device=index.device)[:, None, None]
    return values[rows, index]


def gather_views(images: Tensor, cams: Cameras, index: Tensor) -> tuple[Tensor, Cameras]:
    """images [B, V, C, H, W], cams [B, V], index [B, T, k] -> (images [B, T, k, C, H, W], cams [B, T, k])."""
    return gather(images, index), Cameras(gather(cams.intrinsics, index), gather(cams.c2w, index), cams.height, cams.width)


def rays_in_views(cams: Cameras, target_cams: Cameras, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The target pixels' rays in the frames of the views they are matched or warped against.

    cams [B, T, k], target_cams [B, T] (exactly two batch dimensions) -> (centres [B, T, k, 3]:
    each target's camera centre in each view's frame, rays [B, T, k, 3, H, W]: its pixels' unit
    directions, ``pixel_rays(target_cams, dtype, exact_norm=False)``, in that frame), in ``dtype``
    with autocast off. The point at distance d along a ray is then
    centre + d ray in the view's frame: projecting it takes a multiply-add per coordinate instead of
    a matrix product per point, however many depths a caller tries.
    """
    height, width = target_cams.height, target_cams.width
    with full_precision(cams.device):
        _, dirs = pixel_rays(target_cams, dtype, exact_norm=False)  # [B, T, 3, H, W]
        w2c = cams.w2c.to(dtype)  # [B, T, k, 4, 4]
        rotation = w2c[..., :3, :3]
        centres = (rotation @ target_cams.centers.to(dtype)[:, :, None, :, None])[..., 0] + w2c[..., :3, 3]
        rays = (rotation @ dirs[:, :, None].flatten(-2)).unflatten(-1, (height, width))
    return centres, rays


def grid_coefficients(cams: Cameras, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """cams [...] -> (scale_x, scale_y, shift_x, shift_y), each [...]: a point at (x, y, z) in a
    view's frame lands at grid_sample's (x / z scale_x + shift_x, y / z scale_y + shift_y)
    (align_corners=False: pixel u -> 2 u / W - 1)."""
    size = torch.tensor([cams.width, cams.height] * 2, dtype=dtype, device=cams.device)
    return (2.0 * cams.intrinsics.to(dtype) / size - size.new_tensor([0, 0, 1, 1])).unbind(-1)


def warp_views(images: Tensor, cams: Cameras, target_cams: Cameras, depth: Tensor,
               rays: tuple[Tensor, Tensor] | None = None, interpolation: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Sample photos at the surface points of the target pixels.

    images [B, T, k, 3, Hs, Ws] with cams [B, T, k] (the views to sample for each target);
    target_cams [B, T] with depth [B, T, 1, H, W] along each pixel's unit ray; ``rays``:
    ``rays_in_views(cams, target_cams, depth.dtype)`` of these same cameras, where a caller warping
    at several depths has them (rays of other cameras would give wrong pixels without an error);
    ``interpolation``: "bilinear" or "cubic" (:func:`nvs.models.photo_sampling.sample_photos`).
    Returns (samples [B, T, k, 3, H, W], valid [B, T, k, 1, H, W] bool: the point lies in
    front of the view's camera and inside its image).
    """
    b, t, k = cams.shape
    height, width = target_cams.height, target_cams.width
    centres, directions = rays_in_views(cams, target_cams, depth.dtype) if rays is None else rays
    points = torch.addcmul(centres[..., None, None], directions, depth[:, :, None])  # [B, T, k, 3, H, W]
    z = points[:, :, :, 2]
    in_front = z > MIN_VIEW_DEPTH
    z = torch.where(in_front, z, torch.full_like(z, torch.inf))  # such points take the principal point
    scale_x, scale_y, shift_x, shift_y = (c[..., None, None] for c in grid_coefficients(cams, depth.dtype))
    grid = torch.stack([points[:, :, :, 0] / z * scale_x + shift_x, points[:, :, :, 1] / z * scale_y + shift_y], dim=-1)
    valid = in_front & inside_frame(grid)
    samples = sample_photos(images.reshape(b * t * k, 3, cams.height, cams.width).to(grid.dtype),
                            grid.reshape(b * t * k, height, width, 2), interpolation)
    return samples.reshape(b, t, k, 3, height, width), valid.reshape(b, t, k, 1, height, width)


def blend(decoded: Tensor, samples: Tensor, valid: Tensor, logits: Tensor) -> Tensor:
    """Softmax mix: decoded [B, T, 3, H, W], samples [B, T, k, 3, H, W], valid [B, T, k, 1, H, W],
    logits [B, T, k + 1, H, W] (the decoded colour first) -> [B, T, 3, H, W]."""
    sample_logits = logits[:, :, 1:, None].masked_fill(~valid, INVALID_LOGIT)
    weights = torch.cat([logits[:, :, :1, None], sample_logits], dim=2).softmax(dim=2)
    return weights[:, :, 0] * decoded + (weights[:, :, 1:] * samples).sum(dim=2)


class ViewBlendHead(nn.Module):
    """Target tokens [B, T * L, dim] -> per-pixel features [B, T * L, p * p * (k + 2)]: log-depth,
    then the logits of the decoded colour and of the k samples (unpatchified by the caller)."""

    def __init__(self, patch: int, dim: int, views: int, depth: float = 2.0):
        super().__init__()
        self.patch, self.views, self.initial_depth = patch, views, depth
        self.norm = nn.LayerNorm(dim, bias=False)
        self.proj = nn.Linear(dim, patch * patch * (views + 2))
        self.reset_parameters()

    @property
    def channels(self) -> int:
        return self.views + 2

    def reset_parameters(self) -> None:
        """Start close to the decoded colour: zero weights, every depth ``initial_depth``, sample
        logits at SAMPLE_LOGIT_INIT."""
        nn.init.zeros_(self.proj.weight)
        bias = torch.zeros(self.patch * self.patch, self.channels)
        bias[:, 0] = math.log(self.initial_depth)
        bias[:, 2:] = SAMPLE_LOGIT_INIT
        with torch.no_grad():
            self.proj.bias.copy_(bias.flatten())

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(self.norm(tokens))

    def _logit_rows(self) -> Tensor:
        """[p * p * channels] bool: the outputs that are blending logits (every channel but depth)."""
        depth_only = torch.zeros(self.channels, dtype=torch.bool, device=self.proj.bias.device)
        depth_only[0] = True
        return ~depth_only.repeat(self.patch * self.patch)  # outputs are [p * p, channels], flattened

    def drop_logit_grads(self) -> None:
        """Zero the gradients of the blending logits' outputs, keeping the depth's: a recipe holds
        the blend at its start this way while the depth learns (optim.view_blend_hold_steps; with
        :meth:`logit_weights` / :meth:`restore_logit_weights` around the step, which undo what
        weight decay does to them)."""
        rows = self._logit_rows()
        for param in (self.proj.weight, self.proj.bias):
            if param.grad is not None:
                param.grad[rows] = 0

    def logit_weights(self) -> tuple[Tensor, Tensor]:
        """Copies of the weight and bias rows that give the blending logits."""
        rows = self._logit_rows()
        return self.proj.weight[rows].detach().clone(), self.proj.bias[rows].detach().clone()

    @torch.no_grad()
    def restore_logit_weights(self, saved: tuple[Tensor, Tensor]) -> None:
        rows = self._logit_rows()
        self.proj.weight[rows] = saved[0]
        self.proj.bias[rows] = saved[1]


def decoded_depth(maps: Tensor) -> Tensor:
    """The depth along each target pixel's ray that a :class:`ViewBlendHead` decodes: maps
    [B, T, k + 2, H, W] (unpatchified) -> [B, T, 1, H, W]."""
    return maps[:, :, :1].clamp(MIN_LOG_DEPTH, MAX_LOG_DEPTH).exp()


def blend_views(decoded: Tensor, maps: Tensor, target_cams: Cameras, images: Tensor, cams: Cameras,
                with_samples: bool = False, interpolation: str = "bilinear"
                ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The output of a view-blending renderer.

    decoded [B, T, 3, H, W] (the RGB head), maps [B, T, k + 2, H, W] (:class:`ViewBlendHead`,
    unpatchified), target_cams [B, T], and the memorised inputs: images [B, V, 3, Hs, Ws], cams [B, V].
    ``with_samples``: also return (samples, valid) of :func:`warp_views` and the decoded depth
    [B, T, 1, H, W] along each pixel's ray (for :func:`warp_loss` and :func:`depth_loss`);
    ``interpolation``: how the photos are sampled (:func:`warp_views`).
    """
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    maps = maps.to(dtype)
    index = nearest_views(cams, target_cams, maps.shape[2] - 2)
    depth = decoded_depth(maps)
    samples, valid = warp_views(*gather_views(images, cams, index), target_cams, depth, interpolation=interpolation)
    out = blend(decoded.to(dtype), samples, valid, maps[:, :, 1 : index.shape[-1] + 2])
    return (out, (samples, valid, depth)) if with_samples else out


def warp_loss(samples: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error of every warped sample against the target: samples [B, T, k, 3, H, W],
    targets [B, T, 3, H, W].

    It trains the depth directly, whatever the blending weights: through the blend alone, a head
    that has learnt to weigh its samples at zero (as on wide baselines, before the depth is right)
    passes no gradient to the depth, and stays there. Every pixel counts, valid or not (an invalid
    sample holds the colour at its view's border): averaged over valid samples only, the loss is
    lowered by depths that throw hard pixels out of every view.
    """
    return (samples - targets[:, :, None].to(samples.dtype)).square().mean()


def depth_loss(depth: Tensor, target_z: Tensor, target_cams: Cameras) -> Tensor:
    """Mean absolute log-depth error over the pixels with a surface: depth [B, T, 1, H, W] along
    each pixel's unit ray (as decoded), target_z [B, T, 1, H, W] z-depth (0 = no surface) of
    target_cams [B, T]. Log depth weighs near and far surfaces by their relative error, which is
    what a warp's pixel error follows. 0 when no pixel has a surface."""
    with torch.autocast(device_type=depth.device.type, enabled=False):
        _, dirs = pixel_rays(target_cams, torch.float32, exact_norm=False)
        cos = (dirs * target_cams.c2w[..., :3, 2, None, None].float()).sum(dim=-3, keepdim=True)
        known = target_z > 0
        truth = target_z.float() / cos.clamp_min(1e-6)
        error = (depth.float().clamp_min(1e-6).log() - truth.clamp_min(1e-6).log()).abs()
        return torch.where(known, error, torch.zeros_like(error)).sum() / known.sum().clamp_min(1)
