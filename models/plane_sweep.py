"""Depth of the target pixels by plane sweep over the nearest input photos, and a learnt blend of
the photos sampled there with the decoded colour.

A renderer with ``sweep_views = k`` renders as before (the decoded colour), then finds each target
pixel's surface by matching the k input views nearest the target camera: at half resolution, each
pixel's ray is cut at ``sweep_planes`` distances uniform in inverse depth between ``sweep_near``
and ``sweep_far``, or, with ``sweep_range = "inputs"``, between the distances of the surface points
triangulated from the scene's own input views (:mod:`nvs.geometry.depth_range`); distances are
along the ray: the "planes" are spheres about the target camera. At
each, the k views' learnt features (and colours) are sampled where the point projects, and their
spread (the matching cost) is scored by a small network shared by all planes. With a ``zncc_weight``
(model config ``sweep_zncc``), each plane's score adds that multiple of the normalised
cross-correlation of the two nearest photos over a window (:func:`zncc_scores`): a classical
matching cost that ignores a gain and offset between the photos (exposure, white balance), as real
ones have and the renders the learnt features saw do not. With ``zncc_views`` n > 2
(``sweep_zncc_views``), it correlates every pair of the n nearest photos of a walk and keeps the
better half of the pairs at each point, so that a photo in which an occluder hides the point does
not count; around an object, the two nearest (:meth:`PlaneSweepBlend.scene_zncc_views`). With a
``coarse_weight`` (``sweep_coarse``), each plane's score also adds that multiple of the same
sweep's score on the photos at half resolution, upsampled, and, with ``coarse_levels``
(``sweep_coarse_levels``) n > 1, of those at a quarter, an eighth, ... down to 1/2^n (cross-scale cost aggregation, as in classical stereo):
where neighbouring views are far apart, as on a ring around an object, a surface's disparities
outrun what the fine scorer sees, and a coarse one, seeing 2, 4 or 8 times as far, still finds it.
With a ``max_step`` (``sweep_max_step``), a scene whose photos lie so far apart for their
resolution that neighbouring planes land more than that many pixels apart in the cost volume
(:func:`plane_steps`: a ring of large photos) is matched on its photos and targets halved until
they do not (:func:`sweep_octave`), the coarse levels below those; its photos are still sampled
at full resolution, at the depth found. The scorer then sees disparities of the size it was
trained on instead of steps that skip over a surface's texture.
With a ``hull_weight`` (``sweep_hull``), for objects on white, each plane's score loses that multiple of
(1 - the point's support by the silhouettes of all the input views, :func:`hull_support`), and a
pixel whose ray meets no supported point is background and turns white: the visual hull, which
shapes the smooth, textureless surfaces (white ceramic, painted boxes) where matching finds nothing.
Inside the hull such a surface still matches as well on the object's far side as on its near one;
with a ``front_weight`` (``sweep_front``), each plane behind the first supported one on its ray loses
that multiple of the share of the planes between them (:func:`behind_hull_entry`): the surface a
ray meets first wins unless the photos agree elsewhere.
The softmax over the planes gives the expected inverse depth (upsampled to full resolution) and a
confidence (its largest probability); with a ``refine_window`` (``sweep_refine``), each pixel's
upsampled depth is then replaced by the one of its low-resolution neighbours' where the photos
agree best (:mod:`nvs.models.depth_refine`). With a ``prior_weight`` (``sweep_head_prior``), after
a view-blending head, each plane's score also loses that multiple of its distance from the head's
own depth, shifted to the sweep's scale (:func:`prior_distance`): where the photos agree on many
planes, the renderer's depth breaks the tie. With ``depth_views`` (``sweep_depth_views``) m, the
plane scores come from the m nearest of the k views only (a farther view sees more of the surface
at a slant or hidden); all k are still sampled and blended. The k photos are then sampled at that depth
(:func:`nvs.models.view_blend.warp_views`), and a per-pixel network over the decoded colour, the k
samples, their validity and the confidence gives the k + 1 logits of the softmax blend
(:func:`nvs.models.view_blend.blend`).

Why not the token's own depth (``view_blend``): a 16x16-pixel token cannot say where inside its
patch a silhouette or a step in depth lies, and the photos' pixels agree only at the true surface;
matching them finds it at pixel level. The sweep trains from true depth maps (:func:`sweep_loss`)
and from the rendering loss through the blend; the renderer itself may stay frozen.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs.cameras import Cameras, pixel_rays
from nvs.geometry.capture import WHITE_LEVEL, capture_kind
from nvs.geometry.depth_range import depth_range, sparse_points
from nvs.geometry.matching import PairMatches, scene_matches
from nvs.geometry.vectors import vector_norm
from nvs.models.depth_refine import refine_depth
from nvs.models.view_blend import (MIN_VIEW_DEPTH, SAMPLE_LOGIT_INIT, blend, depth_loss, gather, gather_views,
                                   grid_coefficients, inside_frame, nearest_views, rays_in_views, warp_views)

FEATURES = 16  # learnt matching features per pixel (half resolution)
GROUPS = 4  # the features' variance is taken per group of FEATURES // GROUPS channels
SCORER_WIDTH = 24
BLENDER_WIDTH = 32
PLANE_CE_WEIGHT = 0.1  # cross-entropy on the true plane, beside the log-depth error (see sweep_loss)
COST_SCALE = 10.0  # variances of unit features and of colours are ~0.01-0.1; the scorer sees ~0.1-1
ZNCC_WINDOW = 11  # pixels of the cost volume (half the target's resolution)
ZNCC_TEXTURE = 0.05  # grey-level standard deviation at which a window's correlation counts half
MIN_COARSE_SIZE = 4  # pixels on the short side of the smallest target a coarse sweep scores
WHITE_TOLERANCE = 0.02  # a pixel is background when all its channels are within this of its photo's background
SILHOUETTE_DILATION = 1  # pixels the silhouettes grow by: antialiased edges and poses a little off
HULL_POINTS = 1 << 21  # plane points the silhouettes are sampled at, at once (hull_support)
BAND_PIXELS = 1 << 15  # cost-volume pixels scored at once; a larger target is scored in bands of rows
BAND_HALO = 8  # rows each band reads beyond its own: the scorer's reach (the ZNCC window's is 5)
PRIOR_TOLERANCE = 0.3  # log depth (35%) within which a plane is as good as the head's depth (sweep_head_prior)

MAX_OCTAVES = 3  # the most times the sweep halves a scene's photos (and targets) to keep its plane steps short
MIN_OCTAVE_SIZE = 32  # pixels on the short side of the smallest photo an octave halves to
STEP_PIXELS = 8  # every STEP_PIXELS-th pixel of each photo (both ways) measures its plane steps


class SweepFeatures(NamedTuple):
    """What the sweep matches on, read off a scene's photos once (:meth:`PlaneSweepBlend.photo_features`)."""

    fine: Tensor  # [B, V, F + 3, h, w]: the photos' features, read off the photos halved ``octave`` times
    coarse: list[Tensor] | None  # those of each coarse level below it (None without coarse levels)
    octave: int  # PlaneSweepBlend.octave of the photos under ``max_step``
    max_step: float  # the setting they were read under


