import torch

from nvs.evaluation.evaluate import jitter_exposure


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
