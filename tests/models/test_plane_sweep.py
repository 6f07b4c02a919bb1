import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from nvs.cameras import Cameras, pixel_rays
from nvs.models import LaCTRenderer, ModelConfig, load_renderer, save_renderer
import nvs.models.plane_sweep as plane_sweep
from nvs.models.plane_sweep import (BAND_HALO, COST_SCALE, GROUPS, PLANE_CE_WEIGHT, PlaneSweepBlend, background_colours,
                                    behind_hull_entry, carving_views, cpu_layout, degrade, hull_support, silhouettes,
                                    inverse_depth_planes, matching_costs, plane_targets, sample_planes, scene_planes,
                                    sweep_loss, variance_costs, zncc_scores)
from nvs.models.turn_ensemble import TurnEnsemble, turn_about_z
from nvs.models.view_blend import SAMPLE_LOGIT_INIT, blend, depth_loss, nearest_views

from tests.helpers import (PLANE_Z, noise_plane_views, plane_camera, ring_cameras, ring_scene, textured_plane_view, tiny_config,
                           without_head)


def _stack(cams: list[Cameras]) -> Cameras:
    """Single cameras -> one batch [1, 1, k] (the views swept for one target)."""
    return Cameras(torch.stack([c.intrinsics for c in cams])[None, None], torch.stack([c.c2w for c in cams])[None, None],
                   cams[0].height, cams[0].width)


def test_the_colour_cost_is_lowest_at_the_plane_the_views_see():
    """Three views of a textured plane; the target's colour cost per plane (features left out),
    summed over 7x7 windows as the scorer's convolutions do, is lowest at the plane nearest each
    pixel's true inverse depth (one pixel alone is ambiguous where the texture is flat along
    its epipolar line)."""
    size = 64
    sources = [plane_camera(x, size, yaw_deg=-math.degrees(math.atan2(x, PLANE_Z))) for x in (-1.0, 0.7, 1.3)]
    images = torch.stack([textured_plane_view(c, frequency=2.0)[0] for c in sources])  # [k, 3, H, W]
    features = torch.cat([torch.zeros(3, 4, size, size, dtype=torch.float64), images], dim=1)[None, None]
    target = plane_camera(0.2, size)
    target = Cameras(target.intrinsics[None, None], target.c2w[None, None], size, size)
    planes = inverse_depth_planes(1.5, 8.0, 12).double()
    costs = matching_costs(features, _stack(sources), target, planes)
    assert costs.shape == (1, 1, 12, GROUPS + 2, size, size)
    assert torch.equal(costs[0, 0, :, :GROUPS], torch.zeros_like(costs[0, 0, :, :GROUPS]))  # zero features agree
    seen_by_all = costs[0, 0, :, GROUPS + 1].bool().all(dim=0)
    _, depth = textured_plane_view(target)
    truth = (1 / depth[0, 0, 0] - planes.view(-1, 1, 1)).abs().argmin(dim=0)
    window = F.avg_pool2d(costs[0, 0, :, GROUPS : GROUPS + 1], 7, stride=1, padding=3, count_include_pad=False)
    found = window[:, 0].argmin(dim=0)
    assert seen_by_all.double().mean() > 0.5
    # a pixel whose surface lies between two planes may pick either
    assert (found == truth)[seen_by_all].double().mean() > 0.95
    assert ((found - truth).abs() <= 1)[seen_by_all].double().mean() > 0.99
    assert set(costs[0, 0, :, GROUPS + 1].unique().tolist()) <= {0.0, 1.0}


def test_the_zncc_score_peaks_at_the_plane_the_views_see_whatever_their_exposure():
    """Two views of a randomly textured plane, one darkened and offset (another exposure): the
    colour difference is fooled, the normalised cross-correlation is not; a flat image and an
    unseen view score zero."""
    size = 64
    sources = [plane_camera(x, size, yaw_deg=-math.degrees(math.atan2(x, PLANE_Z))) for x in (-0.6, 0.8)]
    images, _ = noise_plane_views(Cameras.cat([c[None] for c in sources]), [(PLANE_Z, math.inf)])
    images[1] = 0.5 * images[1] + 0.3
    target = plane_camera(0.1, size)
    _, depth = noise_plane_views(target[None], [(PLANE_Z, math.inf)])
    target = Cameras(target.intrinsics[None, None], target.c2w[None, None], size, size)
    planes = inverse_depth_planes(1.5, 8.0, 12).double()
    sampled, seen = sample_planes(images.double()[None, None], _stack(sources), target, planes)
    scores = zncc_scores(sampled, seen, window=11)
    assert scores.shape == (1, 1, 12, size, size)
    assert scores.abs().max() <= 1.0 + 1e-9
    both = seen[0, 0, :, 0].prod(dim=0).bool().all(dim=0)
    truth = (1 / depth[0, 0] - planes.view(-1, 1, 1)).abs().argmin(dim=0)
    found = scores[0, 0].argmax(dim=0)
    assert both.double().mean() > 0.5
    assert ((found - truth).abs() <= 1)[both].double().mean() > 0.8
    difference = (sampled[0, 0, 0] - sampled[0, 0, 1]).square().mean(dim=0)  # [D, H, W]
    assert ((difference.argmin(dim=0) - truth).abs() <= 1)[both].double().mean() < 0.5
    assert zncc_scores(torch.full_like(sampled, 0.4), seen, window=11).abs().max() < 1e-6
    unseen = seen.clone()
    unseen[:, :, 1] = 0
    assert torch.equal(zncc_scores(sampled, unseen, window=11), torch.zeros_like(scores))


def _four_views_of_a_noise_plane(size: int = 48):
    """Four views of a randomly textured plane about a target camera: (sampled, seen of
    :func:`sample_planes` [1, 1, 4, 3, D, H, W], the true plane of each target pixel [H, W])."""
    sources = [plane_camera(x, size, yaw_deg=-math.degrees(math.atan2(x, PLANE_Z))) for x in (-0.5, 0.6, -1.0, 1.1)]
    images, _ = noise_plane_views(Cameras.cat([c[None] for c in sources]), [(PLANE_Z, math.inf)])
    target = plane_camera(0.05, size)
    _, depth = noise_plane_views(target[None], [(PLANE_Z, math.inf)])
    target = Cameras(target.intrinsics[None, None], target.c2w[None, None], size, size)
    planes = inverse_depth_planes(1.5, 8.0, 12).double()
    sampled, seen = sample_planes(images.double()[None, None], _stack(sources), target, planes)
    return sampled, seen, (1 / depth[0, 0] - planes.view(-1, 1, 1)).abs().argmin(dim=0)