def inverse_depth_planes(near: float, far: float, planes: int, device=None) -> Tensor:
    """[planes] inverse depths from 1/near down to 1/far, evenly spaced."""
    return torch.linspace(1.0 / near, 1.0 / far, planes, device=device)


def scene_planes(ranges: Tensor, planes: int) -> Tensor:
    """ranges [B, 2] (near, far) -> [B, planes] inverse depths from 1/near down to 1/far, evenly spaced."""
    steps = torch.linspace(0.0, 1.0, planes, device=ranges.device, dtype=ranges.dtype)
    inverse = 1.0 / ranges
    return inverse[:, :1] + (inverse[:, 1:] - inverse[:, :1]) * steps


def cpu_layout(x: Tensor) -> Tensor:
    """x [N, C, H, W] laid out for the sweep's convolutions and pooling: channels-last on a CPU,
    where oneDNN runs them 2-6x faster than on NCHW here; unchanged on other devices (not measured)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def sample_planes(features: Tensor, cams: Cameras, target_cams: Cameras, inverse_depths: Tensor,
                  present: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The views' features where each target pixel's ray meets each plane.

    features [B, T, k, C, h, w] (the views to match for each target), cams [B, T, k], target_cams
    [B, T] (at the volume's resolution), inverse_depths [D] or [B, D] (per scene; the "planes" are
    spheres: a hypothesis is a distance along each pixel's unit ray), present [B, T, k] bool (None:
    all): the views that take part.
    Returns (sampled [B, T, k, C, D, h', w'], seen [B, T, k, 1, D, h', w']: 1.0 where the point
    lies in front of a present view and inside its frame, else 0.0), h', w' the target size.

    The points are projected as :meth:`Cameras.project` would (a point closer than MIN_VIEW_DEPTH
    takes the optical axis's pixel), in closed form: in a view's frame the point at distance d on
    a ray is c + d r (c the target's centre, r the ray, both in that frame), so its image
    coordinates are (f (c_x s + r_x) / (c_z s + r_z) + p) with s = 1 / d: one multiply-add per
    plane and coordinate, instead of a matrix product over every point.
    """
    b, t, k, channels = features.shape[:4]
    planes = inverse_depths.shape[-1]
    height, width = target_cams.height, target_cams.width
    centre, rays = rays_in_views(cams, target_cams)  # [B, T, k, 3], [B, T, k, 3, h', w']
    inverse = inverse_depths.float().reshape(-1, 1, 1, planes, 1, 1)  # [B or 1, 1, 1, D, 1, 1]

    def along(axis: int) -> Tensor:  # coordinate ``axis`` of each point over its distance: [B, T, k, D, h', w']
        return torch.addcmul(rays[:, :, :, axis, None], centre[..., axis, None, None, None], inverse)

    z = along(2)  # the point's depth in the view / d
    in_front = z > MIN_VIEW_DEPTH * inverse
    z = torch.where(in_front, z, torch.full_like(z, torch.inf))
    scale_x, scale_y, shift_x, shift_y = grid_coefficients(cams)
    grid = torch.stack([along(0).div_(z).mul_(scale_x[..., None, None, None]).add_(shift_x[..., None, None, None]),
                        along(1).div_(z).mul_(scale_y[..., None, None, None]).add_(shift_y[..., None, None, None])],
                       dim=-1)  # [B, T, k, D, h', w', 2]
    seen = in_front & inside_frame(grid)
    if present is not None:
        seen = seen & present[..., None, None, None]
    sampled = F.grid_sample(features.flatten(0, 2), grid.reshape(b * t * k, planes * height, width, 2).to(features.dtype),
                            mode="bilinear", padding_mode="border", align_corners=False)
    return (sampled.reshape(b, t, k, channels, planes, height, width),
            seen.to(features.dtype).reshape(b, t, k, 1, planes, height, width))


def variance_costs(sampled: Tensor, seen: Tensor) -> Tensor:
    """sampled [B, T, k, F + 3, D, h, w] (unit-norm features, then colour) and seen [B, T, k, 1, D,
    h, w] of :func:`sample_planes` -> [B, T, D, GROUPS + 2, h, w]: per plane, the features' variance
    across the views that see the point (one per group), the colours' variance (both times
    COST_SCALE), and whether at least two views see it (1.0 / 0.0)."""
    channels = sampled.shape[3]
    count = seen.sum(dim=2)  # [B, T, 1, D, h, w]
    weight = 1.0 / count.clamp_min(1)
    # Summed view by view in place: the whole [B, T, k, C, D, h, w] volume is tens of MB, and each
    # step over it would copy it (5x slower on a CPU). The in-place ops leave autograd's saved
    # tensors intact, and unbind's backward stacks the views' gradients once (indexing each view
    # would make a zero-filled gradient of the whole volume per use).
    views, masks = sampled.unbind(dim=2), seen.unbind(dim=2)
    mean = views[0] * masks[0]
    for view, mask in zip(views[1:], masks[1:]):
        mean = mean.addcmul_(view, mask)
    mean = mean.mul_(weight)
    variance = torch.zeros_like(mean)  # [B, T, C, D, h, w]
    for view, mask in zip(views, masks):
        deviation = view - mean
        variance = variance.addcmul_(deviation, deviation * mask)
    variance = variance.mul_(weight)
    feature_cost = variance[:, :, : channels - 3].unflatten(2, (GROUPS, -1)).mean(dim=3)
    colour_cost = variance[:, :, channels - 3 :].mean(dim=2, keepdim=True)
    costs = torch.cat([COST_SCALE * feature_cost, COST_SCALE * colour_cost, (count >= 2).to(sampled.dtype)], dim=2)
    return costs.transpose(2, 3)


