import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvs.geometry.vectors import MAX_FAST_LENGTH, vector_norm


def in_order_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The float32 squares added in order along dim and their IEEE (correctly rounded) root, by numpy."""
    a = x.numpy()
    return torch.from_numpy(np.sqrt((a * a).sum(axis=dim, keepdims=True)))


@pytest.mark.parametrize("length", [1, 3, 9, MAX_FAST_LENGTH])
def test_vector_norm_adds_the_squares_in_order_and_rounds_the_root_correctly(length):
    x = torch.randn(4, length, 30, 20)
    assert torch.equal(vector_norm(x, dim=1), in_order_norm(x, 1))
    if not torch.equal(x.norm(dim=1, keepdim=True), in_order_norm(x, 1)):
        pytest.skip("this torch build's norm is not the in-order sum's correctly rounded root")
    assert torch.equal(vector_norm(x, dim=1), x.norm(dim=1, keepdim=True))
    assert torch.equal(x / vector_norm(x, dim=1).clamp_min(1e-12), F.normalize(x, dim=1))


def test_vector_norm_is_torch_s_norm_where_its_shortcut_does_not_hold():
    # entries adjacent in memory: torch's norm takes its vectorised path, whose bits differ from
    # the in-order sum's (an in-order result here would fail these on this CPU)
    channels_last = torch.randn(4, 16, 30, 20).contiguous(memory_format=torch.channels_last)
    assert torch.equal(vector_norm(channels_last, dim=1), channels_last.norm(dim=1, keepdim=True))
    last = torch.randn(600, 3)
    assert torch.equal(vector_norm(last, dim=-1), last.norm(dim=-1, keepdim=True))
    one_pixel = torch.randn(50, 16, 1, 1)
    assert torch.equal(vector_norm(one_pixel, dim=1), one_pixel.norm(dim=1, keepdim=True))
    long = torch.randn(3, MAX_FAST_LENGTH + 1, 50)
    assert torch.equal(vector_norm(long, dim=1), long.norm(dim=1, keepdim=True))
    assert vector_norm(torch.randn(3, 0, 5), dim=1).shape == (3, 1, 5)
    wide = torch.randn(3, 3, 50, dtype=torch.float64)
    assert torch.equal(vector_norm(wide, dim=1), wide.norm(dim=1, keepdim=True))
    zero = torch.zeros(2, 3, 5, requires_grad=True)
    vector_norm(zero, dim=1).sum().backward()
    assert torch.equal(zero.grad, torch.zeros_like(zero))  # torch's subgradient, not the root's inf x 0
