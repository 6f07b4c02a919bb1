import math

import pytest
import torch

from nvs.cameras import Cameras, pixel_rays
from nvs.models import LaCTRenderer, ModelConfig, load_renderer, save_renderer
from nvs.models.view_blend import (MIN_VIEW_DEPTH, SAMPLE_LOGIT_INIT, ViewBlendHead, blend, depth_loss, gather_views,
                                   inside_frame, nearest_views, rays_in_views, warp_loss, warp_views)

from tests.helpers import PLANE_Z, plane_camera as _camera, ring_cameras, ring_scene, tiny_config, without_head
from tests.helpers import textured_plane_view as _plane_view


def test_inside_frame_keeps_the_edges_and_refuses_nan():
    grid = torch.tensor([[0.0, 0.0], [1.0, -1.0], [1.0001, 0.0], [0.0, -1.0001], [float("nan"), 0.0], [0.5, float("inf")]])
    assert inside_frame(grid).tolist() == [True, True, False, False, False, False]
    many = torch.randn(3, 50, 40, 2) * 0.9
    assert torch.equal(inside_frame(many), (many.abs() <= 1.0).all(dim=-1))


def test_warp_with_the_true_depth_reproduces_the_target_view():
    target, source = _camera(0.0), _camera(0.4, yaw_deg=-5)
    target_image, depth = _plane_view(target)
    source_image, _ = _plane_view(source)
    views = source_image[None, None, None]  # [B, T, k, 3, H, W]
    view_cams = Cameras(source.intrinsics[None, None, None], source.c2w[None, None, None], 48, 48)
    samples, valid = warp_views(views, view_cams, target.unsqueeze(0).unsqueeze(0), depth[None, None])
    seen = valid[0, 0, 0, 0]
    assert 0.6 < seen.double().mean() < 1.0  # the shifted view misses part of the target's field
    error = (samples[0, 0, 0] - target_image).abs()[:, seen]
    # bilinear sampling of a smooth texture; the outer half-pixel ring of the view clamps to its border
    assert error.mean() < 2e-3 and error.quantile(0.98) < 0.01 and error.max() < 0.05, error.max()
    wrong, _ = warp_views(views, view_cams, target.unsqueeze(0).unsqueeze(0), 0.5 * depth[None, None])
    assert (wrong[0, 0, 0] - target_image).abs()[:, seen].mean() > 10 * error.mean()
    targets = target.unsqueeze(0).unsqueeze(0)  # the rays passed in, as a caller warping at several depths does
    again, _ = warp_views(views, view_cams, targets, 0.5 * depth[None, None],
                          rays_in_views(view_cams, targets, depth.dtype))
    assert torch.equal(again, wrong)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_warp_projects_as_the_cameras_do(dtype):
    """The closed form (each target's centre and rays in each view's frame) lands where
    Cameras.project puts each surface point, and finds the same points in front and inside: two
    targets with their own three views each, the views 40x56 with fx != fy and off-centre
    principal points, one view mostly seeing the plane, one partly, one with the plane behind it
    (whose mirrored points would land inside)."""
    torch.manual_seed(0)
    targets = Cameras.cat([_camera(0.0).unsqueeze(0), _camera(0.1, yaw_deg=3.0).unsqueeze(0)]).unsqueeze(0)  # [1, 2]
    beyond = _camera(0.0)
    beyond.c2w[2, 3] = PLANE_Z + 0.5  # the plane lies 0.5 behind it
    views = [_camera(0.4, yaw_deg=-5.0), _camera(-0.3, yaw_deg=35.0), beyond]
    order = [[0, 1, 2], [1, 2, 0]]  # the second target's views in another order
    intrinsics = torch.stack([torch.stack([views[v].intrinsics for v in row]) for row in order])[None]
    intrinsics = intrinsics * torch.tensor([1.1, 0.8, 1.15, 0.85], dtype=torch.float64) + torch.tensor(
        [0.0, 0.0, 1.5, -2.0], dtype=torch.float64)  # 48x48 -> 56 wide, 40 high, fx != fy, centres off
    c2w = torch.stack([torch.stack([views[v].c2w for v in row]) for row in order])[None]
    view_cams = Cameras(intrinsics, c2w, 40, 56)  # [1, 2, 3]
    _, depth = _plane_view(targets)  # [1, 2, 1, 48, 48]
    depth = (depth * (0.9 + 0.2 * torch.rand_like(depth))).to(dtype)  # near the plane
    images = torch.rand(1, 2, 3, 3, 40, 56, dtype=dtype)
    samples, valid = warp_views(images, view_cams.to(dtype), targets.to(dtype), depth)

    origins, dirs = pixel_rays(targets, torch.float64)
    points = (origins + depth.double() * dirs).flatten(-2).transpose(-1, -2)  # [1, 2, HW, 3]
    pixels, z = view_cams.project(points[:, :, None].expand(1, 2, 3, -1, 3))
    grid = pixels / torch.tensor([56.0, 40.0], dtype=torch.float64) * 2.0 - 1.0  # [1, 2, 3, HW, 2]
    expected_valid = (z > MIN_VIEW_DEPTH) & inside_frame(grid)
    expected = torch.nn.functional.grid_sample(images.double().flatten(0, 2), grid.reshape(6, 48, 48, 2),
                                               mode="bilinear", padding_mode="border", align_corners=False)
    valid, expected_valid = valid.reshape(6, 48, 48), expected_valid.reshape(6, 48, 48)
    # [target, view] flattened: 2 and 4 are the camera beyond the plane, which sees none of it
    assert all(0 < valid[n].sum() < 48 * 48 for n in (1, 3)) and valid[[0, 5]].float().mean() > 0.5
    assert not valid[[2, 4]].any()
    if dtype == torch.float64:
        assert torch.equal(valid, expected_valid)
    else:  # float32 may decide differently within a rounding of the frame's edge
        near_edge = ((grid.abs() - 1.0).abs() < 1e-4).any(-1).reshape(6, 48, 48)
        assert torch.equal(valid[~near_edge], expected_valid[~near_edge])
    both = (valid & expected_valid).reshape(6, 1, 48, 48).expand(6, 3, 48, 48)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(samples.reshape(6, 3, 48, 48)[both].double(), expected[both], atol=tolerance)


