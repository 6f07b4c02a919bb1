"""The adaptation's training loss: MSE alone, or MSE plus a weighted LPIPS, and that it reaches the training."""

import pytest
import torch
import torch.nn.functional as F

from nvs.adaptation.loss import LPIPS_NET, photometric_loss
from nvs.adaptation.search import AdaptOptions, adapt
from nvs.evaluation.lpips import lpips_model
from tests.adaptation.test_adapt import _model, _scene


def test_loss_is_mse_plus_weighted_lpips():
    g = torch.Generator().manual_seed(0)
    pred, answer = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)  # LPIPS needs 32 pixels
    mse = F.mse_loss(pred, answer)
    assert torch.equal(photometric_loss(0.0)(pred, answer), mse)
    perceptual = lpips_model(LPIPS_NET)(pred, answer).mean()
    assert float(perceptual) > 0.01
    assert torch.allclose(photometric_loss(0.5)(pred, answer), mse + 0.5 * perceptual)
    with pytest.raises(ValueError, match=">= 0"):
        photometric_loss(-1.0)
    with pytest.raises(ValueError, match="LPIPS weight"):
        AdaptOptions(lpips_weight=-0.1)


def test_lpips_weight_changes_what_adaptation_learns_and_last_state_is_reported():
    model = _model()
    images, cams = _scene(6, size=32)
    opts = dict(max_steps=2, budget_s=600, verify_every=100, search_frames=False, augmentation_sets=((),), min_gain_db=-1e9,
                confirm_views=0)
    mse = adapt(model, images, cams, AdaptOptions(**opts))
    both = adapt(model, images, cams, AdaptOptions(**opts, lpips_weight=0.5))
    assert mse.steps == both.steps == 2
    a, b = mse.last_adapter.tensors, both.last_adapter.tensors
    assert a.keys() == b.keys() and any(not torch.allclose(a[k], b[k]) for k in a)
    # verified only at the last step, which beat the base: what adapt keeps is the last state
    assert not mse.fallback and mse.best_verifier_psnr > mse.base_verifier_psnr
    assert all(torch.equal(mse.adapter.tensors[k], a[k]) for k in a)
    assert adapt(model, images, cams, AdaptOptions(**{**opts, "max_steps": 0})).last_adapter is None