def test_the_zncc_score_of_more_views_is_the_mean_of_the_better_half_of_their_pairs():
    """Against the definition, pair by pair: with all four views seeing a point, the mean of its
    best 3 of 6 pair scores; where the fourth is left out, the best 2 of the other three's 3 pairs;
    two views score as before, and no pair seen scores 0."""
    torch.manual_seed(0)
    sampled, seen, _ = _four_views_of_a_noise_plane()
    seen[:, :, 3, :, :, :, : seen.shape[-1] // 2] = 0  # the fourth view misses the left half
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    each = torch.stack([zncc_scores(sampled[:, :, [i, j]], seen[:, :, [i, j]], window=9) for i, j in pairs], dim=2)
    all_seen = seen[0, 0, :, 0].bool().all(dim=0)
    three_seen = seen[0, 0, :3, 0].bool().all(dim=0) & ~seen[0, 0, 3, 0].bool()
    assert all_seen.any() and three_seen.any()
    four = zncc_scores(sampled, seen, views=4, window=9)[0, 0]
    assert torch.allclose(four[all_seen], each[0, 0].topk(3, dim=0).values.mean(dim=0)[all_seen], atol=1e-12)
    first_three = each[0, 0, [0, 1, 3]]  # the pairs without the fourth view
    assert torch.allclose(four[three_seen], first_three.topk(2, dim=0).values.mean(dim=0)[three_seen], atol=1e-12)
    assert torch.equal(zncc_scores(sampled, seen, views=2, window=9), each[:, :, 0])
    assert torch.equal(zncc_scores(sampled, torch.zeros_like(seen), views=4, window=9), torch.zeros_like(four)[None, None])


@pytest.mark.parametrize("views", [3, 5, 6])
def test_the_zncc_score_keeps_the_better_half_of_whichever_pairs_see_each_point(views):
    """Any number of views, each seeing a random part of the volume: per point, the mean of the
    best ceil(n / 2) of the n pair scores whose two views both see it, against a full sort."""
    torch.manual_seed(views)
    colours = torch.rand(1, 2, views, 3, 4, 12, 14, dtype=torch.float64)
    seen = (torch.rand(1, 2, views, 1, 4, 12, 14) > 0.3).double()
    pairs = list(itertools.combinations(range(views), 2))
    each = torch.stack([zncc_scores(colours[:, :, [i, j]], seen[:, :, [i, j]], window=5) for i, j in pairs])
    both = torch.stack([seen[:, :, i, 0] * seen[:, :, j, 0] for i, j in pairs]).bool()
    ranked = torch.where(both, each, -math.inf).sort(dim=0, descending=True).values
    kept = (both.sum(dim=0) + 1) // 2
    expected = torch.where(torch.arange(len(pairs)).view(-1, 1, 1, 1, 1, 1) < kept, ranked, 0.0).sum(dim=0)
    assert (kept == 0).any() and (kept > 1).any()
    assert torch.allclose(zncc_scores(colours, seen, views, window=5), expected / kept.clamp_min(1), atol=1e-12)


def test_the_zncc_score_of_two_views_is_their_windows_normalised_covariance():
    """At a few pixels and planes, from the two windows of grey levels themselves (cut short by the
    image's edge, as the box means are)."""
    torch.manual_seed(0)
    sampled, seen, _ = _four_views_of_a_noise_plane()
    scores = zncc_scores(sampled, seen, window=9)[0, 0]
    grey = sampled[0, 0, :2].mean(dim=1)  # [2, D, H, W]
    both = seen[0, 0, 0, 0] * seen[0, 0, 1, 0]
    for plane, y, x in ((3, 20, 30), (7, 2, 45), (10, 40, 1), (0, 24, 24)):
        a, b = (g[plane, max(0, y - 4) : y + 5, max(0, x - 4) : x + 5] for g in grey)
        covariance = (a * b).mean() - a.mean() * b.mean()
        spread = ((a.square().mean() - a.mean().square()) * (b.square().mean() - b.mean().square())).sqrt()
        expected = (covariance / (spread + 0.05**2)).clamp(-1, 1) * both[plane, y, x]
        assert torch.allclose(scores[plane, y, x], expected, atol=1e-9)


def test_the_zncc_score_of_more_views_finds_the_plane_a_hidden_view_misses():
    """The second nearest view sees something else (an occluder's own texture) at every point: the
    two nearest views' correlation loses the plane, the better half of four views' pairs keeps it."""
    torch.manual_seed(0)
    sampled, seen, truth = _four_views_of_a_noise_plane()
    sampled[:, :, 1] = torch.rand_like(sampled[:, :, 1, :, :1]).expand_as(sampled[:, :, 1])  # the same on every plane
    both = seen[0, 0, :, 0].prod(dim=0).bool().all(dim=0)
    assert both.double().mean() > 0.5

    def found_share(views: int) -> float:
        found = zncc_scores(sampled, seen, views=views, window=11)[0, 0].argmax(dim=0)
        return ((found - truth).abs() <= 1)[both].double().mean().item()

    assert found_share(2) < 0.5
    assert found_share(4) > 0.9


def test_zncc_scores_take_each_scene_s_own_number_of_views():
    torch.manual_seed(0)
    sampled, seen, _ = _four_views_of_a_noise_plane()
    two_scenes, seen_twice = torch.cat([sampled, sampled.flip(-1)]), torch.cat([seen, seen.flip(-1)])
    for views in ((4, 2), (3, 4)):
        each = zncc_scores(two_scenes, seen_twice, views=torch.tensor(views), window=9)
        assert torch.equal(each[:1], zncc_scores(sampled, seen, views=views[0], window=9))
        assert torch.equal(each[1:], zncc_scores(sampled.flip(-1), seen.flip(-1), views=views[1], window=9))


def _walk_scene(views: int, targets: int, size: int) -> tuple[Cameras, Cameras]:
    """Cameras [1, views] and target cameras [1, targets] on a line, all looking along +z (a walk)."""
    def line(xs):
        cams = [plane_camera(x, size) for x in xs]
        return Cameras(torch.stack([c.intrinsics for c in cams]).float()[None], torch.stack([c.c2w for c in cams]).float()[None],
                       size, size)

    return line(torch.linspace(-0.6, 0.6, views).tolist()), line([-0.25, 0.35][:targets])


def test_zncc_views_is_a_reading_setting_for_walks_and_keeps_the_nearest_two_around_an_object(tmp_path):
    """One batch of a walk and a ring: more views move the walk's render and leave the ring's."""
    torch.manual_seed(0)
    walk, walk_targets = _walk_scene(5, 2, 16)
    ring_images, ring, ring_targets = ring_scene(1, 5, 2, size=16)
    images = torch.cat([torch.rand(1, 5, 3, 16, 16), ring_images])
    cams, targets = Cameras.cat([walk, ring]), Cameras.cat([walk_targets, ring_targets])
    model = LaCTRenderer(tiny_config(sweep_views=3, sweep_planes=6, sweep_zncc=30.0)).eval()
    with torch.no_grad():
        state = model.memorize(images, cams)
        nearest_two = model.render(state, targets)
        model.use_reading_settings(dataclasses.replace(model.config, sweep_zncc_views=3))
        three = model.render(state, targets)
    assert model.sweep.scene_zncc_views(cams).tolist() == [3, 2]
    assert not torch.allclose(nearest_two[0], three[0])
    assert torch.equal(nearest_two[1], three[1])
    path = save_renderer(model, tmp_path / "z3.safetensors")
    assert load_renderer(path).sweep.zncc_views == 3
    assert LaCTRenderer(tiny_config(sweep_views=3, sweep_zncc=1.0)).sweep.zncc_views == 2
    model.use_reading_settings(dataclasses.replace(model.config, sweep_depth_views=2))  # depth from the 2 nearest
    assert model.sweep.scene_zncc_views(cams) == 2
    for values in ({"sweep_zncc_views": 4}, {"sweep_zncc_views": 1}, {"sweep_zncc_views": 3.0},
                   {"sweep_zncc_views": True}):
        with pytest.raises(ValueError, match="'sweep_zncc_views' must be a whole number from 2 to sweep_views"):
            tiny_config(sweep_views=3, **values)
    with pytest.raises(ValueError, match="sweep_zncc_views"):
        ModelConfig(sweep_zncc_views=3)


def test_the_shipped_scene_renderer_turns_each_setting_off_beside_its_matching_prior_s_views():
    """--setting sweep_zncc=0 or sweep_depth_views=2 on a renderer that sets sweep_zncc_views: 4."""
    from nvs.assets import SHIPPED
    from nvs.inference import apply_reading_settings

    walk = _walk_scene(5, 1, 16)[0]
    expected = {"sweep_zncc": 2, "sweep_depth_views": 2, "sweep_zncc_views": 2}  # views of the walk's prior
    assert load_renderer(SHIPPED["scene"]).sweep.scene_zncc_views(walk).tolist() == [4]
    for key, value in (("sweep_zncc", 0.0), ("sweep_depth_views", 2), ("sweep_zncc_views", 2)):
        model = load_renderer(SHIPPED["scene"])
        assert model.config.sweep_zncc_views == 4
        apply_reading_settings(model, [(key, value)])
        views = model.sweep.scene_zncc_views(walk)
        assert getattr(model.config, key) == value
        assert (views.tolist() if isinstance(views, torch.Tensor) else views) == expected[key]


def test_the_zncc_prior_moves_the_sweeps_depth_and_is_a_setting_of_the_config(tmp_path):
    torch.manual_seed(0)
    images, cams, targets = ring_scene(1, 4, 2, size=16)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=6)).eval()
    with torch.no_grad():
        plain = model.render(model.memorize(images, cams), targets)
        model.sweep.zncc_weight = 30.0
        primed = model.render(model.memorize(images, cams), targets)
    assert not torch.allclose(plain, primed)
    path = save_renderer(LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=6, sweep_zncc=30.0)), tmp_path / "z.safetensors")
    assert load_renderer(path).sweep.zncc_weight == 30.0
    assert LaCTRenderer(tiny_config(sweep_views=2)).sweep.zncc_weight == 0.0


def test_the_coarse_sweep_s_scores_join_the_fine_ones_and_are_a_setting_of_the_config(tmp_path):
    """The plane scores of the photos at half resolution, upsampled, are added at sweep_coarse's weight."""
    torch.manual_seed(0)
    images, cams, targets = ring_scene(1, 4, 2, size=32)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=6)).eval()
    sweep = model.sweep
    index = torch.tensor([[[0, 1], [1, 2]]])
    chosen = Cameras(cams.intrinsics[:, index[0]], cams.c2w[:, index[0]], 32, 32)
    features = sweep.source_features(images)[:, index[0]]  # [1, T, k, F + 3, 16, 16]
    planes = sweep.inverse_depths()
    with torch.no_grad():
        assert sweep.coarse_source_features(features) is None
        sweep.coarse_weight = 0.5
        [coarse_features] = [f[:, index[0]] for f in sweep.coarse_source_features(sweep.source_features(images))]
        torch.testing.assert_close(coarse_features, sweep.source_features(F.avg_pool2d(images[0], 2)[None])[:, index[0]])
        fine = sweep.plane_logits(targets, features, chosen, planes)
        coarse = sweep.plane_logits(targets.resize(16, 16), coarse_features, chosen, planes)
        assert fine.shape == (1, 2, 6, 16, 16) and coarse.shape == (1, 2, 6, 8, 8)
        _, _, joined = sweep.depth(targets, features, chosen, planes, coarse_features=[coarse_features])
        upsampled = F.interpolate(coarse.flatten(0, 1), size=(16, 16), mode="bilinear", align_corners=False).unflatten(0, (1, 2))
        torch.testing.assert_close(joined, fine + 0.5 * upsampled)
        coarse_render = model.render(model.memorize(images, cams), targets)
        sweep.coarse_weight = 0.0
        assert torch.equal(sweep.depth(targets, features, chosen, planes, coarse_features=[coarse_features])[2], fine)
        assert not torch.allclose(model.render(model.memorize(images, cams), targets), coarse_render)
    path = save_renderer(LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=6, sweep_coarse=0.5)), tmp_path / "c.safetensors")
    assert load_renderer(path).sweep.coarse_weight == 0.5
    assert LaCTRenderer(tiny_config(sweep_views=2)).sweep.coarse_weight == 0.0


