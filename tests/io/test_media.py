"""Image and video files: tiling images into a grid."""

import torch
def test_image_grid_tiles_images_of_different_sizes_on_white():
    from nvs.io.media import image_grid

    square, wide = torch.zeros(3, 4, 4), torch.full((3, 4, 7), 0.5)
    grid = image_grid([[square, wide], [wide]], pad=1)
    assert grid.shape == (3, 4 + 1 + 4, 7 + 1 + 7)  # cells of the largest height and width
    assert grid[:, :4, :4].eq(0).all() and grid[:, :4, 4:7].eq(1).all()  # the square, then white in its cell
    assert grid[:, :4, 8:].eq(0.5).all() and grid[:, 5:, :7].eq(0.5).all() and grid[:, 5:, 8:].eq(1).all()