def matching_costs(features: Tensor, cams: Cameras, target_cams: Cameras, inverse_depths: Tensor,
                   present: Tensor | None = None) -> Tensor:
    """The plane-sweep cost volume of each target pixel: :func:`variance_costs` of
    :func:`sample_planes` (features [B, T, k, F + 3, h, w] -> [B, T, D, GROUPS + 2, h', w'])."""
    return variance_costs(*sample_planes(features, cams, target_cams, inverse_depths, present))


def zncc_scores(colours: Tensor, seen: Tensor, views: int | Tensor = 2, *, window: int = ZNCC_WINDOW,
                texture: float = ZNCC_TEXTURE) -> Tensor:
    """How well the ``views`` nearest views agree on each plane, blind to their exposure.

    colours [B, T, k, 3, D, h, w] (the photos sampled on each plane), seen [B, T, k, 1, D, h, w]
    (:func:`sample_planes`), views: how many of the k take part (2 <= views <= k), one for all
    scenes or [B] per scene (on the CPU) -> [B, T, D, h, w] in [-1, 1]. For a pair of views: over
    the window x window pixels about each pixel of each plane, the covariance of the two views'
    grey levels over s_a s_b + texture^2, with s their standard deviations there: the zero-mean
    normalised cross-correlation where both windows are well textured, near 0 where either is flat
    (a blank wall or a dark cloth correlates by chance). With two views, their pair's score, 0
    where either does not see the point. With more, the mean of the better half (rounded up) of
    the pairs whose views both see the point (0 where none do): a view that sees something else
    there (an occluder, the far side of a column) spoils only its own pairs, which are left out.
    """
    most = int(views.max()) if isinstance(views, Tensor) else views
    grey = colours[:, :, :most].mean(dim=3)  # [B, T, n, D, h, w]
    height, width = grey.shape[-2:]
    pairs = list(itertools.combinations(range(most), 2))
    # Every window mean the scores read, in one pooling pass: each view's grey level, its square and
    # each pair's product (views, pairs and planes as channels, vectorised across them).
    pair_products = torch.stack([grey[:, :, i] * grey[:, :, j] for i, j in pairs], dim=2)
    boxed = cpu_layout(torch.cat([grey, grey.square(), pair_products], dim=2).reshape(1, -1, height, width))
    del pair_products  # only their window means are read
    boxed = F.avg_pool2d(boxed, (window, 1), 1, (window // 2, 0), count_include_pad=False)
    boxed = F.avg_pool2d(boxed, (1, window), 1, (0, window // 2), count_include_pad=False)
    boxed = boxed.reshape(*grey.shape[:2], 2 * most + len(pairs), *grey.shape[3:])
    means, squares, products = boxed.split([most, most, len(pairs)], dim=2)
    variances = (squares - means.square()).clamp_min(0)
    own = views.to(grey.device) if isinstance(views, Tensor) else None
    scores, both = [], []  # per pair [B, T, D, h, w]
    for p, (i, j) in enumerate(pairs):
        covariance = products[:, :, p] - means[:, :, i] * means[:, :, j]
        spread = (variances[:, :, i] * variances[:, :, j]).sqrt()
        scores.append((covariance / (spread + texture**2).clamp_min(1e-12)).clamp(-1.0, 1.0))
        seen_by_both = seen[:, :, i, 0] * seen[:, :, j, 0]
        if own is not None:  # a scene's pairs among its own nearest views only
            seen_by_both = seen_by_both * (j < own).to(seen_by_both.dtype)[:, None, None, None, None]
        both.append(seen_by_both)
    if len(pairs) == 1:  # one pair: its score, without ranking
        return scores[0] * both[0]
    ranked = [torch.where(m > 0, s, torch.full_like(s, -2.0)) for s, m in zip(scores, both)]
    half = (len(pairs) + 1) // 2
    # Bubble the best of ranked[rank:] to ranked[rank], for the better half, best first: about 3/8 P^2
    # elementwise steps for P pairs (12 for the 6 pairs of 4 views), cheaper here than a topk over them.
    for rank in range(half):
        for p in range(len(pairs) - 1, rank, -1):
            ranked[p - 1], ranked[p] = torch.maximum(ranked[p - 1], ranked[p]), torch.minimum(ranked[p - 1], ranked[p])
    kept = (torch.stack(both).sum(dim=0) + 1).div(2, rounding_mode="floor")  # [B, T, D, h, w]
    total = torch.stack([ranked[rank] * (kept > rank) for rank in range(half)]).sum(dim=0)
    return total / kept.clamp_min(1)


def border_pixels(images: Tensor) -> Tensor:
    """images [..., C, H, W] -> [..., C, 2 (H + W) - 4]: the pixels along the edges of each image."""
    return torch.cat([images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]], dim=-1)


def background_colours(images: Tensor) -> Tensor:
    """images [B, V, 3, H, W] -> [B, V, 3]: each photo's background, the per-channel median of its
    border where every channel of that is at least WHITE_LEVEL (white seen at the photo's own
    exposure and white balance), else white (a photo with a dark or busy background)."""
    median = border_pixels(images).median(dim=-1).values
    bright = median.amin(dim=-1, keepdim=True) >= WHITE_LEVEL
    return torch.where(bright, median, torch.ones_like(median))


def silhouettes(images: Tensor, background: Tensor | None = None, grow: int = SILHOUETTE_DILATION) -> Tensor:
    """images [B, V, 3, H, W] -> [B, V, 1, H, W]: 1.0 where a pixel is not background (all channels
    within WHITE_TOLERANCE of its photo's ``background`` [B, V, 3], by default its
    :func:`background_colours`), grown by ``grow`` pixels; else 0.0. Photos of one object
    on white metered one by one show the white at different levels; against pure white, those below
    it would carve nothing."""
    background = (background_colours(images) if background is None else background)[..., None, None]
    foreground = ((images - background).abs().amax(dim=2, keepdim=True) > WHITE_TOLERANCE).to(images.dtype)
    if not grow:
        return foreground
    grown = F.max_pool2d(foreground.flatten(0, 1), 2 * grow + 1, 1, grow)
    return grown.unflatten(0, images.shape[:2])


def backdrop_gains(images: Tensor) -> Tensor:
    """images [B, V, 3, H, W] -> [B, V, 3]: the :func:`background_colours` of the photos of an
    object on a bright, plain backdrop (those that carve: :func:`carving_views`), 1.0 for the
    others. Dividing a photo by its gains puts its object on white, as the object renderer saw
    its training objects, whatever the backdrop's grey, the photo's exposure or white balance."""
    colours = background_colours(images)
    carving = carving_views(silhouettes(images, colours))
    return torch.where(carving[..., None], colours, torch.ones_like(colours))


def carving_views(masks: Tensor) -> Tensor:
    """masks [B, V, 1, H, W] (:func:`silhouettes`) -> [B, V] bool: the views of an object on
    white, at least half of whose border is background; a photo with a background carves
    nothing, however many white highlights it has."""
    return (1.0 - border_pixels(masks)).mean(dim=(-2, -1)) >= 0.5


def hull_support(masks: Tensor, cams: Cameras, target_cams: Cameras, inverse_depths: Tensor) -> Tensor:
    """How far the silhouettes masks [B, V, 1, H, W] (:func:`silhouettes`) of cams [B, V] support
    the point where each pixel's ray of target_cams [B, T] meets each plane of inverse_depths [D]
    or [B, D]: the least mask value, over the views that see the point (in front, inside the
    frame), sampled where it projects; exactly 1.0 where no view that carves (:func:`carving_views`)
    sees it -> [B, T, D, h, w]. Views are sampled HULL_POINTS points at a time, in bounded memory."""
    b, t = target_cams.shape
    planes, height, width = inverse_depths.shape[-1], target_cams.height, target_cams.width
    support = torch.ones(b, t, planes, height, width, dtype=masks.dtype, device=masks.device)
    carving = carving_views(masks)
    step = max(1, HULL_POINTS // (b * t * planes * height * width))
    for start in range(0, masks.shape[1], step):
        views = torch.arange(start, min(start + step, masks.shape[1]), device=masks.device)
        if not carving[:, views].any():
            continue
        mask, cam = gather_views(masks, cams, views.expand(b, t, -1))
        sampled, seen = sample_planes(mask, cam, target_cams, inverse_depths)  # [B, T, k, 1, D, h, w]
        counts = (seen > 0) & carving[:, views, None, None, None, None].unsqueeze(1)
        view_support = torch.where(counts, sampled, torch.ones_like(sampled)).amin(dim=2)[:, :, 0]
        support = torch.minimum(support, view_support)
    return support


def behind_hull_entry(support: Tensor) -> Tensor:
    """support [B, T, D, h, w] (:func:`hull_support`, planes from near to far) -> [B, T, D, h, w]:
    how far each plane lies behind the first plane of its ray whose point the hull supports (more
    than half), in planes over D; 0.0 there, in front of it, and on rays that miss the hull."""
    inside = (support > 0.5).to(support.dtype)
    entered = torch.cummax(inside, dim=2).values
    return (torch.cumsum(entered, dim=2) - 1.0).clamp_min(0.0) / support.shape[2]


def plane_steps(cams: Cameras, inverse_depths: Tensor) -> Tensor:
    """How far apart, in pixels, a scene's photos see the sweep's planes: cams [B, V], inverse_depths
    [D] or [B, D] -> [B]. For every STEP_PIXELS-th pixel of each view, the points where its ray meets
    the nearest and the farthest plane are projected into the nearest other view
    (:func:`nvs.models.view_blend.nearest_views`); a scene's step is the median distance between the
    two, over D - 1 (the planes are uniform in inverse depth, so their images are about evenly
    spaced). Points behind the other camera do not count; a scene with none left, or with one view,
    steps 0."""
    b, v = cams.shape
    steps = torch.zeros(b)
    if v < 2:
        return steps
    index = nearest_views(cams, cams, 2)[..., 1:]  # [B, V, 1]: the first is each view itself
    others = Cameras(gather(cams.intrinsics, index), gather(cams.c2w, index), cams.height, cams.width)
    grid = cams.resize(max(1, cams.height // STEP_PIXELS), max(1, cams.width // STEP_PIXELS))
    rays = pixel_rays(grid, exact_norm=False)
    origins, dirs = (x.flatten(-2).transpose(-1, -2)[:, :, None] for x in rays)  # [B, V, 1, N, 3]
    inverse = inverse_depths.float().reshape(-1, inverse_depths.shape[-1]).expand(b, -1)
    ends = []
    for distance in (1.0 / inverse.amax(dim=-1), 1.0 / inverse.amin(dim=-1)):
        ends.append(others.project(origins + distance.reshape(b, 1, 1, 1, 1) * dirs, min_depth=MIN_VIEW_DEPTH))
    (near, near_z), (far, far_z) = ends
    seen = (near_z > MIN_VIEW_DEPTH) & (far_z > MIN_VIEW_DEPTH)
    span = (near - far).norm(dim=-1)
    for scene in range(b):
        if bool(seen[scene].any()):
            steps[scene] = span[scene][seen[scene]].median().cpu() / max(1, inverse.shape[-1] - 1)
    return steps


def sweep_octave(steps: Tensor, max_step: float, size: tuple[int, int]) -> int:
    """How many times to halve a batch's photos and targets before the sweep (0 with ``max_step``
    0): the fewest after which, on every scene (steps [B], :func:`plane_steps`, in pixels of photos
    of ``size`` (h, w)), neighbouring planes lie at most ``max_step`` pixels apart in the cost
    volume, which is at half the halved resolution; at most MAX_OCTAVES, and never to photos
    smaller than MIN_OCTAVE_SIZE on their short side."""
    octave, step, side = 0, float(steps.max()) / 2.0 if steps.numel() else 0.0, min(size)
    while max_step and step > max_step and octave < MAX_OCTAVES and side // 2 >= MIN_OCTAVE_SIZE:
        octave, step, side = octave + 1, step / 2.0, side // 2
    return octave


def halved_cams(cams: Cameras, times: int) -> Cameras:
    """cams for their images halved ``times`` times (sides rounded down, at least 1 pixel)."""
    if not times:
        return cams
    return cams.resize(max(1, cams.height >> times), max(1, cams.width >> times))


def halve(images: Tensor, times: int) -> Tensor:
    """images [..., C, H, W] 2x2-averaged ``times`` times -> [..., C, H / 2^times, W / 2^times]."""
    for _ in range(times):
        images = F.avg_pool2d(images.flatten(0, -4), 2).unflatten(0, images.shape[:-3])
    return images


def prior_distance(prior_depth: Tensor, logits: Tensor, inverse_depths: Tensor) -> Tensor:
    """How far each plane lies from a prior depth: prior_depth [B, T, 1, H, W] along each target
    pixel's ray, the sweep's plane logits [B, T, D, h, w] over inverse_depths [D] or [B, D] -> the
    distance in log depth beyond PRIOR_TOLERANCE [B, T, D, h, w], with the prior's log averaged over
    each cost-volume cell.

    The prior is first shifted, per target, by the median of its difference from the sweep's own
    expected log depth over the more confident half of the target's pixels: a renderer's decoded
    depth follows the shape of a scene better than its scale (which the normalisation of the
    capture sets, and which a far extrapolation of the inputs leaves it unsure of), while the
    photos pin the scale down wherever they match."""
    b, t = prior_depth.shape[:2]
    dtype = torch.promote_types(logits.dtype, torch.float32)  # a bfloat16 head's depth is read in float32
    log_prior = F.interpolate(prior_depth.to(dtype).flatten(0, 1).clamp_min(1e-6).log(), size=logits.shape[-2:],
                              mode="area").unflatten(0, (b, t))
    log_planes = -inverse_depths.to(dtype).log()
    log_planes = log_planes.reshape(-1, 1, log_planes.shape[-1], 1, 1)  # [1 or B, 1, D, 1, 1]
    probs = logits.to(dtype).softmax(dim=2)
    found = (probs * log_planes).sum(dim=2, keepdim=True)
    sure = probs.amax(dim=2, keepdim=True)
    confident = sure >= sure.flatten(2).median(dim=2).values.view(b, t, 1, 1, 1)
    shift = (found - log_prior).masked_fill(~confident, float("nan")).flatten(2).nanmedian(dim=2).values
    distance = (log_planes - log_prior - shift.view(b, t, 1, 1, 1)).abs()
    return (distance - PRIOR_TOLERANCE).clamp_min(0.0).to(logits.dtype)


def expected_inverse_depth(plane_logits: Tensor, inverse_depths: Tensor) -> Tensor:
    """plane_logits [B, T, D, h, w] over the planes inverse_depths [D] or [B, D] -> the expected
    inverse depth under their softmax [B, T, 1, h, w]."""
    planes = inverse_depths.to(plane_logits.dtype).reshape(-1, 1, plane_logits.shape[2], 1, 1)
    return (plane_logits.softmax(dim=2) * planes).sum(dim=2, keepdim=True)


def plane_targets(target_z: Tensor, target_cams: Cameras, inverse_depths: Tensor, size: tuple[int, int]
                  ) -> tuple[Tensor, Tensor]:
    """The true plane of each pixel of a (smaller) cost volume: target_z [B, T, 1, H, W] z-depth
    (0 = no surface) of target_cams [B, T], planes inverse_depths [D] or [B, D] -> (index
    [B, T, h, w] of the plane nearest the mean inverse ray depth of each h x w cell, known
    [B, T, h, w]: every pixel of the cell has a surface)."""
    _, dirs = pixel_rays(target_cams, exact_norm=False)
    cos = (dirs * target_cams.c2w[..., :3, 2, None, None].float()).sum(dim=-3, keepdim=True)
    known = target_z > 0
    inverse = torch.where(known, cos / target_z.float().clamp_min(1e-6), torch.zeros_like(cos))
    inverse = F.adaptive_avg_pool2d(inverse.flatten(0, 1), size)
    known = F.adaptive_avg_pool2d(known.float().flatten(0, 1), size) > 0.999
    b, t = target_z.shape[:2]
    planes = inverse_depths.reshape(-1, 1, inverse_depths.shape[-1], 1, 1).expand(b, t, -1, 1, 1).flatten(0, 1)
    index = (inverse - planes).abs().argmin(dim=1)
    return index.reshape(b, t, *size), known.reshape(b, t, *size)


def sweep_loss(depth: Tensor, plane_logits: Tensor, inverse_depths: Tensor, target_z: Tensor,
               target_cams: Cameras) -> Tensor:
    """What trains the sweep from true depth: the mean absolute log-depth error of depth
    [B, T, 1, H, W] (:func:`nvs.models.view_blend.depth_loss`) + PLANE_CE_WEIGHT x the
    cross-entropy of plane_logits [B, T, D, h, w] against the true plane of inverse_depths [D] or
    [B, D], over cells with a surface.

    The cross-entropy keeps the softmax peaked on one plane: the log error alone is as low for a
    spread between two wrong planes whose mean is right, and a sweep trained on it alone falls
    back to a fixed depth prior.
    """
    index, known = plane_targets(target_z, target_cams, inverse_depths, tuple(plane_logits.shape[-2:]))
    ce = F.cross_entropy(plane_logits.flatten(0, 1).float(), index.flatten(0, 1), reduction="none")
    ce = (ce * known.flatten(0, 1)).sum() / known.sum().clamp_min(1)
    return depth_loss(depth, target_z, target_cams) + PLANE_CE_WEIGHT * ce


def degrade(decoded: Tensor, probability: float) -> Tensor:
    """decoded [N, 3, H, W] -> the same, each image with the given probability blurred (Gaussian,
    sigma 0.5-2.5 px) and colour-shifted (gain 0.85-1.15 and offset -0.08-0.08 per channel), at
    random (torch's generator).

    What a renderer's colour looks like on photos unlike its training data. Trained on it, the
    blend learns to weigh the decoded colour against the photos where they agree instead of
    leaning on it everywhere because it is right on the training data."""
    n = decoded.shape[0]
    chosen = torch.rand(n, device=decoded.device) < probability
    if not chosen.any():
        return decoded
    sigma = (0.5 + 2.0 * torch.rand(n, 1, device=decoded.device)).expand(n, 2).to(decoded.dtype)
    blurred = kornia.filters.gaussian_blur2d(decoded, (11, 11), sigma, border_type="replicate")
    gain = 0.85 + 0.3 * torch.rand(n, 3, 1, 1, device=decoded.device, dtype=decoded.dtype)
    offset = 0.16 * torch.rand(n, 3, 1, 1, device=decoded.device, dtype=decoded.dtype) - 0.08
    shifted = (blurred * gain + offset).clamp(0.0, 1.0)
    return torch.where(chosen.view(n, 1, 1, 1), shifted, decoded)


class PlaneSweepBlend(nn.Module):
    """decoded [B, T, 3, H, W] + the memorised inputs -> the blended images [B, T, 3, H, W].

    ``degrade_probability`` (set by training, not saved): in training mode, the probability that a
    target's decoded colour is replaced by :func:`degrade`'s before the blend."""

    def __init__(self, views: int, planes: int, near: float, far: float):
        super().__init__()
        self.views, self.planes, self.near, self.far = views, planes, near, far
        # settings, not weights: the renderer sets them from its config (RendererBase.use_reading_settings)
        self.zncc_weight, self.coarse_weight, self.coarse_levels, self.hull_weight = 0.0, 0.0, 1, 0.0
        self.front_weight, self.max_step, self.refine_window, self.depth_views = 0.0, 0.0, 0, 0
        self.prior_weight, self.zncc_views, self.interpolation = 0.0, 2, "bilinear"
        self.degrade_probability = 0.0
        self.features = nn.Sequential(  # 2x2 means halve the resolution, centred where the colour's are
            nn.Conv2d(3, FEATURES, 3, padding=1), nn.GELU(), nn.AvgPool2d(2),
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.GELU(),
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.GELU(),
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1),
        )
        self.scorer = nn.Sequential(  # one plane at a time; dilations widen its view to 17x17 pixels
            nn.Conv2d(GROUPS + 2, SCORER_WIDTH, 3, padding=1), nn.GELU(),
            nn.Conv2d(SCORER_WIDTH, SCORER_WIDTH, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv2d(SCORER_WIDTH, SCORER_WIDTH, 3, padding=4, dilation=4), nn.GELU(),
            nn.Conv2d(SCORER_WIDTH, 1, 3, padding=1),
        )
        self.blender = nn.Sequential(  # decoded, k samples, k validities, confidence -> k + 1 logits
            nn.Conv2d(3 + 4 * views + 1, BLENDER_WIDTH, 3, padding=1, padding_mode="replicate"), nn.GELU(),
            nn.Conv2d(BLENDER_WIDTH, BLENDER_WIDTH, 3, padding=1, padding_mode="replicate"), nn.GELU(),
            nn.Conv2d(BLENDER_WIDTH, views + 1, 3, padding=1, padding_mode="replicate"),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The blend starts as a fixed mix leaning on the decoded colour (sample logits at
        SAMPLE_LOGIT_INIT), whatever the sweep finds."""
        last = self.blender[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.fill_(SAMPLE_LOGIT_INIT)
            last.bias[0] = 0.0

    def inverse_depths(self, device=None, ranges: Tensor | None = None) -> Tensor:
        """The planes: [D] from ``near`` to ``far``, or [B, D] per scene for ranges [B, 2] (near, far)."""
        if ranges is None:
            return inverse_depth_planes(self.near, self.far, self.planes, device)
        return scene_planes(ranges.to(device=device, dtype=torch.float32), self.planes)

    @torch.no_grad()
    def ranges_from_inputs(self, images: Tensor, cams: Cameras, matches: list[list[PairMatches]] | None = None
                           ) -> Tensor:
        """[B, 2] (near, far) of each scene of images [B, V, 3, H, W] taken by cams [B, V]: the
        distances of the surface points triangulated from them (:mod:`nvs.geometry.depth_range`;
        ``matches``: each scene's, if already found), or the fixed ``near``, ``far`` where too few
        points are found."""
        device = images.device
        if matches is None:
            matches = scene_matches(images, cams)
        images, cams = images.cpu(), cams.to("cpu")  # the matching runs in OpenCV on the CPU
        ranges = [depth_range(sparse_points(images[b], cams[b], matches[b]), cams[b]) or (self.near, self.far)
                  for b in range(images.shape[0])]
        return torch.tensor(ranges, dtype=torch.float32, device=device)

    def depth(self, target_cams: Cameras, features: Tensor, cams: Cameras, inverse_depths: Tensor,
              present: Tensor | None = None, coarse_features: list[Tensor] | None = None,
              scorer_dtype: torch.dtype | None = None, support: Tensor | None = None, octave: int = 0,
              prior_depth: Tensor | None = None, zncc_views: int | Tensor = 2) -> tuple[Tensor, Tensor, Tensor]:
        """Sweep: target_cams [B, T], features [B, T, k, F + 3, h, w] of cams [B, T, k] (``present``
        [B, T, k]: which of them take part) over the planes inverse_depths [D] or [B, D] -> (depth
        along each unit ray [B, T, 1, H, W], confidence [B, T, 1, H, W], plane logits
        [B, T, D, H/2^(o+1), W/2^(o+1)]), o the ``octave`` the features were read at
        (:meth:`photo_features`): the target is halved as often. ``coarse_features`` (the same views'
        :meth:`coarse_source_features`, level l [B, T, k, F + 3, h/2^l, w/2^l]) add their plane
        scores at ``coarse_weight``; ``scorer_dtype`` (:meth:`plane_logits`); ``support`` (the plane
        logits' shape, :func:`hull_support`) takes ``hull_weight`` x (1 - support) and
        ``front_weight`` x :func:`behind_hull_entry` off the scores; ``prior_depth`` [B, T, 1, H, W]
        (a view-blending head's depth along each ray) takes ``prior_weight`` x
        :func:`prior_distance` off them; ``zncc_views`` (an int or [B]): the views whose pairs
        :func:`zncc_scores` correlates."""
        b, t = target_cams.shape
        height, width = target_cams.height, target_cams.width
        swept = halved_cams(target_cams, octave)
        inverse_depths = inverse_depths.to(features.dtype)
        logits = self.plane_logits(swept, features, cams, inverse_depths, present, scorer_dtype, zncc_views)
        for level, level_features in enumerate(coarse_features or [], start=1):
            size = (swept.height >> level, swept.width >> level)
            if min(size) < MIN_COARSE_SIZE:
                break
            coarse = self.plane_logits(swept.resize(*size), level_features, cams, inverse_depths, present,
                                       scorer_dtype, zncc_views)
            upsampled = F.interpolate(coarse.flatten(0, 1), size=logits.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits + self.coarse_weight * upsampled.unflatten(0, (b, t))
        if support is not None:
            logits = logits - self.hull_weight * (1.0 - support)
            if self.front_weight:
                logits = logits - self.front_weight * behind_hull_entry(support)
        if prior_depth is not None and self.prior_weight:
            logits = logits - self.prior_weight * prior_distance(prior_depth, logits, inverse_depths)
        inverse = expected_inverse_depth(logits, inverse_depths)
        confidence = logits.softmax(dim=2).amax(dim=2, keepdim=True)
        up = torch.cat([inverse, confidence], dim=2).flatten(0, 1)
        up = F.interpolate(up, size=(height, width), mode="bilinear", align_corners=False).reshape(b, t, 2, height, width)
        return 1.0 / up[:, :, :1], up[:, :, 1:], logits

    def plane_logits(self, target_cams: Cameras, features: Tensor, cams: Cameras, inverse_depths: Tensor,
                     present: Tensor | None = None, scorer_dtype: torch.dtype | None = None,
                     zncc_views: int | Tensor = 2) -> Tensor:
        """How well the views agree on each plane at half the target's resolution: target_cams
        [B, T] of H x W, features [B, T, k, F + 3, h, w] of cams [B, T, k] -> [B, T, D, H/2, W/2].
        ``scorer_dtype`` (None: the features'): the autocast dtype of the scorer's convolutions,
        the sweep's largest cost; the points, samples and their spread stay in the features' dtype;
        ``zncc_views`` (:meth:`depth`).

        A volume of more than BAND_PIXELS pixels is scored in bands of rows, each with BAND_HALO
        rows of context either side, which every score of the band's own rows reads within: the
        same scores, in bounded memory (the volume of a 576x1024 target is 1.4 GB) and in time
        that grows with the pixels instead of faster once the volume outgrows the caches."""
        half = halved_cams(target_cams, 1)
        rows = max(1, BAND_PIXELS // half.width)
        if rows >= half.height:
            return self._volume_logits(half, features, cams, inverse_depths, present, scorer_dtype, zncc_views)
        bands = []
        for top in range(0, half.height, rows):
            bottom = min(top + rows, half.height)
            start, stop = max(0, top - BAND_HALO), min(half.height, bottom + BAND_HALO)
            logits = self._volume_logits(half.crop(start, 0, stop - start, half.width), features, cams, inverse_depths,
                                         present, scorer_dtype, zncc_views)
            bands.append(logits[..., top - start : bottom - start, :])
        return torch.cat(bands, dim=-2)

    def _volume_logits(self, volume_cams: Cameras, features: Tensor, cams: Cameras, inverse_depths: Tensor,
                       present: Tensor | None, scorer_dtype: torch.dtype | None, zncc_views: int | Tensor) -> Tensor:
        """The scores of the cost volume seen by volume_cams [B, T] -> [B, T, D, h, w]."""
        b, t = volume_cams.shape
        sampled, seen = sample_planes(features, cams, volume_cams, inverse_depths, present)
        costs = variance_costs(sampled, seen)  # [B, T, D, G + 2, h, w]
        with torch.autocast(costs.device.type, dtype=scorer_dtype, enabled=scorer_dtype is not None):
            logits = self.scorer(cpu_layout(costs.flatten(0, 2)))
        logits = logits.to(costs.dtype).reshape(b, t, self.planes, volume_cams.height, volume_cams.width)
        if self.zncc_weight:
            logits = logits + self.zncc_weight * zncc_scores(sampled[:, :, :, -3:].detach(), seen, zncc_views)
        return logits

    def scene_zncc_views(self, cams: Cameras) -> int | Tensor:
        """How many of the nearest views the matching prior correlates for each scene of input cams
        [B, V]: 2 as an int where at most 2 views can take part or the prior is off, else [B] (on
        the CPU): ``zncc_views`` (at most ``depth_views`` where set) on walks through a scene, 2 on
        captures that circle an object (:func:`nvs.geometry.capture.capture_kind`), where the
        farther views see the subject from its sides, and their chance agreement on its texture
        behind a target's plain background (a dark cloth, a wall) outscores the background's own
        plane."""
        views = min(self.zncc_views, self.depth_views or self.views)
        if views <= 2 or not self.zncc_weight:
            return 2
        return torch.tensor([views if capture_kind(cams[b].to("cpu")) == "scene" else 2 for b in range(cams.shape[0])])

    def source_features(self, images: Tensor) -> Tensor:
        """images [B, V, 3, H, W] -> [B, V, F + 3, H/2, W/2]: unit-norm learnt features, then the
        colour, in the dtype of the weights."""
        flat = images.flatten(0, 1).to(self.features[0].weight.dtype)
        learnt = self.features(cpu_layout(flat * 2.0 - 1.0))
        learnt = learnt.contiguous()
        learnt = learnt / vector_norm(learnt, dim=1).clamp_min(1e-12)  # F.normalize's bits, faster
        colour = F.avg_pool2d(flat, 2)
        return torch.cat([learnt, colour], dim=1).unflatten(0, images.shape[:2])

    def coarse_source_features(self, features: Tensor) -> list[Tensor] | None:
        """:meth:`source_features` of the photos at 1/2, 1/4, ... of their resolution, one per level
        of ``coarse_levels``, from their features [B, V, F + 3, h, w] (whose colour channels are the
        photos 2x2-averaged; each level's are those of the level above, averaged again) -> level l
        [B, V, F + 3, h/2^l, w/2^l]; None without ``coarse_weight``. Levels stop where an image would
        be smaller than 2 x 2 pixels."""
        if not self.coarse_weight:
            return None
        levels = []
        for _ in range(self.coarse_level_count(features.shape[-2:])):
            features = self.source_features(features[:, :, -3:])
            levels.append(features)
        return levels

    def coarse_level_count(self, size: tuple[int, int]) -> int:
        """How many coarse levels features of ``size`` (h, w) have: ``coarse_levels``, less those
        that would be read off an image smaller than 2 x 2 pixels."""
        levels, side = 0, min(size)
        while levels < self.coarse_levels and side >= 2:
            levels, side = levels + 1, side // 2
        return levels

    def octave(self, cams: Cameras, ranges: Tensor | None, size: tuple[int, int]) -> int:
        """How many times the sweep halves the photos of cams [B, V] (of ``size`` (h, w); ``ranges``
        as :meth:`forward`'s) and its targets: :func:`sweep_octave` of their :func:`plane_steps`
        with ``max_step`` (0 without it)."""
        if not self.max_step:
            return 0
        with torch.autocast(device_type=cams.device.type, enabled=False):  # memorise and render must agree
            return sweep_octave(plane_steps(cams, self.inverse_depths(cams.device, ranges)), self.max_step, size)

    def photo_features(self, images: Tensor, cams: Cameras, ranges: Tensor | None = None,
                       views_at_once: int | None = None) -> SweepFeatures:
        """What the sweep matches on, read off the photos images [B, V, 3, H, W] of cams [B, V]
        (``ranges`` as :meth:`forward`'s), halved :meth:`octave` times, once for every target:
        :meth:`source_features` and :meth:`coarse_source_features`, ``views_at_once`` photos at a
        time (None: all; each photo's features are its own, so the result is the same). A memorised
        scene keeps them (``SceneState.sweep_features``), so that rendering does not compute them,
        or the octave, again per call."""
        octave = self.octave(cams, ranges, images.shape[-2:])
        step = images.shape[1] if views_at_once is None else views_at_once
        with torch.autocast(device_type=images.device.type, enabled=False):
            fine = [self.source_features(halve(images[:, start : start + step], octave))
                    for start in range(0, images.shape[1], step)]
            coarse = [self.coarse_source_features(part) for part in fine]
        return SweepFeatures(torch.cat(fine, dim=1),
                             None if coarse[0] is None else [torch.cat(level, dim=1) for level in zip(*coarse)],
                             octave, self.max_step)

    def reads(self, features: SweepFeatures) -> bool:
        """Whether kept :meth:`photo_features` were read under the current ``max_step`` and hold
        the coarse levels the current settings score (a state memorised before ``coarse_weight``,
        ``coarse_levels`` or ``max_step`` changed may not)."""
        if features.max_step != self.max_step:
            return False
        if not self.coarse_weight:
            return features.coarse is None
        return features.coarse is not None and len(features.coarse) == self.coarse_level_count(features.fine.shape[-2:])

    def forward(self, decoded: Tensor, target_cams: Cameras, images: Tensor, cams: Cameras,
                ranges: Tensor | None = None, with_samples: bool = False, features: SweepFeatures | None = None,
                prior_depth: Tensor | None = None):
        """decoded [B, T, 3, H, W] (the renderer's colour), target_cams [B, T], the memorised inputs
        images [B, V, 3, Hs, Ws] with cams [B, V], ranges [B, 2] (near, far) of each scene's sweep
        (None: the fixed ``near``, ``far``), features: :meth:`photo_features` of the images (None, or
        read under other settings: read here), prior_depth [B, T, 1, H, W] (:meth:`depth`; None: no
        prior) -> [B, T, 3, H, W]; ``with_samples`` also returns
        (samples [B, T, k, 3, H, W], valid [B, T, k, 1, H, W], depth [B, T, 1, H, W], plane logits
        [B, T, D, H/2^(o+1), W/2^(o+1)] with o the features' octave, planes [D] or [B, D]) for
        :func:`nvs.models.view_blend.warp_loss` and :func:`sweep_loss`.

        Without gradients, targets are swept one at a time: the cost volume and its intermediates
        take about 0.15 GB per 128x128 target (k = 4, 32 planes; peak resident memory on a CPU),
        growing with the target's pixels up to a 256x512 target, beyond which the volume is scored
        in bands of rows (:meth:`plane_logits`), whatever T is. Under autocast (``--dtype bf16``,
        mixed-precision training) the scorer's convolutions run in its dtype; the rest of the sweep
        runs in the weights' dtype."""
        device = decoded.device.type
        # under the caller's autocast only the scorer's convolutions run in its dtype (plane_logits)
        scorer_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        with torch.autocast(device_type=device, enabled=False):
            if self.training and self.degrade_probability > 0:
                decoded = degrade(decoded.flatten(0, 1), self.degrade_probability).unflatten(0, decoded.shape[:2])
            if features is None or not self.reads(features):
                features = self.photo_features(images, cams, ranges)
            planes = self.inverse_depths(decoded.device, ranges)
            zncc_views = self.scene_zncc_views(cams)
            if with_samples or torch.is_grad_enabled():
                return self._blend(decoded, target_cams, images, cams, features, planes, with_samples, scorer_dtype,
                                   prior_depth, zncc_views)
            parts = [self._blend(decoded[:, i : i + 1], target_cams[:, i : i + 1], images, cams, features, planes, False,
                                 scorer_dtype, None if prior_depth is None else prior_depth[:, i : i + 1], zncc_views)
                     for i in range(target_cams.shape[1])]
            return torch.cat(parts, dim=1)

    def _blend(self, decoded: Tensor, target_cams: Cameras, images: Tensor, cams: Cameras, features: SweepFeatures,
               planes: Tensor, with_samples: bool, scorer_dtype: torch.dtype | None, prior_depth: Tensor | None,
               zncc_views: int | Tensor):
        dtype = features.fine.dtype
        index = nearest_views(cams, target_cams, self.views)
        b, t, found = index.shape
        present = torch.ones(b, t, self.views, dtype=torch.bool, device=index.device)
        if found < self.views:  # fewer inputs than k: the spare slots repeat the nearest view and count for nothing
            index = torch.cat([index, index[..., :1].expand(b, t, self.views - found)], dim=-1)
            present[..., found:] = False
        photos, chosen = gather_views(images.to(dtype), cams, index)
        support = None
        masks = silhouettes(images.to(dtype)) if self.hull_weight else None
        if masks is not None and bool(carving_views(masks).any()):  # photos with a background: nothing to carve
            support = hull_support(masks, cams, halved_cams(target_cams, features.octave + 1), planes.to(dtype))
        coarse = None if features.coarse is None else [gather(level, index) for level in features.coarse]
        matched = present & (torch.arange(self.views, device=index.device) < self.depth_views) if self.depth_views else present
        depth, confidence, plane_logits = self.depth(target_cams, gather(features.fine, index), chosen, planes, matched,
                                                     coarse, scorer_dtype, support, features.octave, prior_depth,
                                                     zncc_views)
        if self.refine_window:
            depth = refine_depth(depth, expected_inverse_depth(plane_logits, planes.to(dtype)), photos, chosen, target_cams,
                                 self.refine_window, present, features.octave)
        samples, valid = warp_views(photos, chosen, target_cams, depth.to(dtype), interpolation=self.interpolation)
        valid = valid & present[..., None, None, None]
        decoded = decoded.to(dtype)
        x = torch.cat([decoded, samples.flatten(2, 3), valid.flatten(2, 3).to(dtype), confidence.to(dtype)], dim=2)
        logits = self.blender(x.flatten(0, 1)).reshape(b, t, self.views + 1, *decoded.shape[-2:])
        out = blend(decoded, samples, valid, logits)
        if support is not None:  # a ray that meets no supported point shows the white background
            inside = F.interpolate(support.amax(dim=2, keepdim=True).flatten(0, 1), size=out.shape[-2:], mode="bilinear",
                                   align_corners=False).unflatten(0, (b, t))
            out = out * inside + (1.0 - inside)
        return (out, (samples, valid, depth, plane_logits, planes)) if with_samples else out
