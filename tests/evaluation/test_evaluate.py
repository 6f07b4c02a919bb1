import pytest
import torch

from nvs.evaluation.evaluate import EvalScene, evaluate, jitter_exposure, jitter_poses
from nvs.models import LaCTRenderer
from tests.helpers import ring_cameras, ring_scene, tiny_config


def test_exposure_jitter_scales_each_view_s_channels_by_a_seeded_gain_within_its_bounds():
    images = 0.2 + 0.5 * torch.rand(6, 3, 8, 8)  # no gain within [0.7, 1.3] clips these
    jittered = jitter_exposure(images, 0.3, seed=4)
    gains = jittered / images
    per_channel = gains.flatten(2)
    assert torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel), atol=1e-5)  # one gain per view and channel
    assert per_channel.min() >= 0.7 - 1e-5 and per_channel.max() <= 1.3 + 1e-5 and per_channel.std() > 0.05
    assert torch.equal(jitter_exposure(images, 0.3, seed=4), jittered)
    assert not torch.equal(jitter_exposure(images, 0.3, seed=5), jittered)
    assert jitter_exposure(torch.ones(2, 3, 4, 4), 0.5, seed=0).max() <= 1.0


def test_pose_noise_turns_each_camera_about_its_centre_by_a_seeded_angle_of_the_given_spread():
    c2w = ring_cameras(1, 400).c2w[0].double()
    turned = jitter_poses(c2w, 2.0, seed=3)
    assert torch.equal(turned[:, :3, 3], c2w[:, :3, 3]) and torch.equal(turned[:, 3], c2w[:, 3])
    rotation = turned[:, :3, :3]
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(400, 3, 3),
                               atol=1e-6, rtol=0.0)
    relative = c2w[:, :3, :3].transpose(1, 2) @ rotation  # the turn in the camera's own frame
    angles = torch.rad2deg(torch.arccos(((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert 1.4 < angles.pow(2).mean().sqrt() < 2.6  # |N(0, 2 deg)|, root mean square 2
    assert torch.equal(jitter_poses(c2w, 2.0, seed=3), turned) and not torch.equal(jitter_poses(c2w, 2.0, seed=4), turned)


def test_a_render_with_nan_pixels_stops_the_evaluation_naming_the_scene(tmp_path):
    images, cams, target_cams = ring_scene(inputs=3, targets=2)
    scene = EvalScene("kitchen-7", images[0], cams[0], torch.rand(2, 3, 32, 32), target_cams[0])
    model = LaCTRenderer(tiny_config()).eval()
    assert evaluate(model, iter([scene]), tmp_path / "fine", {}, save_images=False)["views"] == 2
    with torch.no_grad():
        model.head.proj.weight[0, 0] = float("nan")  # what a diverged fine-tune leaves
    with pytest.raises(ValueError, match=r"scene kitchen-7: the renderer gave NaN or infinite pixels in 2 of 2 views"):
        evaluate(model, iter([scene]), tmp_path / "broken", {}, save_images=False)
    assert not (tmp_path / "broken" / "summary.json").exists()