def test_each_coarse_level_halves_the_last_and_adds_its_scores_down_to_the_smallest_target(tmp_path):
    """sweep_coarse_levels 3 on 64x64 targets: the photos' features at 1/2, 1/4 and 1/8 of the
    volume's resolution (each from the level above, 2x2-averaged), and the plane scores of targets of
    32, 16 and 8 pixels upsampled and added, each at sweep_coarse's weight; a level whose target
    would be under MIN_COARSE_SIZE pixels is left out."""
    torch.manual_seed(0)
    images, cams, targets = ring_scene(1, 4, 1, size=64)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=4, sweep_coarse=0.5, sweep_coarse_levels=3)).eval()
    sweep = model.sweep
    index = torch.tensor([[[0, 1]]])
    chosen = Cameras(cams.intrinsics[:, index[0]], cams.c2w[:, index[0]], 64, 64)
    planes = sweep.inverse_depths()
    with torch.no_grad():
        features = sweep.source_features(images)
        levels = sweep.coarse_source_features(features)
        assert [f.shape[-1] for f in levels] == [16, 8, 4]
        photos = images[0]
        for level in levels:
            photos = F.avg_pool2d(photos, 2)
            torch.testing.assert_close(level, sweep.source_features(photos[None]))
        levels = [f[:, index[0]] for f in levels]
        expected = sweep.plane_logits(targets, features[:, index[0]], chosen, planes)
        for level, size in zip(levels, (32, 16, 8)):
            coarse = sweep.plane_logits(targets.resize(size, size), level, chosen, planes)
            expected = expected + 0.5 * F.interpolate(coarse.flatten(0, 1), size=(32, 32), mode="bilinear",
                                                      align_corners=False).unflatten(0, (1, 1))
        _, _, joined = sweep.depth(targets, features[:, index[0]], chosen, planes, coarse_features=levels)
        torch.testing.assert_close(joined, expected)
        small = targets.resize(16, 16)  # levels of 8 and 4 pixels; the third (2) is left out
        _, _, two = sweep.depth(small, features[:, index[0]], chosen, planes, coarse_features=levels)
        _, _, first_two = sweep.depth(small, features[:, index[0]], chosen, planes, coarse_features=levels[:2])
        torch.testing.assert_close(two, first_two)
        three = model.render(model.memorize(images, cams), targets)
        model.use_reading_settings(tiny_config(sweep_views=2, sweep_planes=4, sweep_coarse=0.5))
        assert sweep.coarse_levels == 1 and len(sweep.coarse_source_features(features)) == 1
        assert not torch.allclose(model.render(model.memorize(images, cams), targets), three)
    path = save_renderer(LaCTRenderer(tiny_config(sweep_views=2, sweep_coarse=0.5, sweep_coarse_levels=3)), tmp_path / "l.safetensors")
    assert load_renderer(path).sweep.coarse_levels == 3


def test_variance_costs_are_each_points_spread_over_the_views_that_see_it():
    """Against the definition, point by point: the population variance over the seeing views
    only, averaged per feature group and over the colour, and whether two views see it."""
    torch.manual_seed(0)
    k, features, planes, h, w = 4, 2 * GROUPS, 3, 5, 6
    sampled = torch.rand(1, 2, k, features + 3, planes, h, w, dtype=torch.float64)
    seen = (torch.rand(1, 2, k, 1, planes, h, w) > 0.4).double()
    costs = variance_costs(sampled, seen)  # [B, T, D, GROUPS + 2, h, w]
    assert costs.shape == (1, 2, planes, GROUPS + 2, h, w)
    for t, d, y, x in [(0, 0, 0, 0), (1, 2, 4, 5), (0, 1, 2, 3), (1, 0, 3, 1)] + [(t, 1, 1, x) for t in (0, 1) for x in range(w)]:
        views = seen[0, t, :, 0, d, y, x].bool()
        points = sampled[0, t, views, :, d, y, x]  # [seeing views, C]
        spread = points.var(dim=0, unbiased=False) if len(points) else torch.zeros(features + 3, dtype=torch.float64)
        expected = torch.cat([COST_SCALE * spread[:features].view(GROUPS, -1).mean(dim=1),
                              COST_SCALE * spread[features:].mean().view(1),
                              torch.tensor([float(views.sum() >= 2)], dtype=torch.float64)])
        torch.testing.assert_close(costs[0, t, d, :, y, x], expected)
    assert set(seen[0, :, :, 0].sum(dim=1).unique().tolist()) >= {0.0, 1.0, 2.0}  # the cases of few views occur


def test_on_a_cpu_the_sweeps_convolutions_read_channels_last_tensors_of_the_same_values():
    x = torch.rand(3, 5, 7, 9)
    laid = cpu_layout(x)
    assert laid.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(laid, x)


def test_a_large_cost_volume_scored_in_bands_of_rows_gives_the_same_scores(monkeypatch):
    """Bands of 3 rows (the last one shorter), each reading BAND_HALO rows beyond its own, against
    the whole 20-row volume at once, with the ZNCC prior on: the scorer and the ZNCC window read
    no further than the halo, so the scores match wherever a band's rows are."""
    torch.manual_seed(0)
    sweep = PlaneSweepBlend(views=3, planes=5, near=1.0, far=4.0).double()
    sweep.zncc_weight = 0.5
    cams = ring_cameras(1, 3, size=24).to(torch.float64)
    chosen = Cameras(cams.intrinsics[:, None], cams.c2w[:, None], 24, 24)
    target = ring_cameras(1, 1, size=40, offset=0.3).to(torch.float64)
    target = Cameras(target.intrinsics, target.c2w, 40, 36)  # a volume of 20 x 18
    features = torch.rand(1, 1, 3, 16 + 3, 24, 24, dtype=torch.float64)
    planes = inverse_depth_planes(1.0, 4.0, 5).double()
    whole = sweep.plane_logits(target, features, chosen, planes)
    monkeypatch.setattr(plane_sweep, "BAND_PIXELS", 3 * 18)
    banded = sweep.plane_logits(target, features, chosen, planes)
    assert banded.shape == whole.shape == (1, 1, 5, 20, 18) and BAND_HALO >= 8
    torch.testing.assert_close(banded, whole)
    monkeypatch.setattr(plane_sweep, "BAND_HALO", 2)  # too little context: the scores differ (the test can fail)
    assert not torch.allclose(sweep.plane_logits(target, features, chosen, planes), whole)


def test_matching_costs_pass_gradients_to_the_features():
    torch.manual_seed(0)
    cams = ring_cameras(1, 3, size=8).to(torch.float64)
    chosen = Cameras(cams.intrinsics[:, None], cams.c2w[:, None], 8, 8)
    target = ring_cameras(1, 1, size=8, offset=0.4).to(torch.float64).resize(4, 4)
    features = torch.rand(1, 1, 3, 4 + 3, 8, 8, dtype=torch.float64, requires_grad=True)
    planes = inverse_depth_planes(1.0, 4.0, 3).double()
    assert torch.autograd.gradcheck(lambda f: matching_costs(f, chosen, target, planes), (features,))


def test_plane_targets_and_the_sweep_loss():
    cams = ring_cameras(1, 2, size=16)
    planes = inverse_depth_planes(1.0, 4.0, 8)
    _, dirs = pixel_rays(cams)
    cos = (dirs * cams.c2w[..., :3, 2, None, None]).sum(-3, keepdim=True)
    ray_depth = torch.full((1, 2, 1, 16, 16), 1 / float(planes[5]))
    z = ray_depth * cos
    z[..., :8, :] = 0  # no surface in the top half
    index, known = plane_targets(z, cams, planes, (8, 8))
    assert index.shape == known.shape == (1, 2, 8, 8)
    assert not known[..., :4, :].any() and known[..., 4:, :].all() and (index[known] == 5).all()
    perfect = torch.full((1, 2, 8, 8, 8), -30.0)
    perfect[:, :, 5] = 30.0
    assert float(sweep_loss(ray_depth, perfect, planes, z, cams)) < 1e-5
    flat = torch.zeros(1, 2, 8, 8, 8)  # uniform over the planes: cross-entropy log(8)
    assert float(sweep_loss(ray_depth, flat, planes, z, cams)) == pytest.approx(PLANE_CE_WEIGHT * math.log(8), rel=1e-4)
    assert float(sweep_loss(ray_depth * 2, perfect, planes, z, cams)) == pytest.approx(
        float(depth_loss(ray_depth * 2, z, cams)), rel=1e-5)
    assert float(sweep_loss(ray_depth, flat, planes, torch.zeros_like(z), cams)) == 0.0


def _sweep_model(**overrides) -> LaCTRenderer:
    torch.manual_seed(0)
    settings = dict(sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0)
    return LaCTRenderer(tiny_config(**{**settings, **overrides})).eval()


