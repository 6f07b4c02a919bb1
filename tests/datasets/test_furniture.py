"""The furniture library reader: catalogue, licences, safe member reads, OBJ/MTL, the split."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from nvs.datasets import furniture
from tests.datasets.asset_fixtures import CATALOG, QUAD_OBJ, write_library


def test_properties_escapes_continuations_and_separators():
    text = ("# comment\n! other comment\nname=Caf\\u00e9 10\\u20ac\nlong=one \\\n    two\n"
            "colon: value\nescaped\\ key\\=x=value\nsplit at blank\n").encode("iso-8859-1")
    props = furniture.parse_properties(text)
    assert props["name"] == "Café 10€"
    assert props["long"] == "one two"
    assert props["colon"] == "value"
    assert props["escaped key=x"] == "value"
    assert props["split"] == "at blank"
    assert furniture.parse_properties("caf\xe9=\xe9t\xe9\n".encode("iso-8859-1")) == {"café": "été"}


def test_catalogue_pieces_sizes_rotation_and_licence(tmp_path):
    pieces = furniture.read_catalog(write_library(tmp_path))
    assert [p.id for p in pieces] == ["Test#quad", "Test#turned"]
    quad, turned = pieces
    assert quad.name == "Quad été" and quad.category == "Living room" and quad.creator == "Tester"
    assert quad.model == "test/quad/quad.obj"
    assert quad.size == pytest.approx((1.0, 0.01, 1.0))
    assert quad.rotation is None and turned.rotation == (1, 0, 0, 0, 0, 1, 0, -1, 0)
    assert quad.licence == "CC-BY-3.0"
    attribution = quad.attribution()
    assert attribution["creator"] == "Tester" and attribution["licence"] == "CC-BY-3.0"
    assert "test.sh3f" in attribution["source"]


def test_model_rotation_is_applied_and_the_model_is_z_up(tmp_path):
    quad, turned = furniture.read_catalog(write_library(tmp_path))
    upright = furniture.load_model.__wrapped__(quad).bounds()
    # an upright 1 m square facing -y, footprint centred, base on the floor
    assert upright[0] == pytest.approx([-0.5, 0.0, 0.0], abs=1e-6)
    assert upright[1] == pytest.approx([0.5, 0.0, 1.0], abs=1e-6)
    flat = furniture.load_model.__wrapped__(turned).bounds()
    # modelRotation turns it to lie on the floor, stretched to the catalogue's 1 m x 1 m
    assert flat[0] == pytest.approx([-0.5, -0.5, 0.0], abs=1e-6)
    assert flat[1] == pytest.approx([0.5, 0.5, 0.0], abs=1e-6)


def test_materials_textures_glass_and_reported_problems(tmp_path):
    model = furniture.load_model.__wrapped__(furniture.read_catalog(write_library(tmp_path))[0])
    (part,) = model.parts
    assert part.material.texture.shape == (64, 64, 3) and part.uvs.shape == (6, 2)
    assert part.normals == pytest.approx(np.tile([0.0, -1.0, 0.0], (6, 1)))
    problems = " | ".join(model.problems)
    assert "absolute or outside path" in problems and "'lost'" in problems
    assert "'test/quad/nowhere.png', which the library lacks" in problems
    mats, _ = furniture.parse_mtl("newmtl g\nKd 0.5 0.5 0.5\nd 0.4\nnewmtl o\nKd 1 0 0\n", "x", lambda n: b"", "t")
    assert mats["g"].glass and mats["g"].opacity == pytest.approx(0.4) and not mats["o"].glass


def test_normals_from_smoothing_groups_when_the_obj_has_none(tmp_path):
    # a tent: two faces meeting at a ridge; smoothed they share the ridge normal, flat they do not
    tent = "v -1 0 0\nv 0 1 0\nv 0 1 1\nv -1 0 1\nv 1 0 0\nv 1 0 1\n{s}\nf 1 2 3 4\nf 2 5 6 3\n"
    for s, shared in (("s 1", True), ("s off", False)):
        obj = furniture.parse_obj(tent.format(s=s), "tent")
        n = furniture.corner_normals(obj["v"], obj["corners"], obj["smooth"])
        ridge = n[obj["corners"][:, 0] == 1]  # every corner at vertex 2 (index 1)
        assert np.allclose(ridge, ridge[0]) == shared


def test_paths_outside_the_library_are_refused():
    assert furniture._resolve("test/quad", "../../../etc/passwd") is None
    assert furniture._resolve("test/quad", "/home/author/wood.jpg") is None
    assert furniture._resolve("test/quad", "C:\\textures\\wood.jpg") is None
    assert furniture._resolve("test/quad", "maps/wood.jpg") == "test/quad/maps/wood.jpg"


def test_broken_inputs_raise_clear_errors(tmp_path):
    bad_zip = tmp_path / "broken.sh3f"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable furniture library"):
        furniture.read_catalog(bad_zip)
    with pytest.raises(ValueError, match="missing 'width#1'"):
        furniture.read_catalog(write_library(tmp_path, catalog=CATALOG.replace("width#1=100\n", "")))
    with pytest.raises(ValueError, match="modelRotation must be 9 numbers"):
        furniture.read_catalog(write_library(tmp_path, catalog=CATALOG.replace("0 0 1 0 -1 0", "0 0 1")))
    with pytest.raises(ValueError, match="line 12.*does not exist|does not exist"):
        lib = write_library(tmp_path, obj=QUAD_OBJ + "f 1/1/1 2/2/1 9/3/1\n")
        furniture.load_model.__wrapped__(furniture.read_catalog(lib)[0])
    with pytest.raises(ValueError, match="line 2: cannot read"):
        furniture.parse_obj("v 0 0 0\nv 1 x 0\n", "broken.obj")
    empty = tmp_path / "empty.sh3f"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="PluginFurnitureCatalog.properties' is not in the library"):
        furniture.read_catalog(empty)


def test_split_is_stable_about_ten_percent_and_disjoint():
    ids = [f"Library#model{i}" for i in range(4000)]
    val = {i for i in ids if furniture.split_of(i) == "val"}
    assert 0.085 < len(val) / len(ids) < 0.115
    assert [furniture.split_of(i) for i in ids[:50]] == [furniture.split_of(i) for i in ids[:50]]
    # the hash is SHA-256 of the id: fixed across runs, machines and Python versions
    assert furniture.split_of("Blend Swap CC-0#armchair") == furniture.split_of("Blend Swap CC-0#armchair")
    with pytest.raises(ValueError, match="unknown split"):
        furniture.pieces_of_split("test", pieces=[])


@pytest.mark.skipif(furniture.missing_reason() is not None, reason=str(furniture.missing_reason()))
def test_installed_library_split_never_overlaps():
    pieces = furniture.catalog()
    assert len(pieces) >= 800 and len({p.id for p in pieces}) == len(pieces)
    train = {p.id for p in furniture.pieces_of_split("train")}
    val = {p.id for p in furniture.pieces_of_split("val")}
    assert train.isdisjoint(val) and len(train) + len(val) == len(pieces)
    assert 0.07 < len(val) / len(pieces) < 0.13
    assert {p.licence for p in pieces} <= {"CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US"}