def test_points_behind_a_view_or_outside_its_image_are_invalid():
    target = _camera(0.0)
    source = _camera(0.0, yaw_deg=180)  # looks the other way: every point on the plane is behind it
    _, depth = _plane_view(target)
    view_cams = Cameras(source.intrinsics[None, None, None], source.c2w[None, None, None], 48, 48)
    images = torch.rand(1, 1, 1, 3, 48, 48, dtype=torch.float64)
    samples, valid = warp_views(images, view_cams, target.unsqueeze(0).unsqueeze(0), depth[None, None])
    assert not valid.any() and torch.isfinite(samples).all()
    on_plane = _camera(0.0)
    on_plane.c2w[2, 3] = PLANE_Z  # every point of the plane lies on this camera's own plane: depth 0
    view_cams = Cameras(on_plane.intrinsics[None, None, None], on_plane.c2w[None, None, None], 48, 48)
    depth = depth[None, None].clone().requires_grad_()
    samples, valid = warp_views(images, view_cams, target.unsqueeze(0).unsqueeze(0), depth)
    samples.sum().backward()
    assert not valid.any() and torch.isfinite(samples).all() and torch.isfinite(depth.grad).all()


def test_nearest_views_weigh_position_and_direction():
    xs = [0.0, 1.0, 2.0, 3.0]
    inputs = Cameras.cat([_camera(x).unsqueeze(0) for x in xs]).unsqueeze(0)  # [1, 4]
    targets = Cameras.cat([_camera(2.2).unsqueeze(0), _camera(0.1, yaw_deg=170).unsqueeze(0)]).unsqueeze(0)
    index = nearest_views(inputs, targets, 2)
    assert index.shape == (1, 2, 2)
    assert index[0, 0].tolist() == [2, 3]
    assert index[0, 1, 0].item() == 0
    assert nearest_views(inputs, targets, 9).shape == (1, 2, 4)  # k is capped at the number of inputs
    images = torch.arange(4, dtype=torch.float64).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    picked, cams = gather_views(images, inputs, index)
    assert picked[0, 0, :, 0, 0, 0].tolist() == [2.0, 3.0] and cams.shape == (1, 2, 2)
    assert torch.equal(cams.c2w[0, 0, 1], inputs.c2w[0, 3])