def test_a_new_sweep_is_a_fixed_mix_of_the_decoded_colour_and_its_samples():
    model = _sweep_model()
    plain = without_head(model, "sweep", tiny_config())
    images, cams, targets = ring_scene()
    with torch.no_grad():
        decoded = plain(images, cams, targets)
        out, (samples, valid, depth, plane_logits, planes) = model(images, cams, targets, with_samples=True)
    assert samples.shape == (1, 2, 2, 3, 32, 32) and valid.shape == (1, 2, 2, 1, 32, 32)
    assert depth.shape == (1, 2, 1, 32, 32) and plane_logits.shape == (1, 2, 8, 16, 16)
    assert torch.allclose(planes, torch.linspace(1.0, 0.25, 8))  # the fixed range: 1/near to 1/far
    assert (depth >= 1.0 - 1e-4).all() and (depth <= 4.0 + 1e-4).all()  # between the nearest and farthest plane
    fixed = torch.tensor([0.0] + [SAMPLE_LOGIT_INIT] * 2).view(1, 1, 3, 1, 1).expand(1, 2, 3, 32, 32)
    assert torch.allclose(out, blend(decoded, samples, valid, fixed), atol=1e-6)
    assert (out - decoded).abs().max() > 1e-3


def test_sweep_renderer_memorize_render_chunks_round_trip_and_gradients(tmp_path):
    model = _sweep_model()
    with torch.no_grad():  # a blend that uses its inputs, so the checks below see it
        model.sweep.blender[-1].weight.normal_(std=0.1)
    images, cams, targets = ring_scene(batch=2, targets=4)
    with torch.no_grad():
        joint = model(images, cams, targets)  # one target at a time without gradients
        state = model.memorize(images, cams)
        split = model.render(state, targets)
        model.set_memory_budget(2 * 4 * 16 * 32 * 4 + 200_000)
        assert model.chunk_plan(2, 4, 16) is not None
        chunked = model.render(model.memorize(images, cams), targets)
        model.set_memory_budget(None)
        single = model(images[:, :1], cams[:, :1], targets)  # one input, k = 2: the nearest twice
    batched, _ = model(images, cams, targets, with_samples=True)
    assert state.sources is not None
    assert (joint - split).abs().max() < 1e-5 and (joint - chunked).abs().max() < 1e-4
    assert (joint - batched).abs().max() < 1e-5
    assert single.shape == joint.shape and torch.isfinite(single).all()
    save_renderer(model, tmp_path / "sweep.safetensors")
    loaded = load_renderer(tmp_path / "sweep.safetensors").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(images, cams, targets), joint)
    model.train()
    model(images, cams, targets).square().mean().backward()
    for name in ("features", "scorer", "blender"):
        assert sum(p.grad.abs().sum() for p in getattr(model.sweep, name).parameters()) > 0, name


def test_a_memorised_scene_keeps_what_the_sweep_matches_on_and_rendering_reads_it_from_there(monkeypatch):
    """memorize reads the photos' features (and their coarse levels) once; render, chunked render
    and a turn ensemble's four turns render from them, as from features read again per call."""
    model = _sweep_model(sweep_coarse=0.5, sweep_coarse_levels=2)
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
    images, cams, targets = ring_scene(batch=1, inputs=4, targets=3)
    reads = []
    source_features = PlaneSweepBlend.source_features
    monkeypatch.setattr(PlaneSweepBlend, "source_features", lambda self, x: reads.append(x.shape) or source_features(self, x))
    with torch.no_grad():
        state = model.memorize(images, cams)
        features, coarse, octave, _ = state.sweep_features
        assert octave == 0 and features.shape == (1, 4, plane_sweep.FEATURES + 3, 16, 16) and [c.shape[-1] for c in coarse] == [8, 4]
        assert len(reads) == 3 and state.nbytes() > dataclasses.replace(state, sweep_features=None).nbytes()
        kept = model.render(state, targets)
        model.set_memory_budget(2 * 4 * 16 * 32 * 4 + 200_000)
        assert model.chunk_plan(1, 3, model.tokens_per_view(targets)) is not None
        chunked = model.render(state, targets)
        model.set_memory_budget(None)
        assert len(reads) == 3  # none read again
        again = model.render(dataclasses.replace(state, sweep_features=None), targets)
        assert len(reads) == 6
        torch.testing.assert_close(kept, again, atol=0, rtol=0)
        torch.testing.assert_close(chunked, again, atol=1e-5, rtol=0)
        reads.clear()
        ensemble = TurnEnsemble(model, 4)
        turned = ensemble.memorize(images, cams)
        assert len(reads) == 3 and all(s.sweep_features is turned.states[0].sweep_features for s in turned.states)
        ensemble.render(turned, targets)
        assert len(reads) == 3
        moved, detached = state.to("cpu", torch.float64), state.detach()
        assert moved.sweep_features.fine.dtype == torch.float64 and len(moved.sweep_features.coarse) == 2
        assert detached.sweep_features.fine is not None and len(detached.sweep_features.coarse) == 2
        reads.clear()  # memorising in chunks reads the features a group of views at a time
        model.set_memory_budget(60_000)
        plan = model.chunk_plan(1, 4, model.tokens_per_view(cams))
        assert plan is not None and plan.views < 4
        grouped = model.memorize(images, cams)
        model.set_memory_budget(None)
        assert len(reads) == 3 * math.ceil(4 / plan.views) and max(shape[1] for shape in reads) == plan.views
        torch.testing.assert_close(grouped.sweep_features.fine, features, atol=1e-6, rtol=0)
        for level, expected in zip(grouped.sweep_features.coarse, coarse, strict=True):
            torch.testing.assert_close(level, expected, atol=1e-6, rtol=0)
        # under other settings a kept state's coarse levels are not what the sweep scores: read again
        model.use_reading_settings(dataclasses.replace(model.config, sweep_coarse_levels=1))
        assert not model.sweep.reads(state.sweep_features)
        torch.testing.assert_close(model.render(state, targets), model.render(model.memorize(images, cams), targets),
                                   atol=0, rtol=0)
        model.use_reading_settings(dataclasses.replace(model.config, sweep_coarse=0.0))
        assert not model.sweep.reads(state.sweep_features)
        assert model.memorize(images, cams).sweep_features.coarse is None


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm, as inference_autocast
def test_under_autocast_only_the_scorers_convolutions_run_in_its_dtype(monkeypatch):
    """bfloat16 autocast (``--dtype bf16``): the scorer's convolutions compute in bfloat16, the
    points are projected and sampled in float32, and the render stays close to float32's."""
    model = _sweep_model(sweep_coarse=0.5)
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
    images, cams, targets = ring_scene(batch=1, inputs=4, targets=2)
    seen_dtypes = {"scorer": [], "sampled": []}
    model.sweep.scorer[0].register_forward_hook(lambda module, args, out: seen_dtypes["scorer"].append(out.dtype))
    sample = plane_sweep.sample_planes
    monkeypatch.setattr(plane_sweep, "sample_planes",
                        lambda *args: (out := sample(*args)) and seen_dtypes["sampled"].append(out[0].dtype) or out)
    with torch.no_grad():
        state = model.memorize(images, cams)
        plain = model.render(state, targets)
        assert set(seen_dtypes["scorer"]) == {torch.float32} and set(seen_dtypes["sampled"]) == {torch.float32}
        seen_dtypes["scorer"].clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.render(state, targets)
    assert set(seen_dtypes["scorer"]) == {torch.bfloat16} and set(seen_dtypes["sampled"]) == {torch.float32}
    assert len(seen_dtypes["scorer"]) == 4  # two targets, each with one coarse level
    assert mixed.dtype == torch.float32 and 0 < (mixed - plain).abs().max() < 0.05


def test_sweep_config_is_checked():
    with pytest.raises(ValueError, match="need arch 'lact'"):
        tiny_config(arch="full_attention", sweep_views=2)
    with pytest.raises(ValueError, match="sweep_near .* must be below sweep_far"):
        ModelConfig(sweep_views=2, sweep_near=5.0, sweep_far=2.0)
    bad = (("sweep_views", 17), ("sweep_views", 1), ("sweep_planes", 1), ("sweep_near", 0.0), ("sweep_far", float("nan")),
           ("sweep_zncc", -1.0), ("sweep_zncc", float("nan")), ("sweep_zncc", True), ("sweep_coarse", -0.5),
           ("sweep_coarse", float("inf")), ("sweep_coarse_levels", 0), ("sweep_coarse_levels", 9), ("sweep_coarse_levels", 2.0),
           ("sweep_coarse_levels", True), ("sweep_max_step", -1.0), ("sweep_max_step", float("nan")), ("sweep_refine", 4),
           ("sweep_refine", -1), ("sweep_refine", 33), ("sweep_refine", 5.0), ("sweep_refine", True),
           ("sweep_depth_views", 2), ("sweep_depth_views", 2.0), ("sweep_depth_views", True), ("sweep_depth_views", -1))
    for key, value in bad:
        with pytest.raises(ValueError, match=key):
            ModelConfig(**{key: value})


