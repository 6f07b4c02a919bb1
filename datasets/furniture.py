"""The furniture library of Debian's ``sweethome3d-furniture``: catalogue, licences, split, meshes.

The package installs ``.sh3f`` zip libraries. Each holds ``PluginFurnitureCatalog.properties``
(Java properties: ISO-8859-1 with ``\\uXXXX`` escapes) describing piece ``#n`` with ``id#n``,
``name#n``, ``category#n``, ``model#n`` (an OBJ inside the zip), ``width#n``/``depth#n``/``height#n``
(cm), ``creator#n`` and an optional ``modelRotation#n`` (row-major 3x3), plus ``LICENSE.TXT``.

Members are read into memory by exact name (never extracted); a texture that is absent, or named
by an absolute path of its author's machine, is reported in :attr:`Model.problems` and its
material falls back to the OBJ colour. Models come back in the project's world frame: metres,
z up, the piece's front facing -y, its footprint centred on the origin and its base at z = 0.

The split by model id is fixed: a stable hash of the id puts 10% of the pieces in ``val``; those
are never used for training.
"""

from __future__ import annotations

import hashlib
import io
import math
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

LIBRARY_DIRS = (Path("/usr/share/sweethome3d/furniture"),)
PACKAGE = "sweethome3d-furniture"
SPLITS = ("train", "val")
VAL_PER_MILLE = 100
MAX_MEMBER_BYTES = 64 << 20  # a larger zip member is refused (corrupt or hostile archive)
MAX_TEXTURE_SIDE = 512  # textures are downscaled to this; renders are small
MAX_TEXTURE_PIXELS = 8192 * 8192  # a texture with more is refused before it is decoded
# SweetHome3D models are y up with their front towards +z; ours are z up with the front towards -y
SH3D_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Piece:
    """One catalogue entry. ``size`` is (width, depth, height) in metres; ``rotation`` the
    catalogue's row-major 3x3 modelRotation (None: identity)."""

    id: str
    name: str
    category: str
    creator: str
    model: str
    size: tuple[float, float, float]
    rotation: tuple[float, ...] | None
    elevation: float
    door_or_window: bool
    library: str
    library_name: str
    licence: str
    licence_text: str

    @property
    def split(self) -> str:
        return split_of(self.id)

    def attribution(self) -> dict:
        """What a data set must say about this model to use it."""
        return {"id": self.id, "name": self.name, "creator": self.creator, "category": self.category,
                "licence": self.licence, "library": self.library_name, "library_licence": self.licence_text,
                "source": f"Debian package {PACKAGE} ({Path(self.library).name}: {self.model})"}


def split_of(piece_id: str) -> str:
    """``val`` for the fixed 10% of ids whose SHA-256 falls there, else ``train``."""
    h = int.from_bytes(hashlib.sha256(piece_id.encode("utf-8")).digest()[:8], "big")
    return "val" if h % 1000 < VAL_PER_MILLE else "train"


