"""The mesh renderer: textures, two-sided lighting, glass, and agreement with our camera model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nvs.cameras import Cameras, look_at
from nvs.datasets import furniture, mesh_render
from tests.datasets.asset_fixtures import QUADRANT_COLORS, write_library

pytestmark = pytest.mark.skipif(mesh_render.unavailable_reason() is not None,
                                reason=str(mesh_render.unavailable_reason()))


def _camera(eye, target, height=64, width=64, fx=60.0, fy=60.0, cx=None, cy=None) -> Cameras:
    c2w = look_at(torch.tensor([eye], dtype=torch.float64), torch.tensor([target], dtype=torch.float64),
                  torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    intr = torch.tensor([[fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy]], dtype=torch.float64)
    return Cameras(intr, c2w, height, width)


def _quad_model(tmp_path):
    return furniture.load_model.__wrapped__(furniture.read_catalog(write_library(tmp_path))[0])


def test_texture_is_the_base_colour_upright_and_seen_from_both_sides(tmp_path):
    model = _quad_model(tmp_path)  # a 1 m square in the x-z plane, base on z = 0, front towards -y
    scene = mesh_render.build_scene([(mesh_render.make_mesh(model.parts), np.eye(4))], [], ambient=1.0)
    front, _ = mesh_render.render_views(scene, _camera([0.0, -2.0, 0.5], [0.0, 0.0, 0.5]))
    back, _ = mesh_render.render_views(scene, _camera([0.0, 2.0, 0.5], [0.0, 0.0, 0.5]))
    # the square spans 30 pixels around the centre; sample the middle of each quadrant
    at = lambda img, r, c: (img[0, :3, r, c] * 255).round().tolist()  # noqa: E731
    # the OBJ Kd (0.2) must not darken the texture; pure colours survive the sRGB round trip
    assert at(front, 24, 24) == pytest.approx(list(QUADRANT_COLORS["top_left"]), abs=3)
    assert at(front, 24, 40) == pytest.approx(list(QUADRANT_COLORS["top_right"]), abs=3)
    assert at(front, 40, 24) == pytest.approx(list(QUADRANT_COLORS["bottom_left"]), abs=3)
    assert at(front, 40, 40) == pytest.approx(list(QUADRANT_COLORS["bottom_right"]), abs=3)
    # from behind the square is mirrored, and still drawn
    assert at(back, 24, 24) == pytest.approx(list(QUADRANT_COLORS["top_right"]), abs=3)
    assert at(back, 40, 40) == pytest.approx(list(QUADRANT_COLORS["bottom_left"]), abs=3)
    assert at(front, 2, 2) == [255, 255, 255] and front[0, 3, 2, 2] == 0  # background: white, alpha 0


def _square(centre, size, color, opacity=1.0, normal_axis=1):
    """Two triangles of a square facing the y axis, as a furniture.Part."""
    c = np.asarray(centre, dtype=np.float32)
    h = size / 2
    corners = np.array([[-h, 0, -h], [h, 0, -h], [h, 0, h], [-h, 0, h]], dtype=np.float32) + c
    pos = corners[[0, 1, 2, 0, 2, 3]]
    normals = np.tile(np.array([0.0, -1.0, 0.0], dtype=np.float32), (6, 1))
    return furniture.Part(pos, normals, None, mesh_render.Surface(np.asarray(color, dtype=np.float64), opacity))


def test_lighting_is_the_same_on_both_faces_of_a_thin_surface():
    light = [mesh_render.Light("directional", np.array([0.0, -1.0, 0.3]), np.ones(3), 3.0)]
    lit_front = mesh_render.build_scene([(mesh_render.make_mesh([_square([0, 0, 0], 1.0, [0.6, 0.6, 0.6])]), np.eye(4))], light, 0.1)
    light_back = [mesh_render.Light("directional", np.array([0.0, 1.0, 0.3]), np.ones(3), 3.0)]
    lit_back = mesh_render.build_scene([(mesh_render.make_mesh([_square([0, 0, 0], 1.0, [0.6, 0.6, 0.6])]), np.eye(4))], light_back, 0.1)
    front, _ = mesh_render.render_views(lit_front, _camera([0.0, -2.0, 0.0], [0.0, 0.0, 0.0]))
    back, _ = mesh_render.render_views(lit_back, _camera([0.0, 2.0, 0.0], [0.0, 0.0, 0.0]))
    # each side lit from the side it is seen from: equally bright (normals flipped for the back face)
    assert float(front[0, 0, 32, 32]) > 0.5
    assert float(back[0, 0, 32, 32]) == pytest.approx(float(front[0, 0, 32, 32]), abs=0.02)


def test_glass_lets_the_background_through_and_opaque_does_not():
    cams = _camera([0.0, -2.0, 0.0], [0.0, 0.0, 0.0])
    out = {}
    for name, opacity in (("opaque", 1.0), ("glass", 0.4)):
        scene = mesh_render.build_scene([(mesh_render.make_mesh([_square([0, 0, 0], 1.0, [0.1, 0.1, 0.1], opacity)]), np.eye(4))], [], 1.0)
        out[name] = mesh_render.render_views(scene, cams)[0][0, :3, 32, 32]
    assert float(out["opaque"].mean()) < 0.2
    assert 0.4 < float(out["glass"].mean()) < 0.95  # white background shows through


def test_a_projected_point_lands_on_its_rendered_pixel():
    """Off-centre principal point, unequal focal lengths, a tilted camera: the rendered marker's
    centre must be where Cameras.project puts it, within a fraction of a pixel."""
    point = np.array([0.35, 0.2, -0.25])
    cams = _camera([0.4, -2.5, 0.9], [0.0, 0.3, 0.0], height=48, width=80, fx=70.0, fy=55.0, cx=37.3, cy=21.6)
    scene = mesh_render.build_scene([(mesh_render.make_mesh([_square(point, 0.2, [1.0, 0.0, 1.0])]), np.eye(4))], [], 1.0)
    rgba, depth = mesh_render.render_views(scene, cams)
    alpha = rgba[0, 3].double()
    assert alpha.sum() > 2  # the marker was drawn
    rows, cols = torch.meshgrid(torch.arange(48, dtype=torch.float64) + 0.5, torch.arange(80, dtype=torch.float64) + 0.5, indexing="ij")
    centre = torch.stack([(alpha * cols).sum(), (alpha * rows).sum()]) / alpha.sum()
    uv, z = cams.project(torch.tensor(point, dtype=torch.float64)[None, None])
    assert torch.allclose(centre, uv[0, 0], atol=0.3), (centre, uv)
    r, c = int(uv[0, 0, 1]), int(uv[0, 0, 0])
    assert float(depth[0, 0, r, c]) == pytest.approx(float(z[0, 0]), rel=0.01)
    assert math.isinf(float(depth[0, 0, 0, 0]))


def test_rendering_is_deterministic(tmp_path):
    model = _quad_model(tmp_path)
    light = [mesh_render.Light("point", np.array([0.3, -1.0, 1.0]), np.ones(3), 4.0)]
    cams = Cameras.cat([_camera([0.5, -2.0, 0.8], [0.0, 0.0, 0.5]), _camera([-0.7, -1.5, 0.2], [0.0, 0.0, 0.5])])
    first = mesh_render.render_views(mesh_render.build_scene([(mesh_render.make_mesh(model.parts), np.eye(4))], light, 0.2), cams)[0]
    second = mesh_render.render_views(mesh_render.build_scene([(mesh_render.make_mesh(model.parts), np.eye(4))], light, 0.2), cams)[0]
    assert torch.equal(first, second)
    assert not torch.equal(first[0], first[1])


def test_threads_take_turns_with_the_gl_context(tmp_path):
    """A viewer's worker threads render one after another: the context is released after each render."""
    import threading

    model = _quad_model(tmp_path)
    light = [mesh_render.Light("point", np.array([0.3, -1.0, 1.0]), np.ones(3), 4.0)]
    cams = _camera([0.5, -2.0, 0.8], [0.0, 0.0, 0.5])
    here = mesh_render.render_views(mesh_render.build_scene([(mesh_render.make_mesh(model.parts), np.eye(4))], light, 0.2), cams)[0]
    results, errors = [], []

    def work():
        try:
            scene = mesh_render.build_scene([(mesh_render.make_mesh(model.parts), np.eye(4))], light, 0.2)
            results.append(mesh_render.render_views(scene, cams)[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 3 and all(torch.equal(r, here) for r in results)


def test_rgb_texture_of_odd_width_is_read_row_by_row():
    # 5 columns of distinct colours, 3 rows: 15-byte RGB rows, which GL's default 4-byte row
    # alignment would read as sheared, past the end of the array
    columns = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], dtype=np.uint8)
    texture = np.repeat(columns[None], 3, axis=0)
    part = _square([0, 0, 0], 1.0, [0.5, 0.5, 0.5])
    uvs = (part.positions[:, [0, 2]] + 0.5).astype(np.float32)  # x -> u, z -> v over the square
    part = furniture.Part(part.positions, part.normals, uvs, mesh_render.Surface(np.ones(3), texture=texture))
    cams = _camera([0.0, -2.0, 0.0], [0.0, 0.0, 0.0])
    renders = [mesh_render.render_views(mesh_render.build_scene([(mesh_render.make_mesh([part]), np.eye(4))], [], 1.0), cams)[0]
               for _ in range(3)]
    assert all(torch.equal(renders[0], r) for r in renders[1:])
    # the square spans 30 pixels about the centre: 6 pixels per texture column, sampled half a pixel
    # off each column's centre (bilinear filtering mixes in 1/12 of the neighbour); a sheared read
    # would swap whole channels
    for k, color in enumerate(columns):
        for row in (22, 32, 42):
            assert (renders[0][0, :3, row, 20 + 6 * k] * 255).round().tolist() == pytest.approx(color.tolist(), abs=32)