def test_sample_planes_samples_each_view_where_cameras_project_the_points_on_the_rays():
    """Against the definition: the point at each distance along each target pixel's ray, projected
    by Cameras.project (a point behind a view takes the optical axis's pixel), sampled bilinearly;
    two scenes with planes of their own, views of another (non-square) size than the targets,
    principal points off centre, views with points behind them and one left out."""
    torch.manual_seed(0)
    shift = torch.tensor([1.0, 1.2, 1.5, -2.0])

    def reshaped(cams: Cameras, height: int, width: int, *shape: int) -> Cameras:
        return Cameras((cams.intrinsics * torch.tensor([1.0, 1.0, width / cams.width, height / cams.height]) + shift)
                       .reshape(*shape, 4), cams.c2w.reshape(*shape, 4, 4), height, width)

    target = reshaped(ring_cameras(2, 2, size=12), 10, 14, 2, 2)
    views = reshaped(ring_cameras(2, 6, size=20, radius=1.2, offset=0.4), 17, 23, 2, 2, 3)
    features = torch.rand(2, 2, 3, 5, 17, 23, dtype=torch.float64)
    planes = scene_planes(torch.tensor([[0.5, 6.0], [0.8, 4.0]]), 7)  # [B, D]
    present = torch.tensor([[[True, True, True], [True, False, True]], [[False, True, True], [True, True, True]]])
    sampled, seen = sample_planes(features, views, target, planes, present)
    assert sampled.shape == (2, 2, 3, 5, 7, 10, 14) and seen.shape == (2, 2, 3, 1, 7, 10, 14)
    origins, dirs = pixel_rays(target)  # [B, T, 3, h, w]
    points = origins[:, :, None] + (1.0 / planes).view(2, 1, 7, 1, 1, 1) * dirs[:, :, None]  # [B, T, D, 3, h, w]
    points = points.permute(0, 1, 2, 4, 5, 3).reshape(2, 2, 1, -1, 3).expand(2, 2, 3, -1, 3)
    pixels, z = views.project(points, min_depth=plane_sweep.MIN_VIEW_DEPTH)
    grid = pixels / torch.tensor([23.0, 17.0]) * 2.0 - 1.0  # [B, T, k, D * h * w, 2]
    expected = F.grid_sample(features.flatten(0, 2), grid.reshape(12, 7 * 10, 14, 2).double(), mode="bilinear",
                             padding_mode="border", align_corners=False)
    torch.testing.assert_close(sampled, expected.reshape(2, 2, 3, 5, 7, 10, 14), atol=1e-4, rtol=0)  # float32 grids
    expected_seen = (z > plane_sweep.MIN_VIEW_DEPTH) & (grid.abs() <= 1).all(-1) & present[..., None]
    behind = (z <= plane_sweep.MIN_VIEW_DEPTH).double().mean()
    assert 0.05 < behind < 0.5 and 0.1 < expected_seen.double().mean() < 0.9
    assert torch.equal(seen.reshape(2, 2, 3, -1).bool(), expected_seen)


def test_a_cost_volume_of_smaller_images_than_the_target_is_sampled_at_its_own_scale():
    """Inputs of another size than the targets: the features are sampled in normalised image
    coordinates, so a view downsampled by 2 gives the same costs up to resampling."""
    size = 64
    sources = [plane_camera(x, size) for x in (-0.6, 0.6)]
    images = torch.stack([textured_plane_view(c)[0] for c in sources])
    target = plane_camera(0.0, size)
    target = Cameras(target.intrinsics[None, None], target.c2w[None, None], size, size).resize(16, 16)
    planes = inverse_depth_planes(1.5, 8.0, 6).double()
    full = torch.cat([torch.zeros(2, 4, size, size, dtype=torch.float64), images], 1)[None, None]
    half = F.interpolate(full[0, 0], scale_factor=0.5, mode="area")[None, None]
    small = [c.resize(size // 2, size // 2) for c in sources]
    a = matching_costs(full, _stack(sources), target, planes)
    b = matching_costs(half, _stack(small), target, planes)
    both = (a[..., GROUPS + 1, :, :] * b[..., GROUPS + 1, :, :]).bool()
    colour_a, colour_b = a[..., GROUPS, :, :][both], b[..., GROUPS, :, :][both]
    assert both.double().mean() > 0.5 and colour_a.max() > 0.05
    assert (colour_a - colour_b).abs().max() < 0.05 * colour_a.max(), ((colour_a - colour_b).abs().max(), colour_a.max())


def test_degrade_blurs_and_shifts_the_chosen_images_only():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16)
    assert degrade(images, 0.0) is images
    out = degrade(images, 0.5)
    changed = (out - images).flatten(1).abs().amax(dim=1) > 0
    assert 16 < changed.sum() < 48  # about half, at random
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[~changed], images[~changed])
    flat = torch.full((8, 3, 16, 16), 0.5)
    shifted = degrade(flat, 1.0)
    assert (shifted.std(dim=(2, 3)) < 1e-6).all()  # a blur leaves flat colour flat; the shift is one per channel
    assert ((shifted - 0.5).abs().amax(dim=(2, 3)) <= 0.5 * 0.15 + 0.08 + 1e-6).all()
    assert (shifted - 0.5).abs().amax() > 0.01


def test_only_a_training_sweep_sees_a_degraded_decoded_colour():
    model = _sweep_model()
    images, cams, targets = ring_scene()
    decoded = torch.rand(1, 2, 3, 32, 32)
    sweep = model.sweep.eval()
    sweep.degrade_probability = 1.0
    with torch.no_grad():
        clean = sweep(decoded, targets, images, cams)
        sweep.train()
        torch.manual_seed(1)
        trained = sweep(decoded, targets, images, cams)
        sweep.degrade_probability = 0.0
        undegraded = sweep(decoded, targets, images, cams)
    assert torch.allclose(undegraded, clean, atol=1e-6)
    assert (trained - clean).abs().max() > 1e-3


def test_a_sweep_after_a_view_blending_head_blends_that_heads_output():
    model = _sweep_model(view_blend=2)
    head_only = without_head(model, "sweep", tiny_config(view_blend=2))
    images, cams, targets = ring_scene()
    with torch.no_grad():
        first = head_only(images, cams, targets)
        out, extras = model(images, cams, targets, with_samples=True)
    assert len(extras) == 5 and extras[3].shape == (1, 2, 8, 16, 16)  # the sweep's, with its plane logits and planes
    fixed = torch.tensor([0.0] + [SAMPLE_LOGIT_INIT] * 2).view(1, 1, 3, 1, 1).expand(1, 2, 3, 32, 32)
    assert torch.allclose(out, blend(first, extras[0], extras[1], fixed), atol=1e-6)


def test_the_official_layout_refuses_a_plane_sweep(tmp_path):
    from nvs.models import CheckpointError
    from nvs.models.checkpoint import save_official_checkpoint

    with pytest.raises(CheckpointError, match="no plane sweep"):
        save_official_checkpoint(_sweep_model(), tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_with_fewer_inputs_than_k_the_spare_slots_take_no_part():
    """One input view and k = 2: no pixel has two views to match, and the spare slot's samples
    are invalid, so the blend is the decoded colour and the one photo."""
    model = _sweep_model()
    images, cams = torch.rand(1, 1, 3, 32, 32), ring_cameras(1, 1)
    targets = ring_cameras(1, 2, offset=0.3)
    features = model.sweep.source_features(images)[:, None].expand(1, 2, 1, -1, -1, -1)
    spare = torch.cat([features, features], dim=2)
    chosen = Cameras(cams.intrinsics[:, None].expand(1, 2, 1, 4).repeat(1, 1, 2, 1),
                     cams.c2w[:, None].expand(1, 2, 1, 4, 4).repeat(1, 1, 2, 1, 1), 32, 32)
    present = torch.tensor([True, False]).expand(1, 2, 2)
    costs = matching_costs(spare, chosen, targets.resize(16, 16), model.sweep.inverse_depths(), present)
    assert not costs[:, :, :, GROUPS + 1].any() and not costs[:, :, :, :GROUPS + 1].any()
    with torch.no_grad():
        _, (samples, valid, depth, _, _) = model(images, cams, targets, with_samples=True)
    assert valid[:, :, 0].any() and not valid[:, :, 1].any()


def test_a_float64_sweep_renders_in_float64():
    model = _sweep_model().double()
    images, cams = torch.rand(1, 3, 3, 32, 32, dtype=torch.float64), ring_cameras(1, 3).to(torch.float64)
    with torch.no_grad():
        out = model(images, cams, ring_cameras(1, 2, offset=0.3).to(torch.float64))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_a_sweep_over_the_inputs_range_sweeps_each_scene_between_its_own_points():
    """sweep_range "inputs": a scene of a textured plane is swept between the distances of its
    triangulated points, exactly as a fixed sweep over that range would; a scene without texture
    falls back to the fixed range."""
    from nvs.geometry.depth_range import depth_range, sparse_points
    from tests.helpers import line_of_cameras, noise_plane_views

    model = _sweep_model(sweep_range="inputs")
    cams = line_of_cameras(4, 48)
    textured, _ = noise_plane_views(cams, [(PLANE_Z, math.inf)])
    images = torch.stack([textured, torch.full_like(textured, 0.5)])
    batch_cams = Cameras(cams.intrinsics.float().expand(2, 4, 4), cams.c2w.float().expand(2, 4, 4, 4), 48, 48)
    targets = batch_cams[:, 1:3]
    targets = Cameras(targets.intrinsics, targets.c2w.clone(), 48, 48)
    targets.c2w[..., 1, 3] += 0.2
    found = depth_range(sparse_points(textured, cams), cams)
    assert found is not None and found[0] < PLANE_Z < found[1]
    with torch.no_grad():
        state = model.memorize(images, batch_cams)
        torch.testing.assert_close(state.sweep_ranges, torch.tensor([found, (1.0, 4.0)]))
        out = model.render(state, targets)
        _, extras = model(images, batch_cams, targets, with_samples=True)
        fixed = _sweep_model(sweep_near=found[0], sweep_far=found[1])
        alone = fixed.render(fixed.memorize(images[:1], batch_cams[:1]), targets[:1])
    torch.testing.assert_close(extras[4][0], inverse_depth_planes(*found, 8))
    torch.testing.assert_close(out[:1], alone)
    assert _sweep_model().memorize(images, batch_cams).sweep_ranges is None  # the fixed range needs none


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
def test_what_a_renderer_reads_off_its_inputs_on_cuda_matches_the_cpu():
    """The matching runs in OpenCV on the CPU whatever the model's device; the ranges, the gains
    and the matched photos come back on the images' device and equal the CPU's."""
    from tests.helpers import line_of_cameras, noise_plane_views

    model = _sweep_model(sweep_range="inputs", match_exposure=True)
    cams = line_of_cameras(4, 48)
    textured, _ = noise_plane_views(cams, [(PLANE_Z, math.inf)])
    batch_cams = Cameras(cams.intrinsics.float()[None], cams.c2w.float()[None], 48, 48)
    want = model.read_inputs(textured[None], batch_cams)
    got = model.cuda().read_inputs(textured[None].cuda(), batch_cams.to("cuda"))
    for a, b in zip(got, want):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), b)