def test_blend_weights_follow_the_logits_and_drop_invalid_samples():
    decoded = torch.zeros(1, 1, 3, 4, 4)
    samples = torch.stack([torch.full((3, 4, 4), 0.5), torch.ones(3, 4, 4)])[None, None]
    valid = torch.ones(1, 1, 2, 1, 4, 4, dtype=torch.bool)
    logits = torch.tensor([0.0, 0.0, 20.0]).view(1, 1, 3, 1, 1).expand(1, 1, 3, 4, 4)
    assert torch.allclose(blend(decoded, samples, valid, logits), torch.ones(1, 1, 3, 4, 4), atol=1e-6)
    valid[:, :, 1, :, 2, :] = False  # the favoured sample misses at row 2: the other two share it equally
    out = blend(decoded, samples, valid, logits)
    assert torch.allclose(out[..., 2, :], torch.full_like(out[..., 2, :], 0.25))


def _blend_model(**overrides) -> LaCTRenderer:
    torch.manual_seed(0)
    return LaCTRenderer(tiny_config(view_blend=2, **overrides)).eval()


def test_a_new_blending_head_starts_near_the_decoded_colour():
    model = _blend_model()
    plain = without_head(model, "view_blend", tiny_config())
    images, cams, targets = ring_scene()
    with torch.no_grad():
        decoded = plain(images, cams, targets)
        blended = model(images, cams, targets)
    sample_weight = 2 * math.exp(SAMPLE_LOGIT_INIT) / (1 + 2 * math.exp(SAMPLE_LOGIT_INIT))
    assert (blended - decoded).abs().max() <= sample_weight + 1e-6
    assert (blended - decoded).abs().max() > 1e-3


def test_blending_renderer_memorize_render_chunks_and_gradients():
    model = _blend_model()
    images, cams, targets = ring_scene(batch=2, targets=4)
    with torch.no_grad():
        joint = model(images, cams, targets)
        state = model.memorize(images, cams)
        split = model.render(state, targets)
        model.set_memory_budget(2 * 4 * 16 * 32 * 4 + 200_000)
        plan = model.chunk_plan(2, 4, 16)
        assert plan is not None and plan.views < 4
        chunked = model.render(model.memorize(images, cams), targets)
        model.set_memory_budget(None)
    assert state.sources is not None and state.nbytes() > sum(
        t.numel() * t.element_size() for fw in state.layers for t in (fw.w0, fw.w1, fw.w2))
    assert (joint - split).abs().max() < 1e-5 and (joint - chunked).abs().max() < 1e-4
    with torch.no_grad():  # one input view: one sample, two logits
        single = model(images[:, :1], cams[:, :1], targets)
    assert single.shape == joint.shape and torch.isfinite(single).all()
    model.train()
    model(images, cams, targets).square().mean().backward()
    grad = model.view_blend.proj.weight.grad
    depth_rows = grad.view(-1, 4, grad.shape[-1])[:, 0]  # channel 0 of every pixel is the log-depth
    assert grad.abs().sum() > 0 and depth_rows.abs().sum() > 0


def test_view_blend_survives_saving_and_is_checked(tmp_path):
    model = _blend_model()
    save_renderer(model, tmp_path / "blend.safetensors")
    loaded = load_renderer(tmp_path / "blend.safetensors")
    assert loaded.config.view_blend == 2
    assert torch.equal(loaded.view_blend.proj.bias, model.view_blend.proj.bias)
    with pytest.raises(ValueError, match="need arch 'lact'"):
        tiny_config(arch="full_attention", view_blend=2)
    with pytest.raises(ValueError, match="view_blend"):
        ModelConfig(view_blend=-1)


