"""``furnished-room`` scenes: a room with textured walls, floor and ceiling, furnished with the
packaged models, seen from a smooth camera walk at eye height (RealEstate10K-like), 16:9 frames.
``furnished-orbit`` scenes: the same kind of room, the camera circling one free-standing piece and
looking at it (the hand-held rings of Mip-NeRF 360, CO3D or a turntable photographed in place).

World: metres, z up, floor at z = 0, walls at x = +-ext_x and y = +-ext_y. The camera path is
drawn first; pieces are then placed on the floor, with their backs against a wall or free-standing
at any angle, plus doors and windows set into the walls, rejecting any placement whose bounding
box meets another's or comes within ``CAMERA_CLEARANCE`` of the path. Surface textures are
procedural (planks, tiles, carpet, paint, wallpaper) and differ per seed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from nvs.cameras import Cameras, fov_to_focal, look_at
from nvs.datasets import furniture
from nvs.datasets.asset_scenes import AssetScene, light_tint

ROOM_CATEGORIES = ("Living room", "Kitchen", "Bedroom", "Bathroom", "Office", "Lights", "Miscellaneous")
CAMERA_CLEARANCE = 0.35  # metres between the camera path and any piece
WALL_GAP = 0.02
SIMPLIFY_CELL = 0.015  # metres: about two pixels at 1.5 m in 256-pixel-wide frames, looks the same as finer
TEXTURE_SIZE = 256


# ----- procedural surface textures ---------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """[size, size] noise in about [-1, 1], bilinear over a periodic ``cells`` x ``cells`` grid."""
    grid = rng.standard_normal((cells, cells))
    t = np.arange(size) * cells / size
    i0 = np.floor(t).astype(int)
    f = t - i0
    i1 = (i0 + 1) % cells
    rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
    return (rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None]) / 1.5


def _muted(rng: np.random.Generator, lo: float, hi: float, saturation: float = 0.35) -> np.ndarray:
    """A colour [3]: a grey level in [lo, hi] tinted at most ``saturation`` towards a random hue."""
    grey = rng.uniform(lo, hi)
    return np.clip(grey * (1 - rng.uniform(0, saturation) * (1 - rng.dirichlet([1, 1, 1]) * 3)), 0, 1)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def _planks(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    """Wooden floor boards along u: per-board tone, grain along the board, dark seams."""
    base = rng.uniform([0.35, 0.2, 0.1], [0.75, 0.55, 0.35])
    boards = int(rng.integers(4, 9))
    v = np.arange(n)
    board = v * boards // n
    tone = 1 + 0.18 * rng.standard_normal(boards)
    grain = np.sin(np.arange(n)[None, :] * rng.uniform(0.05, 0.2) + 6 * _smooth_noise(rng, n, 8))
    shade = tone[board][:, None] * (1 + 0.08 * grain + 0.05 * _smooth_noise(rng, n, 32))
    seam = ((v * boards) % n) < max(1, n // 128)
    shade[seam] *= 0.45
    # boards end at staggered positions
    ends = (np.arange(n)[None, :] + (board[:, None] * rng.integers(n // 5, n // 2))) % n < 2
    shade[ends] *= 0.5
    return _to_uint8(base * shade[..., None])


def _tiles(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    """Square tiles with grout and a slight per-tile colour change."""
    base = _muted(rng, 0.3, 0.95, 0.15)
    k = int(rng.choice([2, 4]))
    idx = np.arange(n) * k // n
    tone = 1 + 0.06 * rng.standard_normal((k, k))
    img = base * (tone[idx[:, None], idx[None, :]] + 0.03 * _smooth_noise(rng, n, 16))[..., None]
    grout = ((np.arange(n) * k) % n) < max(2, n // 64)
    img[grout, :] = img[:, grout] = rng.uniform(0.25, 0.8) * np.ones(3)
    return _to_uint8(img)


def _carpet(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    base = _muted(rng, 0.15, 0.75, 0.25)
    shade = 1 + 0.12 * _smooth_noise(rng, n, 12) + 0.1 * rng.standard_normal((n, n))
    return _to_uint8(base * shade[..., None])


def _paint(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    base = _muted(rng, 0.6, 0.97, 0.15)
    shade = 1 + 0.025 * _smooth_noise(rng, n, 16) + 0.015 * _smooth_noise(rng, n, 64)
    return _to_uint8(np.clip(base, 0, 1) * shade[..., None])


def _wallpaper(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    a, b = _muted(rng, 0.45, 0.95, 0.2), _muted(rng, 0.45, 0.95, 0.2)
    stripes = int(rng.integers(3, 9))
    u = np.arange(n)
    mask = ((u * stripes * 2 // n) % 2 == 0)[None, :].repeat(n, 0)
    if rng.uniform() < 0.4:  # a dotted pattern over the stripes
        yy, xx = np.mgrid[0:n, 0:n] % (n // stripes)
        mask ^= (np.hypot(yy - n // stripes / 2, xx - n // stripes / 2) < n / stripes / 5)
    img = np.where(mask[..., None], a, b) * (1 + 0.02 * _smooth_noise(rng, n, 32))[..., None]
    return _to_uint8(img)


FLOORS = {"planks": (_planks, 1.2), "tiles": (_tiles, 0.9), "carpet": (_carpet, 1.0)}
WALLS = {"paint": (_paint, 1.5), "wallpaper": (_wallpaper, 1.0)}


def _quad(corners: np.ndarray, uv: np.ndarray, normal: np.ndarray):
    """Two triangles of a quad [4, 3] (corners in order) -> positions [6, 3], normals, uvs [6, 2]."""
    order = [0, 1, 2, 0, 2, 3]
    return corners[order].astype(np.float32), np.repeat(normal[None], 6, 0).astype(np.float32), uv[order].astype(np.float32)


def room_shell(rng: np.random.Generator, ext: np.ndarray, height: float) -> list[furniture.Part]:
    """Floor, four walls and ceiling, normals pointing into the room, textures repeating every
    texture period (metres)."""
    from nvs.datasets.mesh_render import Surface

    floor_kind = list(FLOORS)[int(rng.integers(len(FLOORS)))]
    wall_kind = list(WALLS)[int(rng.integers(len(WALLS)))] if rng.uniform() < 0.5 else "paint"
    make_floor, floor_period = FLOORS[floor_kind]
    make_wall, wall_period = WALLS[wall_kind]
    floor = Surface(np.ones(3), texture=make_floor(rng), shininess=float(rng.uniform(0, 200)))
    wall = Surface(np.ones(3), texture=make_wall(rng))
    ceiling = Surface(np.ones(3), texture=_paint(np.random.default_rng(rng.integers(1 << 31))))
    ex, ey, h = float(ext[0]), float(ext[1]), float(height)
    parts = []
    corners = np.array([[-ex, -ey, 0], [ex, -ey, 0], [ex, ey, 0], [-ex, ey, 0]], dtype=np.float64)
    pos, n, uv = _quad(corners, corners[:, :2] / floor_period, np.array([0.0, 0.0, 1.0]))
    parts.append(furniture.Part(pos, n, uv, floor))
    top = corners + np.array([0, 0, h])
    pos, n, uv = _quad(top[::-1], top[::-1, :2] / 1.5, np.array([0.0, 0.0, -1.0]))
    parts.append(furniture.Part(pos, n, uv, ceiling))
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        quad = np.stack([a, b, b + [0, 0, h], a + [0, 0, h]])
        length = float(np.linalg.norm(b - a))
        uv = np.array([[0, 0], [length, 0], [length, h], [0, h]]) / wall_period
        inward = np.array([-(b - a)[1], (b - a)[0], 0.0]) / length
        pos, n, uv = _quad(quad, uv, inward)
        parts.append(furniture.Part(pos, n, uv, wall))
    return parts


# ----- camera walk --------------------------------------------------------------------------------
def camera_walk(rng: np.random.Generator, views: int, height: int, width: int, ext: np.ndarray) -> Cameras:
    """A smooth walk of 0.8-2 m at eye height that keeps looking across the room: it starts near a
    wall, moves towards or sideways to a gaze target on the far side, the gaze swaying slowly
    around that target; horizontal field of view 55-75 deg."""
    inner = np.maximum(ext - 0.5, 0.2)
    wall_side = rng.choice([-1.0, 1.0], 2) * (np.arange(2) == rng.integers(2))
    start = rng.uniform(-inner, inner)
    start = np.where(wall_side != 0, wall_side * inner * rng.uniform(0.7, 1.0), start)
    target = np.clip(-start * rng.uniform(0.4, 1.2, 2) + rng.normal(0, 0.4, 2), -ext + 0.2, ext - 0.2)
    to_target = target - start
    distance = float(np.linalg.norm(to_target))
    forward = to_target / max(distance, 1e-6)
    side = np.array([-forward[1], forward[0]])
    # walk forwards, sideways, or a mix of the two
    mix = rng.choice([0.0, 0.5, 1.0])
    direction = (1 - mix) * forward + mix * side * rng.choice([-1, 1])
    direction /= np.linalg.norm(direction)
    length = min(rng.uniform(0.8, 2.0), max(distance - 1.0, 0.3))
    ctrl = np.stack([start + direction * length * t + side * rng.uniform(-0.2, 0.2) * (0 < t < 1)
                     for t in (0.0, 1 / 3, 2 / 3, 1.0)])
    ctrl = np.clip(ctrl, -inner, inner)
    s = np.linspace(0, 1, views)[:, None]
    path = (1 - s) ** 3 * ctrl[0] + 3 * (1 - s) ** 2 * s * ctrl[1] + 3 * (1 - s) * s ** 2 * ctrl[2] + s ** 3 * ctrl[3]
    eye_z = rng.uniform(1.35, 1.7)
    gaze = target[None] - path
    yaw = np.arctan2(gaze[:, 1], gaze[:, 0]) + 0.2 * np.sin(s[:, 0] * math.pi * rng.uniform(1, 2) + rng.uniform(0, 6))
    flat = np.linalg.norm(gaze, axis=1)
    pitch = np.arctan2(rng.uniform(0.5, 1.3) - eye_z, np.maximum(flat, 0.5)) + 0.04 * np.sin(s[:, 0] * math.pi * 2 + rng.uniform(0, 6))
    eye = np.concatenate([path, np.full((views, 1), eye_z)], 1)
    look = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], -1)
    eye_t = torch.tensor(eye, dtype=torch.float32)
    c2w = look_at(eye_t, eye_t + torch.tensor(look, dtype=torch.float32), torch.tensor([0.0, 0.0, 1.0]).expand(views, 3))
    focal = fov_to_focal(math.radians(rng.uniform(55, 75)), width)
    intr = torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4).clone()
    return Cameras(intr, c2w, height, width)


def camera_orbit(rng: np.random.Generator, views: int, height: int, width: int, centre: np.ndarray,
                 radius: float) -> Cameras:
    """A hand-held ring around ``centre`` [3] (world, z up): an arc of 120-360 deg at ``radius``
    metres, looking down on the centre from 5-40 deg above it (camera height 0.3-2 m), each view
    aimed at the centre give or take a few centimetres, radius and height swaying by a few
    percent. Horizontal field of view 50-70 deg (a phone's main camera) for half the rings, 15-50
    deg (longer lenses; calibrated rigs such as DTU's or Middlebury's) for the other half."""
    full = rng.uniform() < 0.5
    span = 2 * math.pi if full else rng.uniform(2 * math.pi / 3, 2 * math.pi)
    t = np.arange(views) / (views if full else max(views - 1, 1))
    azimuth = rng.uniform(0, 2 * math.pi) + rng.choice([-1.0, 1.0]) * span * t
    wave = np.sin(2 * math.pi * t * rng.integers(1, 4) + rng.uniform(0, 2 * math.pi))
    r = radius * (1 + rng.uniform(0, 0.06) * wave)
    height_above = radius * math.tan(math.radians(rng.uniform(5, 40)))
    eye_z = np.clip(centre[2] + height_above * (1 + rng.uniform(0, 0.08) * wave[::-1]), 0.3, 2.0)
    eye = np.stack([centre[0] + r * np.cos(azimuth), centre[1] + r * np.sin(azimuth), eye_z], -1)
    aim = centre[None] + rng.normal(0, 0.03, (views, 3))
    eye_t = torch.tensor(eye, dtype=torch.float32)
    c2w = look_at(eye_t, torch.tensor(aim, dtype=torch.float32), torch.tensor([0.0, 0.0, 1.0]).expand(views, 3))
    fov = rng.uniform(50, 70) if rng.uniform() < 0.5 else rng.uniform(15, 50)
    focal = fov_to_focal(math.radians(fov), width)
    intr = torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4).clone()
    return Cameras(intr, c2w, height, width)


# ----- furnishing ---------------------------------------------------------------------------------
def _boxes_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.03) -> bool:
    """Axis-aligned boxes [2, 3] (min, max) closer than ``margin`` on every axis."""
    return bool(np.all(a[0] < b[1] + margin) and np.all(b[0] < a[1] + margin))


def _yaw_matrix(yaw: float, centre: np.ndarray) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    out[:3, 3] = centre
    return out


WALL_NORMALS = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])  # inward normals of walls y-, x+, y+, x-


def place_pieces(rng: np.random.Generator, candidates: list[furniture.Piece], openings: list[furniture.Piece],
                 count: int, ext: np.ndarray, height: float, camera_xy: np.ndarray,
                 centre_piece: tuple[furniture.Piece, np.ndarray, float] | None = None) -> list[tuple[furniture.Piece, np.ndarray]]:
    """(piece, 4x4 pose) for up to ``count`` pieces and 0-2 doors/windows, none intersecting;
    ``centre_piece`` (piece, floor position [2], yaw) is placed first, where it is told to be,
    and may stand closer than CAMERA_CLEARANCE to the cameras (the piece they circle)."""
    placed: list[tuple[furniture.Piece, np.ndarray]] = []
    boxes: list[np.ndarray] = []

    def try_place(piece: furniture.Piece, wall: int | None, opening: bool, at: tuple[np.ndarray, float] | None = None) -> bool:
        w, d, h = piece.size
        z0 = piece.elevation
        if z0 + h > height - 0.05:
            return False
        if wall is None:
            yaw = rng.uniform(0, 2 * math.pi) if at is None else at[1]
            c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
            half = np.array([c * w / 2 + s * d / 2, s * w / 2 + c * d / 2])
            if np.any(half >= ext - 0.05):
                return False
            centre = rng.uniform(-(ext - half - 0.02), ext - half - 0.02) if at is None else np.asarray(at[0], dtype=np.float64)
        else:
            normal = WALL_NORMALS[wall]
            yaw = math.atan2(normal[0], -normal[1])  # the piece's front (-y) turned to face the room
            half = np.abs(normal[::-1]) * w / 2 + np.abs(normal) * d / 2
            along = np.abs(normal[::-1])
            if np.any(half >= ext + (d / 2 if opening else 0) - 0.05):
                return False
            offset = 0.0 if opening else d / 2 + WALL_GAP  # openings sit in the wall, half inside
            wall_point = -normal * ext  # the wall's centre (normal points inwards)
            reach = float((ext - half - 0.05) @ along)
            centre = wall_point + normal * offset + along * rng.uniform(-reach, reach)
        box = np.array([[*(centre - half), z0], [*(centre + half), z0 + h]])
        if not opening and np.any(np.abs(centre) + half > ext + 1e-6):
            return False
        if any(_boxes_overlap(box, other) for other in boxes):
            return False
        if z0 < 2.0 and at is None:
            near = np.all((camera_xy > box[0, :2] - CAMERA_CLEARANCE) & (camera_xy < box[1, :2] + CAMERA_CLEARANCE), axis=1)
            if near.any():
                return False
        boxes.append(box)
        placed.append((piece, _yaw_matrix(yaw, np.array([centre[0], centre[1], z0]))))
        return True

    if centre_piece is not None and not try_place(centre_piece[0], None, False, (centre_piece[1], centre_piece[2])):
        raise ValueError(f"{centre_piece[0].id} does not fit at {centre_piece[1]} in a room of half extents {ext}")
    for _ in range(int(rng.integers(0, 3)) if openings else 0):
        for _attempt in range(10):
            if try_place(openings[int(rng.integers(len(openings)))], int(rng.integers(4)), True):
                break
    target = len(placed) + count
    for _attempt in range(count * 15):
        if len(placed) >= target:
            break
        piece = candidates[int(rng.integers(len(candidates)))]
        wall = int(rng.integers(4)) if (rng.uniform() < 0.65 or piece.elevation > 0) else None
        try_place(piece, wall, False)
    return placed


def room_candidates(split: str, height: float = 2.5) -> tuple[list[furniture.Piece], list[furniture.Piece]]:
    """(furniture for rooms, doors and windows) of a split."""
    pieces = furniture.pieces_of_split(split)
    furnish = [p for p in pieces if p.category in ROOM_CATEGORIES and not p.door_or_window
               and p.size[2] + p.elevation < height - 0.1 and max(p.size[:2]) < 2.5 and max(p.size) > 0.35]
    openings = [p for p in pieces if p.door_or_window and p.size[2] + p.elevation < height - 0.1 and p.size[0] < 2.5]
    return furnish, openings


@lru_cache(maxsize=512)
def room_model(piece: furniture.Piece) -> furniture.Model:
    """The piece's mesh simplified for room views (cached: rooms draw from a few hundred pieces)."""
    return furniture.simplified(furniture.load_model(piece), min_triangles=2000, cell_size=SIMPLIFY_CELL)


def room_lights(rng: np.random.Generator, ext: np.ndarray, height: float):
    from nvs.datasets.mesh_render import Light

    lights = []
    for _ in range(int(rng.integers(1, 3))):
        pos = np.array([*rng.uniform(-ext * 0.4, ext * 0.4), height - 0.2])
        lights.append(Light("point", pos, light_tint(rng), float(rng.uniform(3.0, 8.0))))
    az = rng.uniform(0, 2 * math.pi)
    el = rng.uniform(math.radians(20), math.radians(55))
    window = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    lights.append(Light("directional", window, light_tint(rng), float(rng.uniform(0.5, 2.0))))
    return lights, float(rng.uniform(0.25, 0.5))


def furnished_room_scene(seed: int, views: int, height: int = 144, width: int = 256, split: str = "train") -> AssetScene:
    """A furnished room seen from a camera walk of ``views`` frames (in path order)."""
    rng = np.random.default_rng([int(seed), 11 + (split == "val")])
    ext = np.array([rng.uniform(1.7, 3.0), rng.uniform(1.5, 2.5)])
    room_height = float(rng.uniform(2.5, 2.9))
    cams = camera_walk(rng, views, height, width, ext)
    furnish, openings = room_candidates(split, room_height)
    placed = place_pieces(rng, furnish, openings, int(rng.integers(8, 15)), ext, room_height,
                          cams.c2w[:, :2, 3].double().numpy())
    return _render_room(rng, ext, room_height, placed, cams)


ORBIT_GAP = 0.5  # metres between the circled piece's bounding circle and the cameras, at least


def furnished_orbit_scene(seed: int, views: int, height: int = 144, width: int = 256, split: str = "train") -> AssetScene:
    """A furnished room, the camera circling one free-standing piece of it for ``views`` frames
    (in path order); the piece (at most 1.8 m tall) is drawn until one fits its ring in the room."""
    rng = np.random.default_rng([int(seed), 21 + (split == "val")])
    ext = np.array([rng.uniform(2.0, 3.0), rng.uniform(1.8, 2.6)])
    room_height = float(rng.uniform(2.5, 2.9))
    furnish, openings = room_candidates(split, room_height)
    centre = rng.uniform(-0.25 * ext, 0.25 * ext)
    max_radius = float(np.min(ext - np.abs(centre))) - 0.3
    for _attempt in range(100):
        piece = furnish[int(rng.integers(len(furnish)))]
        reach = math.hypot(piece.size[0], piece.size[1]) / 2
        if piece.elevation == 0 and piece.size[2] <= 1.8 and reach + ORBIT_GAP <= max_radius:
            break
    else:
        raise ValueError(f"no piece of the {split} split fits a ring in a room of half extents {ext}")
    lo = max(reach + ORBIT_GAP, 0.8)
    radius = float(rng.uniform(lo, max(lo, min(max_radius, 2.5 * reach + 0.6))))
    aim = np.array([centre[0], centre[1], piece.size[2] * rng.uniform(0.35, 0.65)])
    cams = camera_orbit(rng, views, height, width, aim, radius)
    placed = place_pieces(rng, furnish, openings, int(rng.integers(6, 13)), ext, room_height,
                          cams.c2w[:, :2, 3].double().numpy(), (piece, centre, float(rng.uniform(0, 2 * math.pi))))
    return _render_room(rng, ext, room_height, placed, cams)


def _render_room(rng: np.random.Generator, ext: np.ndarray, room_height: float,
                 placed: list[tuple[furniture.Piece, np.ndarray]], cams: Cameras) -> AssetScene:
    """The room's shell (textures drawn from ``rng``), its placed pieces and lights, rendered."""
    from nvs.datasets import mesh_render

    shell = room_shell(rng, ext, room_height)
    meshes = [(mesh_render.make_mesh(shell), np.eye(4))]
    problems: list[str] = []
    for piece, pose in placed:
        model = room_model(piece)
        meshes.append((mesh_render.make_mesh(model.parts), pose))
        problems += model.problems
    lights, ambient = room_lights(rng, ext, room_height)
    scene = mesh_render.build_scene(meshes, lights, ambient)
    rgba, depth = mesh_render.render_views(scene, cams, znear=0.05, zfar=20.0)
    attribution = list({p.id: p.attribution() for p, _ in placed}.values())
    return AssetScene(rgba[:, :3].contiguous(), cams, depth, attribution, problems)