def test_sweep_range_must_be_fixed_or_inputs():
    with pytest.raises(ValueError, match="'sweep_range' must be one of"):
        tiny_config(sweep_views=2, sweep_range="points")


def test_the_silhouettes_support_the_objects_surface_and_carve_most_of_the_background(monkeypatch):
    """Eight views of a procedural object on white: where each target pixel's ray meets its true
    surface, every view's silhouette supports the point; most background rays meet no supported
    point. Sampling the views a few at a time gives the same support."""
    from nvs.datasets.procedural import object_scene

    planes = plane_sweep.inverse_depth_planes(1.2, 4.5, 96)
    for seed in (3, 4):
        scene = object_scene(seed, 12, 64, 64)
        targets = scene.cameras[8:].unsqueeze(0)
        masks = silhouettes(scene.images[None, :8])
        assert masks.shape == (1, 8, 1, 64, 64) and set(masks.unique().tolist()) == {0.0, 1.0}
        support = hull_support(masks, scene.cameras[:8].unsqueeze(0), targets, planes)[0]  # [T, D, H, W]
        z = scene.depth[8:, 0]
        _, rays = pixel_rays(targets)
        distance = z / (rays[0] * targets.c2w[0, :, :3, 2, None, None]).sum(1)  # z-depth -> along the unit ray
        true_plane = (planes[None, :, None, None] - 1.0 / distance[:, None]).abs().argmin(1, keepdim=True)
        on_object = torch.isfinite(z)
        at_surface = support.gather(1, true_plane)[:, 0][on_object]
        assert (at_surface >= 0.99).float().mean() > 0.97
        assert (support.amax(1)[~on_object] < 0.5).float().mean() > 0.6
    monkeypatch.setattr(plane_sweep, "HULL_POINTS", 3 * 4 * 96 * 64 * 64)  # three views at a time
    assert torch.equal(hull_support(masks, scene.cameras[:8].unsqueeze(0), targets, planes)[0], support)


def test_points_no_view_sees_are_supported_and_photos_without_white_background_change_nothing(tmp_path):
    """The hull only carves with silhouettes: a point outside every view's frame keeps support 1,
    and photos with no white pixel render exactly as without the setting; with white photos, a
    pixel whose ray meets no supported point renders white. sweep_hull is a checked setting."""
    images, cams, targets = ring_scene(1, 4, 2, size=32)
    behind = Cameras(targets.intrinsics, targets.c2w.clone(), 32, 32)
    behind.c2w[..., :3, 3] *= 40.0  # far outside: its rays' points near it lie in no view's frame
    support = hull_support(torch.zeros(1, 4, 1, 32, 32), cams, behind, torch.tensor([1.0 / 0.5]))
    assert torch.equal(support, torch.ones_like(support))
    model = _sweep_model()
    hulled = _sweep_model(sweep_hull=10.0)
    dark = images * 0.9  # a background, with a white highlight in the middle of one photo
    dark[:, 0, :, 10:16, 10:16] = 1.0
    with torch.no_grad():
        assert torch.equal(model.render(model.memorize(dark, cams), targets),
                           hulled.render(hulled.memorize(dark, cams), targets))
        white = torch.ones_like(images)
        white[..., 12:20, 12:20] = 0.3  # a small dark square in the middle of white photos
        out = hulled.render(hulled.memorize(white, cams), targets)
        two_cams = Cameras(torch.cat([cams.intrinsics] * 2), torch.cat([cams.c2w] * 2), 32, 32)
        two_targets = Cameras(torch.cat([targets.intrinsics] * 2), torch.cat([targets.c2w] * 2), 32, 32)
        both = hulled.render(hulled.memorize(torch.cat([dark, white]), two_cams), two_targets)
        assert torch.equal(both[:1], model.render(model.memorize(dark, cams), targets))  # a batch carves scene by scene
        assert torch.allclose(both[1:], out, atol=1e-5)
        half = targets.resize(16, 16)
        carved = hull_support(silhouettes(white), cams, half, hulled.sweep.inverse_depths()).amax(2) == 0
        carved = F.interpolate(carved[:, :, None].float().flatten(0, 1), size=(32, 32)).unflatten(0, (1, 2))
        inner = F.max_pool2d(1 - carved.flatten(0, 1), 3, 1, 1).unflatten(0, (1, 2)) == 0  # away from the edge
        assert inner.any() and torch.equal(out.expand(-1, -1, 3, -1, -1)[inner.expand_as(out)],
                                           torch.ones_like(out)[inner.expand_as(out)])
    path = save_renderer(hulled, tmp_path / "h.safetensors")
    assert load_renderer(path).sweep.hull_weight == 10.0 and model.sweep.hull_weight == 0.0
    for value in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="sweep_hull"):
            ModelConfig(sweep_hull=value)


def _ring_depth(sweep: PlaneSweepBlend, support: torch.Tensor | None) -> torch.Tensor:
    """The sweep's depth [1, 2, 1, 32, 32] for two targets of ring_scene(1, 4, 2) at 32x32, each
    matched over two views, with a plane support [1, 2, D, 16, 16] (or none)."""
    images, cams, targets = ring_scene(1, 4, 2, size=32)
    index = torch.tensor([[[0, 1], [1, 2]]])
    features = sweep.source_features(images)
    chosen = Cameras(cams.intrinsics[0][index], cams.c2w[0][index], 32, 32)
    with torch.no_grad():
        return sweep.depth(targets, features[0][index], chosen, sweep.inverse_depths(), support=support)[0]


def test_the_silhouettes_take_their_weight_off_the_planes_they_do_not_support():
    """With one plane supported everywhere and a large weight, the sweep's depth is that plane's."""
    sweep = _sweep_model(sweep_hull=1000.0).sweep
    planes = sweep.inverse_depths()
    support = torch.zeros(1, 2, 8, 16, 16)
    support[:, :, 5] = 1.0
    depth, free = _ring_depth(sweep, support), _ring_depth(sweep, None)
    assert torch.allclose(depth, torch.full_like(depth, 1.0 / float(planes[5])), rtol=1e-4)
    assert not torch.allclose(free, depth, rtol=1e-2)