def test_the_warp_loss_reaches_the_depth_when_the_blend_ignores_the_samples():
    model = _blend_model()
    with torch.no_grad():  # every sample weighed at zero: the blend alone gives the depth no gradient
        model.view_blend.proj.bias.view(-1, 4)[:, 2:] = -60.0
    images, cams = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3)
    targets, truth = ring_cameras(1, 2, offset=0.3), torch.rand(1, 2, 3, 32, 32)
    out, (samples, valid, depth) = model.train()(images, cams, targets, with_samples=True)
    assert torch.equal(out, model(images, cams, targets))
    assert samples.shape == (1, 2, 2, 3, 32, 32) and valid.shape == (1, 2, 2, 1, 32, 32) and valid.any()
    depth_bias = model.view_blend.proj.bias
    (out - truth).square().mean().backward(retain_graph=True)
    assert depth_bias.grad.view(-1, 4)[:, 0].abs().max() < 1e-20
    model.zero_grad()
    loss = warp_loss(samples, truth)
    assert torch.allclose(loss, (samples - truth[:, :, None]).square().mean())
    loss.backward()
    assert depth_bias.grad.view(-1, 4)[:, 0].abs().max() > 0
    with pytest.raises(ValueError, match="view-blending"):
        LaCTRenderer(tiny_config())(images, cams, targets, with_samples=True)


def test_depth_loss_compares_ray_depth_with_z_depth_where_there_is_a_surface():
    cams = _camera(0.0, size=16, yaw_deg=20.0)
    cams = Cameras(cams.intrinsics[None, None].float(), cams.c2w[None, None].float(), 16, 16)
    _, ray_depth = _plane_view(cams)
    _, dirs = pixel_rays(cams)
    z = ray_depth * (dirs * cams.c2w[..., :3, 2, None, None]).sum(-3, keepdim=True)  # along the optical axis
    assert not torch.allclose(z, ray_depth, atol=1e-3)  # off-axis pixels: the two differ
    assert float(depth_loss(ray_depth, z, cams)) < 1e-5
    assert float(depth_loss(ray_depth * 1.1, z, cams)) == pytest.approx(math.log(1.1), abs=1e-5)
    # pixels without a surface (0) do not count, whatever the decoded depth there
    wrong = ray_depth.clone()
    wrong[..., :8, :] = 50.0
    assert float(depth_loss(wrong, torch.where(wrong == 50.0, torch.zeros_like(z), z), cams)) < 1e-5
    assert float(depth_loss(ray_depth, torch.zeros_like(z), cams)) == 0.0


def test_depth_loss_trains_the_head_depth_from_the_renderer():
    model = _blend_model()
    images, cams, targets = ring_scene()
    _, (_, _, depth) = model.train()(images, cams, targets, with_samples=True)
    assert depth.shape == (1, 2, 1, 32, 32)
    loss = depth_loss(depth, torch.full_like(depth, 2.5), targets)
    loss.backward()
    assert float(loss.detach()) > 0 and model.view_blend.proj.bias.grad.view(-1, 4)[:, 0].abs().max() > 0


def test_a_held_head_keeps_its_logit_weights_through_adamw_weight_decay():
    """optim.view_blend_hold_steps on a head that already blends (non-zero logit rows): dropping
    the logits' gradients alone would let weight decay shrink them; restoring after the step holds."""
    head = ViewBlendHead(patch=2, dim=8, views=2, depth=2.0)
    with torch.no_grad():
        head.proj.weight.normal_()
    opt = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.5)
    before = head.logit_weights()
    depth_rows = torch.arange(head.proj.bias.numel()) % head.channels == 0
    depth_before = head.proj.weight[depth_rows].detach().clone()
    for _ in range(3):
        head(torch.randn(4, 8)).square().sum().backward()
        head.drop_logit_grads()
        held = head.logit_weights()
        opt.step()
        head.restore_logit_weights(held)
        opt.zero_grad()
    after = head.logit_weights()
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert not torch.allclose(head.proj.weight[depth_rows], depth_before)
    head(torch.randn(4, 8)).square().sum().backward()
    head.drop_logit_grads()
    opt.step()  # without the restore, decay alone moves them
    assert not torch.equal(head.logit_weights()[0], before[0])