# ----- catalogue -----------------------------------------------------------------------------------
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6] or ""):
            out.append(chr(int(text[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(_ESCAPES.get(n, n))
            i += 2
    return "".join(out)


def parse_properties(data: bytes) -> dict[str, str]:
    """Java ``.properties`` bytes (ISO-8859-1, ``\\u`` escapes, ``#``/``!`` comments, ``=``, ``:`` or
    blank separators, backslash line continuations) -> {key: value}."""
    lines = data.decode("iso-8859-1").splitlines()
    props: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in "#!":
            continue
        # an odd number of trailing backslashes continues the line
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        m = re.match(r"((?:[^\\=:\s]|\\.)*)\s*[=:\s]?\s*(.*)$", line)
        props[_unescape(m.group(1))] = _unescape(m.group(2))
    return props


def licence_id(text: str) -> str:
    """A short licence name from a LICENSE.TXT or catalogue licence text."""
    t = text.lower()
    # the Attribution texts mention "public domain" too (their waiver clause): test them first
    if "licenses/by/3.0/us" in t or "3.0 united states" in t:
        return "CC-BY-3.0-US"
    if "licenses/by/3.0" in t or "attribution 3.0" in t:
        return "CC-BY-3.0"
    if "creativecommons.org/choose/zero" in t or "publicdomain/zero" in t or "public domain" in t:
        return "CC0-1.0"
    return "see library licence"


def _member(archive: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{where}: '{name}' is not in the library") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{where}: '{name}' is {info.file_size} bytes, over the {MAX_MEMBER_BYTES} byte limit")
    return archive.read(info)


def _number(props: dict[str, str], key: str, where: str, default: float | None = None) -> float:
    if key not in props:
        if default is None:
            raise ValueError(f"{where}: missing '{key}'")
        return default
    try:
        value = float(props[key])
    except ValueError:
        raise ValueError(f"{where}: '{key}' is {props[key]!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' is not finite")
    return value


def read_catalog(library: str | Path) -> list[Piece]:
    """Every piece of one ``.sh3f`` library, in catalogue order."""
    library = Path(library)
    try:
        archive = zipfile.ZipFile(library)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{library}: not a readable furniture library ({exc})") from None
    with archive:
        props = parse_properties(_member(archive, "PluginFurnitureCatalog.properties", str(library)))
        try:
            licence_text = _member(archive, "LICENSE.TXT", str(library)).decode("iso-8859-1")
        except ValueError:
            licence_text = props.get("license", "")
    library_name = props.get("name", library.stem)
    library_licence = props.get("license", "") or (licence_text.strip().splitlines() or [""])[0]
    licence = licence_id(licence_text or props.get("license", ""))
    indices = sorted(int(k.split("#", 1)[1]) for k in props if re.fullmatch(r"id#\d+", k))
    pieces = []
    for n in indices:
        where = f"{library} (piece #{n})"
        model = props.get(f"model#{n}", "")
        if not model:
            raise ValueError(f"{where}: missing 'model#{n}'")
        rotation = None
        if f"modelRotation#{n}" in props:
            try:
                rotation = tuple(float(v) for v in props[f"modelRotation#{n}"].split())
            except ValueError:
                rotation = ()
            if len(rotation) != 9 or not all(math.isfinite(v) for v in rotation):
                raise ValueError(f"{where}: modelRotation must be 9 numbers (a row-major 3x3 matrix)")
        size = tuple(_number(props, f"{k}#{n}", where) / 100.0 for k in ("width", "depth", "height"))
        if min(size) <= 0:
            raise ValueError(f"{where}: width, depth and height must be positive")
        pieces.append(Piece(
            id=props[f"id#{n}"], name=props.get(f"name#{n}", ""), category=props.get(f"category#{n}", ""),
            creator=props.get(f"creator#{n}", ""), model=model.lstrip("/"), size=size, rotation=rotation,
            elevation=_number(props, f"elevation#{n}", where, 0.0) / 100.0,
            door_or_window=props.get(f"doorOrWindow#{n}", "false").strip().lower() == "true",
            library=str(library), library_name=library_name, licence=licence,
            licence_text=library_licence))
    return pieces


def find_libraries(dirs=LIBRARY_DIRS) -> list[Path]:
    return sorted(p for d in dirs for p in Path(d).glob("*.sh3f"))


def missing_reason() -> str | None:
    """Why the furniture library cannot be used here, or None when it can."""
    if not find_libraries():
        return (f"the Debian package {PACKAGE} is not installed (no .sh3f under "
                f"{', '.join(map(str, LIBRARY_DIRS))}); `make assets` installs it where apt-get runs as root")
    return None


@lru_cache(maxsize=4)
def catalog(dirs: tuple[Path, ...] = LIBRARY_DIRS) -> tuple[Piece, ...]:
    """Every piece of every installed library, sorted by id (raises when none is installed)."""
    libraries = find_libraries(dirs)
    if not libraries:
        raise ValueError(missing_reason())
    pieces = [p for lib in libraries for p in read_catalog(lib)]
    return tuple(sorted(pieces, key=lambda p: p.id))


def pieces_of_split(split: str, pieces=None) -> list[Piece]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return [p for p in (catalog() if pieces is None else pieces) if p.split == split]


# ----- meshes ---------------------------------------------------------------------------------------
@dataclass
class Material:
    """colour: sRGB [3] in [0, 1] (OBJ Kd); opacity: OBJ ``d`` (< 1: glass); texture: uint8
    [H, W, 3 or 4] or None; shininess: OBJ ``Ns``."""

    name: str
    color: np.ndarray
    opacity: float = 1.0
    texture: np.ndarray | None = None
    shininess: float = 0.0

    @property
    def glass(self) -> bool:
        return self.opacity < 1.0

    @property
    def cutout(self) -> bool:
        """A texture whose alpha channel punches holes (leaves, lace)."""
        return self.texture is not None and self.texture.shape[-1] == 4 and bool((self.texture[..., 3] < 128).any())


@dataclass
class Part:
    """Triangles of one material, unindexed: positions and normals [3T, 3], uvs [3T, 2] or None."""

    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray | None
    material: Material


@dataclass
class Model:
    piece: Piece | None
    parts: list[Part]
    problems: list[str] = field(default_factory=list)

    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corner."""
        pts = np.concatenate([p.positions for p in self.parts])
        return np.stack([pts.min(0), pts.max(0)])


def _resolve(base: str, ref: str) -> str | None:
    """Member name of a file referenced from folder ``base``; None for absolute paths or paths
    that leave the library."""
    ref = ref.strip().replace("\\", "/")
    if not ref or ref.startswith("/") or re.match(r"^[A-Za-z]:", ref):
        return None
    name = posixpath.normpath(posixpath.join(base, ref))
    return None if name.startswith("../") or name == ".." else name


def _decode_texture(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > MAX_TEXTURE_PIXELS:  # read from the header, before decoding
            raise ValueError(f"{img.width}x{img.height} pixels, over the {MAX_TEXTURE_PIXELS} a texture may have")
        img.load()
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        img = img.convert("RGBA" if has_alpha else "RGB")
        if max(img.size) > MAX_TEXTURE_SIDE:
            scale = MAX_TEXTURE_SIDE / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    if has_alpha and arr[..., 3].min() == 255:
        arr = np.ascontiguousarray(arr[..., :3])
    return arr


def _read_texture(material: Material, rest: str, base: str, read_member, where: str, problems: list[str]) -> None:
    """Set ``material``'s texture from a ``map_Kd`` line's file (its last word), or say in
    ``problems`` why it stays untextured."""
    from PIL import Image

    ref = rest.split()[-1] if rest.split() else ""
    name = _resolve(base, ref)
    if name is None:
        problems.append(f"{where}: material '{material.name}' names texture {ref!r} by an absolute or outside path")
        return
    try:
        data = read_member(name)
    except ValueError:
        problems.append(f"{where}: material '{material.name}' names texture '{name}', which the library lacks")
        return
    try:
        material.texture = _decode_texture(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        problems.append(f"{where}: texture '{name}' of material '{material.name}' cannot be decoded ({exc})")


def parse_mtl(text: str, base: str, read_member, where: str) -> tuple[dict[str, Material], list[str]]:
    """Materials of an MTL file; ``read_member(name) -> bytes`` (raises ValueError when absent).
    Returns (materials by name, problems found)."""
    materials: dict[str, Material] = {}
    problems: list[str] = []
    current = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        parts = raw.strip().split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        key, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        if key == "newmtl":
            current = materials[rest.strip()] = Material(rest.strip(), np.full(3, 0.8))
            continue
        if current is None or key not in ("Kd", "d", "Tr", "Ns", "map_Kd"):
            continue
        if key == "map_Kd":
            _read_texture(current, rest, base, read_member, where, problems)
            continue
        try:
            values = [float(v) for v in rest.split()]
            if not values or not all(math.isfinite(v) for v in values) or (key == "Kd" and len(values) < 3):
                raise ValueError
        except ValueError:
            problems.append(f"{where}, MTL line {lineno}: cannot read {raw.strip()[:60]!r}; left at its default")
            continue
        if key == "Kd":
            current.color = np.clip(np.array(values[:3]), 0.0, 1.0)
        elif key == "d":
            current.opacity = float(np.clip(values[0], 0.0, 1.0))
        elif key == "Tr":
            current.opacity = float(np.clip(1.0 - values[0], 0.0, 1.0))
        else:
            current.shininess = values[0]
    return materials, problems


def _index(token: str, count: int) -> int:
    i = int(token)
    return i - 1 if i > 0 else count + i


def _finite(words: list[str], count: int) -> tuple[float, ...]:
    """The first ``count`` numbers of an OBJ line's ``words`` (ValueError if one is missing,
    unreadable or not finite)."""
    values = tuple(float(w) for w in words[:count])
    if len(values) < count or not all(math.isfinite(x) for x in values):
        raise ValueError
    return values


def parse_obj(text: str, where: str) -> dict:
    """OBJ text -> {"v" [N,3], "vt" [M,2], "vn" [K,3], "corners" [C, 3] (v, vt, vn index; -1 if
    absent), "smooth" [C/3], "material" [C/3] (index into "materials"), "materials", "mtllib"}.
    Polygons are fanned into triangles."""
    v, vt, vn = [], [], []
    corners, smooth, mat_of_face = [], [], []
    materials: list[str] = []
    mat_ids: dict[str, int] = {}
    mtllib, cur_mat, cur_s = [], -1, 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw or raw[0] == "#":
            continue
        parts = raw.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key in ("v", "vn"):
                (v if key == "v" else vn).append(_finite(parts[1:], 3))
            elif key == "vt":
                vt.append(_finite(parts[1:], 2) if len(parts) > 2 else (*_finite(parts[1:], 1), 0.0))
            elif key == "f":
                poly = []
                for tok in parts[1:]:
                    idx = tok.split("/")
                    a = _index(idx[0], len(v))
                    b = _index(idx[1], len(vt)) if len(idx) > 1 and idx[1] else -1
                    c = _index(idx[2], len(vn)) if len(idx) > 2 and idx[2] else -1
                    poly.append((a, b, c))
                for k in range(1, len(poly) - 1):
                    corners.extend((poly[0], poly[k], poly[k + 1]))
                    smooth.append(cur_s)
                    mat_of_face.append(cur_mat)
            elif key == "usemtl":
                name = raw.split(None, 1)[1].strip() if len(parts) > 1 else ""
                if name not in mat_ids:
                    mat_ids[name] = len(materials)
                    materials.append(name)
                cur_mat = mat_ids[name]
            elif key == "s":
                cur_s = 0 if parts[1] in ("off", "0") else int(parts[1]) if parts[1].isdigit() else 1
            elif key == "mtllib":
                mtllib.append(raw.split(None, 1)[1].strip())
        except (ValueError, IndexError):
            raise ValueError(f"{where}, line {lineno}: cannot read {raw.strip()[:60]!r}") from None
    c = np.array(corners, dtype=np.int64).reshape(-1, 3)
    if len(c) and ((c[:, 0] < 0) | (c[:, 0] >= len(v)) | (c[:, 1] >= len(vt)) | (c[:, 2] >= len(vn))).any():
        raise ValueError(f"{where}: a face refers to a vertex that does not exist")
    return {"v": np.array(v, dtype=np.float64).reshape(-1, 3), "vt": np.array(vt, dtype=np.float64).reshape(-1, 2),
            "vn": np.array(vn, dtype=np.float64).reshape(-1, 3), "corners": c, "smooth": np.array(smooth, dtype=np.int64),
            "material": np.array(mat_of_face, dtype=np.int64), "materials": materials, "mtllib": mtllib}


def corner_normals(v: np.ndarray, corners: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Normals [C, 3] for corners without OBJ normals: faces in a smoothing group (s != 0) average
    the area-weighted normals of the faces sharing a vertex in that group; others are flat."""
    tri = v[corners[:, 0]].reshape(-1, 3, 3)
    face = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 area
    flat = face / np.maximum(np.linalg.norm(face, axis=1, keepdims=True), 1e-20)
    out = np.repeat(flat, 3, axis=0)
    s = np.repeat(smooth, 3)
    smoothed = s != 0
    if smoothed.any():
        key = corners[:, 0] * (int(s.max()) + 1) + s
        uniq, inv = np.unique(key[smoothed], return_inverse=True)
        acc = np.zeros((len(uniq), 3))
        np.add.at(acc, inv, np.repeat(face, 3, axis=0)[smoothed])
        n = acc[inv]
        good = np.linalg.norm(n, axis=1) > 1e-20
        sub = out[smoothed]
        sub[good] = n[good] / np.linalg.norm(n[good], axis=1, keepdims=True)
        out[smoothed] = sub
    return out


def load_obj_model(read_member, obj_name: str, where: str, rotation=None, size=None, piece: Piece | None = None) -> Model:
    """A Model from an OBJ (and its MTL and textures) read through ``read_member(name) -> bytes``.

    ``rotation`` (row-major 3x3) is applied first, as SweetHome3D does; ``size`` (width, depth,
    height in metres) then stretches the model's box to the catalogue size; the result is turned
    to z up (front -y), centred on its footprint and set on z = 0."""
    base = posixpath.dirname(obj_name)
    obj = parse_obj(read_member(obj_name).decode("utf-8", errors="replace"), where)
    if not len(obj["corners"]):
        raise ValueError(f"{where}: the model has no faces")
    mats: dict[str, Material] = {}
    problems: list[str] = []
    for lib in obj["mtllib"]:
        name = _resolve(base, lib)
        try:
            if name is None:
                raise ValueError
            text = read_member(name).decode("utf-8", errors="replace")
        except ValueError:
            problems.append(f"{where}: material library {lib!r} is missing")
            continue
        found, probs = parse_mtl(text, posixpath.dirname(name), read_member, where)
        mats.update(found)
        problems += probs
    v = obj["v"]
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).reshape(3, 3).T
    lo, hi = v.min(0), v.max(0)
    # SweetHome3D's size order is width (x), depth (z), height (y)
    scale = np.ones(3) if size is None else np.array([size[0], size[2], size[1]]) / np.maximum(hi - lo, 1e-9)
    if size is not None and not np.all((hi - lo) > 1e-9):
        scale = np.where((hi - lo) > 1e-9, scale, 1.0)
    to_world = SH3D_TO_WORLD @ np.diag(scale)
    corners = obj["corners"]
    if (corners[:, 2] >= 0).all():
        n = obj["vn"][corners[:, 2]]
        if rotation is not None:
            n = n @ np.asarray(rotation, dtype=np.float64).reshape(3, 3).T
    else:
        n = corner_normals(v, corners, obj["smooth"])
    pos = v[corners[:, 0]] @ to_world.T
    n = n @ np.linalg.inv(to_world)  # row vectors: (A^-T n)^T = n A^-1
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    lo, hi = pos.min(0), pos.max(0)
    pos -= np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    uv_ok = corners[:, 1] >= 0
    parts = []
    face_mat = obj["material"]
    for m in np.unique(face_mat):
        sel = np.repeat(face_mat == m, 3)
        name = obj["materials"][m] if m >= 0 else ""
        material = mats.get(name)
        if material is None:
            glassy = any(w in name.lower() for w in ("glass", "cristal", "crystal", "transparent"))
            material = Material(name or "default", np.full(3, 0.85 if glassy else 0.8), 0.3 if glassy else 1.0)
            if name:
                problems.append(f"{where}: material '{name}' is not defined")
        uvs = None
        if material.texture is not None:
            if uv_ok[sel].all():
                uvs = obj["vt"][corners[sel, 1]].astype(np.float32)
            else:
                problems.append(f"{where}: material '{name}' has a texture but faces without texture coordinates")
                material = Material(material.name, material.color, material.opacity, None, material.shininess)
        parts.append(Part(pos[sel].astype(np.float32), n[sel].astype(np.float32), uvs, material))
    return Model(piece, parts, problems)


@lru_cache(maxsize=48)
def load_model(piece: Piece) -> Model:
    """The mesh of a catalogue piece (cached; treat it as read-only)."""
    with zipfile.ZipFile(piece.library) as archive:
        def read_member(name: str) -> bytes:
            return _member(archive, name, piece.library)

        return load_obj_model(read_member, piece.model, f"{piece.library}: {piece.model}",
                              piece.rotation, piece.size, piece)


def simplified(model: Model, cells: int = 200, min_triangles: int = 6000, cell_size: float | None = None) -> Model:
    """Vertex clustering for small renders: corners are snapped to the mean of their cell in a grid
    of ``cells`` cells along the model's bounding-box diagonal, and triangles that collapse (two
    corners in one cell) are dropped. Normals and texture coordinates stay per corner. Models
    with fewer than ``min_triangles`` triangles are returned unchanged. ``cell_size`` (metres),
    when given, is used instead of the diagonal / ``cells``."""
    count = sum(len(p.positions) for p in model.parts) // 3
    if count < min_triangles:
        return model
    pts = np.concatenate([p.positions for p in model.parts]).astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    cell = max(float(np.linalg.norm(hi - lo)) / cells if cell_size is None else cell_size, 1e-9)
    grid = np.floor((pts - lo) / cell).astype(np.int64)
    span = grid.max(0) + 1
    _, key = np.unique((grid[:, 0] * span[1] + grid[:, 1]) * span[2] + grid[:, 2], return_inverse=True)
    key = key.reshape(-1)
    sums = np.zeros((key.max() + 1, 3))
    np.add.at(sums, key, pts)
    mean = sums / np.bincount(key)[:, None]
    parts, start = [], 0
    for p in model.parts:
        n = len(p.positions)
        k = key[start:start + n].reshape(-1, 3)
        keep = (k[:, 0] != k[:, 1]) & (k[:, 1] != k[:, 2]) & (k[:, 0] != k[:, 2])
        corners = np.repeat(keep, 3)
        if keep.any():
            parts.append(Part(mean[k[keep].reshape(-1)].astype(np.float32), p.normals[corners],
                              None if p.uvs is None else p.uvs[corners], p.material))
        start += n
    return Model(model.piece, parts or model.parts, list(model.problems))