def test_behind_hull_entry_counts_the_planes_behind_the_first_supported_one():
    """0 up to and at a ray's first supported plane (and on rays that miss the hull), then one
    more plane's share of D per plane behind it, whatever the support further back."""
    support = torch.zeros(1, 1, 4, 1, 3)
    support[0, 0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.2, 1.0])  # enters at plane 1, leaves, comes back
    support[0, 0, :, 0, 1] = torch.tensor([0.9, 0.0, 0.0, 0.0])  # enters at once
    behind = behind_hull_entry(support)[0, 0, :, 0]
    assert torch.equal(behind[:, 0], torch.tensor([0.0, 0.0, 0.25, 0.5]))
    assert torch.equal(behind[:, 1], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert torch.equal(behind[:, 2], torch.zeros(4))  # a ray that misses the hull


def test_the_front_prior_moves_a_thick_hull_to_the_surface_the_ray_meets_first(tmp_path):
    """Planes 3-6 all supported, as inside a solid object: without the prior the depth is somewhere
    in them, with a large one it is the first. sweep_front is a checked setting kept by checkpoints."""
    model = _sweep_model(sweep_hull=1000.0, sweep_front=1000.0)
    sweep = model.sweep
    planes = sweep.inverse_depths()
    support = torch.zeros(1, 2, 8, 16, 16)
    support[:, :, 3:7] = 1.0
    front = _ring_depth(sweep, support)
    sweep.front_weight = 0.0
    free = _ring_depth(sweep, support)
    assert torch.allclose(front, torch.full_like(front, 1.0 / float(planes[3])), rtol=1e-4)
    assert not torch.allclose(free, front, rtol=1e-2)
    assert float(free.min()) >= 1.0 / float(planes[3]) * (1 - 1e-4)  # the hull alone keeps it inside
    path = save_renderer(model, tmp_path / "f.safetensors")
    assert load_renderer(path).sweep.front_weight == 1000.0
    for value in (-1.0, float("nan"), True, 1e4):
        with pytest.raises(ValueError, match="sweep_front"):
            ModelConfig(sweep_front=value)


def test_white_seen_at_another_exposure_is_still_background_and_a_dark_backdrop_is_not():
    """Photos of an object on white, each with its own channel gains (0.8-1.0), give the same
    silhouettes, and so the same hull, as the photos at one exposure; a dark backdrop's pixels,
    however uniform, are all foreground, so such a photo never carves."""
    from nvs.datasets.procedural import object_scene

    scene = object_scene(3, 8, 64, 64)
    gains = torch.tensor([[1.0, 1.0, 1.0], [0.85, 0.9, 1.0], [0.8, 0.8, 0.8], [1.0, 0.95, 0.82]] * 2)
    dimmed = scene.images * gains[:, :, None, None]
    assert torch.allclose(background_colours(dimmed[None])[0], gains, atol=1e-6)
    same = silhouettes(scene.images[None])
    assert torch.equal(silhouettes(dimmed[None]), same) and carving_views(same).all()
    against_white = carving_views(silhouettes(dimmed[None], torch.ones(1, 8, 3)))[0]
    assert against_white.tolist() == [True, False, False, False] * 2  # pure white: the dimmed photos carve nothing
    dark = torch.full((1, 1, 3, 16, 16), 0.1)
    dark[..., 4:12, 4:12] = 0.6
    assert torch.equal(background_colours(dark), torch.ones(1, 1, 3))
    assert silhouettes(dark).min() == 1.0 and not carving_views(silhouettes(dark)).any()


def test_photos_on_a_dimmer_or_tinted_backdrop_render_as_on_white_then_tinted_back():
    """With backdrop_white, photos of an object on white each taken at its own exposure and white
    balance (channel gains up to 1) are read as the photos on white, and the renders, joint or
    memorised, are the renders of those, times the brightest backdrop per channel. Without it,
    they differ. backdrop_white is a checked setting."""
    from nvs.datasets.procedural import object_scene

    model = _sweep_model(sweep_near=1.2, sweep_far=4.5, sweep_hull=10.0, sweep_front=10.0, backdrop_white=True)
    scene = object_scene(3, 6, 32, 32)
    images, cams = scene.images[None, :4], scene.cameras[:4].unsqueeze(0)
    targets = scene.cameras[4:].unsqueeze(0)
    gains = torch.tensor([[1.0, 1.0, 1.0], [0.85, 0.9, 0.95], [0.8, 0.8, 0.8], [0.9, 0.95, 0.82]])
    dimmed = images * gains[:, :, None, None]
    brightest = gains.amax(0)[None, None, :, None, None]
    plain = _sweep_model(sweep_near=1.2, sweep_far=4.5, sweep_hull=10.0, sweep_front=10.0)
    with torch.no_grad():
        want = model.render(model.memorize(images, cams), targets)
        assert torch.allclose(model.render(model.memorize(dimmed, cams), targets), want * brightest, atol=1e-4)
        assert torch.allclose(model(dimmed, cams, targets), want * brightest, atol=1e-4)
        assert torch.equal(want, plain.render(plain.memorize(images, cams), targets))  # on white: no change
        assert not torch.allclose(plain.render(plain.memorize(dimmed, cams), targets), want * brightest, atol=1e-2)
    with pytest.raises(ValueError, match="choose one"):
        tiny_config(sweep_views=2, sweep_hull=10.0, backdrop_white=True, match_exposure=True)
    with pytest.raises(ValueError, match="backdrop_white needs"):
        tiny_config(sweep_views=2, backdrop_white=True)


def _cameras_along_x(xs: list[float], size: int, focal: float) -> Cameras:
    """[1, V] cameras at (x, 0, 0) looking along +z with a focal length of ``focal`` pixels (float64)."""
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(xs), 1, 1)
    c2w[:, 0, 3] = torch.tensor(xs, dtype=torch.float64)
    intrinsics = torch.tensor([focal, focal, size / 2, size / 2], dtype=torch.float64).repeat(len(xs), 1)
    return Cameras(intrinsics[None], c2w[None], size, size)


def test_plane_steps_are_the_pixels_between_neighbouring_planes_in_the_nearest_other_view():
    """Two cameras b apart with focal length f see a point at distance d on a ray near the axis at
    disparities f b / d: over D planes uniform in inverse depth from n to m the step is
    f b (1/n - 1/m) / (D - 1) (the rays off the axis, here at most 13 deg, add up to 2.6%). It
    doubles with the resolution and with the baseline; a view looking away, or a single view, steps 0."""
    planes = inverse_depth_planes(1.0, 4.0, 7).double()
    expected = 200.0 * 0.2 * (1.0 - 0.25) / 6
    steps = plane_sweep.plane_steps(_cameras_along_x([0.0, 0.2], 64, 200.0), planes)
    assert steps.shape == (1,) and expected <= steps.item() <= 1.026 * expected
    torch.testing.assert_close(plane_sweep.plane_steps(_cameras_along_x([0.0, 0.2], 128, 400.0), planes), 2 * steps, rtol=5e-3, atol=0)
    # a third camera 0.4 further: two views' nearest other is 0.2 away, one's 0.4: the median is near the first
    three = plane_sweep.plane_steps(_cameras_along_x([0.0, 0.2, 0.6], 64, 200.0), planes)
    assert steps.item() <= three.item() <= 1.02 * steps.item()
    wide = plane_sweep.plane_steps(_cameras_along_x([0.0, 0.4], 64, 200.0), planes.expand(1, -1))
    torch.testing.assert_close(wide, 2 * steps, rtol=1e-3, atol=0)
    away = _cameras_along_x([0.0, 0.2], 64, 200.0)
    away.c2w[0, 1, :3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))  # turned to face -z
    assert torch.equal(plane_sweep.plane_steps(away, planes), torch.zeros(1))
    assert torch.equal(plane_sweep.plane_steps(_cameras_along_x([0.0], 64, 200.0), planes), torch.zeros(1))


def test_the_sweep_halves_until_its_planes_lie_max_step_pixels_apart():
    """The cost volume is at half the photos' resolution, so a step of s photo pixels is s / 2 there;
    each halving halves it, up to MAX_OCTAVES times and down to MIN_OCTAVE_SIZE pixels; the batch's
    widest step decides; max_step 0 never halves."""
    octave = plane_sweep.sweep_octave
    assert octave(torch.tensor([1.0, 6.0]), 1.5, (480, 640)) == 1
    assert octave(torch.tensor([6.1]), 1.5, (480, 640)) == 2
    assert octave(torch.tensor([3.0]), 1.5, (480, 640)) == 0
    assert octave(torch.tensor([1e4]), 1.5, (4096, 4096)) == plane_sweep.MAX_OCTAVES
    assert octave(torch.tensor([1e4]), 1.5, (2 * plane_sweep.MIN_OCTAVE_SIZE, 640)) == 1
    assert octave(torch.tensor([1e4]), 0.0, (480, 640)) == 0
    images = torch.rand(2, 3, 3, 24, 40)
    torch.testing.assert_close(plane_sweep.halve(images, 2), F.avg_pool2d(images.flatten(0, 1), 4).unflatten(0, (2, 3)))
    assert plane_sweep.halve(images, 0) is images


def test_a_scene_with_far_apart_photos_is_swept_on_halved_photos_and_rendered_at_full_size(tmp_path, monkeypatch):
    """With sweep_max_step below the ring's steps, memorise reads the photos' features once, halved
    (once: MIN_OCTAVE_SIZE stops it at 64 pixels), the planes are scored at a quarter of the
    target's size, the silhouettes' support at the same, and the photos sampled at full size; a
    render from the kept features (which measures no steps again) equals one that reads them
    again. A max_step above every step changes nothing, and the setting is saved with the checkpoint."""
    torch.manual_seed(0)
    images, cams, targets = ring_scene(1, 4, 2, size=64)
    images[..., :6, :] = 1.0  # a white border: the silhouettes carve
    model = _sweep_model(sweep_hull=1.0, sweep_coarse=0.5, sweep_coarse_levels=2)
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
        reference = model.render(model.memorize(images, cams), targets)
        assert plane_sweep.plane_steps(cams, model.sweep.inverse_depths()).item() > 4.0
        model.use_reading_settings(dataclasses.replace(model.config, sweep_max_step=1e3))
        assert model.memorize(images, cams).sweep_features.octave == 0
        torch.testing.assert_close(model.render(model.memorize(images, cams), targets), reference, atol=0, rtol=0)
        model.use_reading_settings(dataclasses.replace(model.config, sweep_max_step=0.5))
        state = model.memorize(images, cams)
        assert state.sweep_features.octave == 1 and state.sweep_features.fine.shape[-2:] == (16, 16)
        assert [level.shape[-1] for level in state.sweep_features.coarse] == [8, 4]
        grouped = model.sweep.photo_features(images, cams, views_at_once=3)  # as memorising in chunks reads them
        assert grouped.octave == 1 and grouped.max_step == 0.5
        torch.testing.assert_close(grouped.fine, state.sweep_features.fine, atol=1e-6, rtol=0)
        measured = []
        plane_steps = plane_sweep.plane_steps
        monkeypatch.setattr(plane_sweep, "plane_steps", lambda *a: measured.append(1) or plane_steps(*a))
        halved = model.render(state, targets)
        assert not measured
        assert halved.shape == reference.shape and not torch.allclose(halved, reference)
        torch.testing.assert_close(model.render(dataclasses.replace(state, sweep_features=None), targets), halved,
                                   atol=0, rtol=0)
        assert measured
        decoded = torch.rand(1, 2, 3, 64, 64)
        _, (samples, _, depth, logits, _) = model.sweep(decoded, targets, images, cams, with_samples=True)
        assert logits.shape[-2:] == (16, 16) and depth.shape[-2:] == samples.shape[-2:] == (64, 64)
    path = save_renderer(model, tmp_path / "s.safetensors")
    assert load_renderer(path).sweep.max_step == 0.5


def test_with_sweep_refine_the_photos_are_sampled_at_the_refined_depth(tmp_path, monkeypatch):
    """sweep_refine w hands the upsampled depth, the expected inverse depth of the plane scores and
    the k chosen photos to depth_refine.refine_depth with window w and the sweep's octave; the
    blend samples the photos at what it returns. Off, it is never called; the setting
    is saved with the checkpoint, and gradients still reach the scorer through the refined depth."""
    images, cams, targets = ring_scene(1, 4, 2, size=32)
    model = _sweep_model()
    calls = []
    refine = plane_sweep.refine_depth

    def spy(depth, inverse, photos, chosen, target_cams, window, present, octave):
        calls.append((depth, inverse, photos.shape, window, octave))
        refined = refine(depth, inverse, photos, chosen, target_cams, window, present, octave)
        calls[-1] += (refined,)
        return refined

    monkeypatch.setattr(plane_sweep, "refine_depth", spy)
    decoded = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        _, (_, _, plain_depth, _, _) = model.sweep(decoded, targets, images, cams, with_samples=True)
        assert not calls
        model.use_reading_settings(dataclasses.replace(model.config, sweep_refine=3))
        _, (samples, _, depth, logits, planes) = model.sweep(decoded, targets, images, cams, with_samples=True)
    (upsampled, inverse, photos_shape, window, octave, refined), = calls
    assert window == 3 and octave == 0 and photos_shape == (1, 2, 2, 3, 32, 32)
    torch.testing.assert_close(upsampled, plain_depth, atol=0, rtol=0)
    torch.testing.assert_close(inverse, plane_sweep.expected_inverse_depth(logits, planes), atol=0, rtol=0)
    assert depth is refined and samples.shape == (1, 2, 2, 3, 32, 32)
    path = save_renderer(model, tmp_path / "refine.safetensors")
    assert load_renderer(path).sweep.refine_window == 3
    model.train()
    model(images, cams, targets).square().mean().backward()
    assert sum(p.grad.abs().sum() for p in model.sweep.scorer.parameters()) > 0


def test_with_sweep_depth_views_only_the_nearest_views_find_the_depth_and_all_are_blended(tmp_path):
    """sweep_depth_views m: the plane scores of every level (so the depth) come from the m nearest
    of the k views, so that another photo in the farthest view changes neither, while the blend
    still samples it where it sees the point and mixes all k; with 0 (all k) that photo moves the
    scores. The setting must lie in [2, k] and is saved with the checkpoint."""
    images, cams, targets = ring_scene(1, 4, 1, size=32)
    model = _sweep_model(sweep_views=3, sweep_coarse=1.0, sweep_coarse_levels=2, sweep_zncc=1.0)
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
    farthest = int(nearest_views(cams, targets, 3)[0, 0, 2])
    other = images.clone()
    other[:, farthest] = torch.rand_like(other[:, farthest])
    decoded = torch.rand(1, 1, 3, 32, 32)

    def sweep(photos):
        with torch.no_grad():
            out, (samples, valid, depth, logits, _) = model.sweep(decoded, targets, photos, cams, with_samples=True)
        return out, samples, valid, depth, logits

    logits_all = sweep(images)[4]
    assert not torch.allclose(sweep(other)[4], logits_all)
    model.use_reading_settings(dataclasses.replace(model.config, sweep_depth_views=2))
    out, samples, valid, depth, logits = sweep(images)
    other_out, other_samples, _, other_depth, other_logits = sweep(other)
    torch.testing.assert_close(other_logits, logits, atol=0, rtol=0)
    torch.testing.assert_close(other_depth, depth, atol=0, rtol=0)
    assert samples.shape[2] == 3 and valid[:, :, 2].float().mean() > 0.5
    seen = valid[:, :, 2].expand_as(samples[:, :, 2])
    assert not torch.allclose(other_samples[:, :, 2][seen], samples[:, :, 2][seen])
    assert not torch.allclose(other_out, out)
    assert not torch.allclose(logits, logits_all)
    assert load_renderer(save_renderer(model, tmp_path / "m.safetensors")).sweep.depth_views == 2
    with pytest.raises(ValueError, match="sweep_depth_views' must be 0 or a whole number from 2 to sweep_views \\(3\\)"):
        model.use_reading_settings(dataclasses.replace(model.config, sweep_depth_views=4))


def test_prior_distance_shifts_the_prior_to_the_sweeps_scale_and_spares_planes_within_its_tolerance():
    """Where the photos pin a plane down (a sharp score) and where they match on every plane (a flat
    one), a prior twice too deep everywhere is first shifted onto the confident pixels' plane: on
    the flat pixels that plane then wins, and on the sharp ones it stays. Planes within
    PRIOR_TOLERANCE of the shifted prior lose nothing."""
    planes = plane_sweep.inverse_depth_planes(1.0, 8.0, 16)
    true_plane = 5
    logits = torch.zeros(1, 1, 16, 4, 8)
    logits[..., :6] = -4.0
    logits[:, :, true_plane, :, :6] = 4.0  # the left three quarters match on one plane, the rest on any
    prior = torch.full((1, 1, 1, 8, 16), 2.0 / float(planes[true_plane]))
    distance = plane_sweep.prior_distance(prior, logits, planes)
    assert distance.shape == logits.shape
    log_planes = -planes.log()
    near = (log_planes - log_planes[true_plane]).abs() <= plane_sweep.PRIOR_TOLERANCE
    assert torch.all(distance[0, 0][near] == 0) and torch.all(distance[0, 0][~near] > 0)
    torch.testing.assert_close(plane_sweep.prior_distance(prior * 3.0, logits, planes), distance)  # nor does its scale
    chosen = (logits - 6.0 * distance).argmax(dim=2)
    assert torch.all((log_planes[chosen] - log_planes[true_plane]).abs() <= plane_sweep.PRIOR_TOLERANCE)
    assert torch.all(chosen[..., :6] == true_plane)


def test_prior_distance_of_a_batch_is_each_targets_own():
    """Scenes [B] with their own planes [B, D] and targets [T] (D unlike T and B): each target's
    shift and distances are what it gets alone."""
    torch.manual_seed(0)
    planes = torch.stack([plane_sweep.inverse_depth_planes(1.0, 8.0, 5), plane_sweep.inverse_depth_planes(0.5, 3.0, 5)])
    logits = torch.randn(2, 3, 5, 4, 6) * 3.0
    prior = torch.rand(2, 3, 1, 8, 12) * 4.0 + 0.5
    batch = plane_sweep.prior_distance(prior, logits, planes)
    assert batch.shape == logits.shape
    for b in range(2):
        for t in range(3):
            alone = plane_sweep.prior_distance(prior[b : b + 1, t : t + 1], logits[b : b + 1, t : t + 1], planes[b : b + 1])
            torch.testing.assert_close(batch[b : b + 1, t : t + 1], alone)


def test_the_head_prior_moves_the_sweeps_depth_reaches_a_turn_ensembles_sweep_and_is_a_setting(tmp_path):
    """sweep_head_prior w: the sweep after a view-blending head reads the head's depth (a fourth
    channel of the colour before the sweep, which a turn ensemble passes on from the median of its
    turns), also when training on several scenes and targets at once, where no gradient reaches
    the head through it; 0 renders as before; a renderer without such a head refuses it."""
    images, cams, targets = ring_scene(1, 4, 2, size=32)
    model = _sweep_model(view_blend=2)
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
        plain = model(images, cams, targets)
        assert model.render(model.memorize(images, cams), targets, sweep=False).shape[2] == 3
        model.use_reading_settings(dataclasses.replace(model.config, sweep_head_prior=20.0))
        primed = model(images, cams, targets)
        before = model.render(model.memorize(images, cams), targets, sweep=False)
        ensemble = TurnEnsemble(model, 2)
        turned = ensemble(images, cams, targets)
        copies = torch.stack([model.render(model.memorize(images, turn_about_z(cams, a)), turn_about_z(targets, a),
                                           sweep=False) for a in ensemble.angles]).median(0).values
        once = model.sweep(copies[:, :, :3], targets, images, cams, prior_depth=copies[:, :, 3:])
    assert before.shape[2] == 4 and torch.all(before[:, :, 3] > 0)
    assert not torch.allclose(plain, primed)
    torch.testing.assert_close(turned, once)
    assert load_renderer(save_renderer(model, tmp_path / "m.safetensors")).sweep.prior_weight == 20.0
    images2, cams2, targets2 = ring_scene(2, 4, 3, size=32)
    out, extras = model(images2, cams2, targets2, with_samples=True)
    assert out.shape == (2, 3, 3, 32, 32) and extras[3].shape[:3] == (2, 3, 8)
    extras[3].logsumexp(dim=2).mean().backward()  # the plane scores: the photos' and the prior's
    assert model.view_blend.proj.weight.grad is None and model.sweep.scorer[0].weight.grad.abs().sum() > 0
    model.use_reading_settings(dataclasses.replace(model.config, sweep_head_prior=0.0))
    with torch.no_grad():
        torch.testing.assert_close(model(images, cams, targets), plain)
    with pytest.raises(ValueError, match="sweep_head_prior needs a plane sweep after a view-blending head"):
        _sweep_model(sweep_head_prior=1.0)
    with pytest.raises(ValueError, match="sweep_head_prior' must be a number in \\[0, 1000\\]"):
        _sweep_model(view_blend=2, sweep_head_prior=-1.0)
