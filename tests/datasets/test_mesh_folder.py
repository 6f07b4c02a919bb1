"""`nvs data synth --kind meshes`: a folder of the user's own textured OBJ models rendered as the
furniture kind renders the packaged ones, with each model's attribution; files are read only from
inside each model's folder."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from nvs.commands.data import synth
from nvs.datasets import mesh_render
from nvs.datasets.mesh_folder import find_meshes, load_mesh
from tests.datasets.asset_fixtures import QUAD_OBJ, QUAD_MTL, checker_png

CUBE_OBJ = "".join(f"v {x} {y} {z}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)) + """
f 1 2 4 3
f 5 7 8 6
f 1 5 6 2
f 3 4 8 7
f 1 3 7 5
f 2 6 8 4
"""
needs_gl = pytest.mark.skipif(mesh_render.unavailable_reason() is not None, reason=str(mesh_render.unavailable_reason()))


def _mesh_folder(root):
    quad = root / "quad"
    quad.mkdir(parents=True)
    (quad / "quad.obj").write_text(QUAD_OBJ)
    (quad / "quad.mtl").write_text(QUAD_MTL)
    (quad / "quad.png").write_bytes(checker_png())
    (root / "cube.obj").write_text(CUBE_OBJ)
    (root / "attribution.json").write_text(json.dumps(
        {"quad": {"creator": "Tester", "licence": "CC0-1.0", "source": "written by the test"}}))
    return root


def _images(out, scene):
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255
                     for p in sorted((out / "scenes" / scene / "images").glob("*.png"))])


@needs_gl
def test_a_mesh_folder_renders_each_model_on_white_with_its_texture_and_attribution(tmp_path):
    meshes = _mesh_folder(tmp_path / "meshes")
    out = tmp_path / "out"
    summary = synth("meshes", 2, 6, 32, 32, "lact", out, 0, meshes=meshes, up="y")
    assert summary["scenes_written"] == 2 and summary["models"] == 2 and summary["up"] == "y"
    credits = json.loads((out / "attribution.json").read_text())
    by_id = {m["id"]: m for m in credits["models"]}
    assert by_id["quad"]["licence"] == "CC0-1.0" and by_id["quad"]["creator"] == "Tester"
    assert by_id["cube"]["licence"] == "not given" and by_id["cube"]["source"].endswith("cube.obj")
    assert str(meshes) in credits["source"]
    cube, quad = _images(out, "meshes_all_0000000"), _images(out, "meshes_all_0000001")  # models by name: cube, quad
    for views in (cube, quad):
        assert (views == 1.0).all(-1).mean() > 0.3 and (views < 0.9).any(-1).any()  # an object on white
    red = (quad[..., 0] > 0.5) & (quad[..., 1] < 0.25) & (quad[..., 2] < 0.25)
    blue = (quad[..., 2] > 0.5) & (quad[..., 0] < 0.25) & (quad[..., 1] < 0.25)
    assert red.any() and blue.any()  # the checker texture's quadrants
    again = tmp_path / "again"
    synth("meshes", 2, 6, 32, 32, "lact", again, 0, meshes=meshes, up="y")
    assert np.array_equal(_images(again, "meshes_all_0000001"), quad)  # deterministic per seed
    turned = tmp_path / "turned"
    synth("meshes", 2, 6, 32, 32, "lact", turned, 0, meshes=meshes, up="z")
    assert not np.array_equal(_images(turned, "meshes_all_0000001"), quad)


def test_mesh_folders_that_cannot_be_read_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        find_meshes(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no OBJ model"):
        find_meshes(tmp_path / "empty")
    two = tmp_path / "two" / "chair"
    two.mkdir(parents=True)
    (two / "a.obj").write_text(CUBE_OBJ)
    (two / "b.obj").write_text(CUBE_OBJ)
    with pytest.raises(ValueError, match="holds 2 OBJ files .*one model per folder"):
        find_meshes(tmp_path / "two")
    meshes = _mesh_folder(tmp_path / "meshes")
    (meshes / "attribution.json").write_text(json.dumps({"sofa": {"licence": "CC0-1.0"}}))
    with pytest.raises(ValueError, match="names models the folder does not hold: \\['sofa'\\]"):
        find_meshes(meshes)
    (meshes / "attribution.json").write_text(json.dumps({"quad": {"licence": 3}}))
    with pytest.raises(ValueError, match="keys must be"):
        find_meshes(meshes)
    (meshes / "attribution.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        find_meshes(meshes)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--meshes DIR goes with --kind meshes"):
        synth("furniture", 1, 2, 32, 32, "lact", out, 0, meshes=meshes)
    with pytest.raises(ValueError, match="--meshes DIR goes with --kind meshes"):
        synth("meshes", 1, 2, 32, 32, "lact", out, 0)
    with pytest.raises(ValueError, match="--split does not apply to --kind meshes"):
        synth("meshes", 1, 2, 32, 32, "lact", out, 0, split="val", meshes=meshes)
    with pytest.raises(ValueError, match="--elevations must be LOW HIGH"):
        synth("meshes", 1, 2, 32, 32, "lact", out, 0, meshes=meshes, elevations=(60.0, 10.0))
    with pytest.raises(ValueError, match="--elevations applies to --kind furniture and meshes"):
        synth("object", 1, 2, 32, 32, "lact", out, 0, elevations=(-30.0, 60.0))
    with pytest.raises(ValueError, match="--fov applies to --kind furniture and meshes"):
        synth("room", 1, 2, 32, 32, "lact", out, 0, fov=20.0)
    assert not out.exists()


def test_a_model_reads_no_file_outside_its_folder_and_a_renamed_mtl_is_found(tmp_path):
    (tmp_path / "secret.png").write_bytes(checker_png())
    model = tmp_path / "meshes" / "quad"
    model.mkdir(parents=True)
    (model / "quad.obj").write_text(QUAD_OBJ.replace("mtllib quad.mtl", "mtllib exported.mtl"))
    (model / "quad.mtl").write_text(QUAD_MTL.replace("map_Kd quad.png", "map_Kd link.png"))
    (model / "link.png").symlink_to(tmp_path / "secret.png")
    (entry,) = find_meshes(tmp_path / "meshes")
    loaded = load_mesh(entry, "y")
    assert any("exported.mtl does not exist; read quad.mtl instead" in p for p in loaded.problems)
    assert any("link.png" in p for p in loaded.problems)
    assert all(part.material.texture is None for part in loaded.parts)  # the link out was not followed
    (model / "link.png").unlink()
    (model / "quad.mtl").write_text(QUAD_MTL.replace("map_Kd quad.png", "map_Kd ../../secret.png"))
    (entry,) = find_meshes(tmp_path / "meshes")
    load_mesh.cache_clear()
    assert all(part.material.texture is None for part in load_mesh(entry, "y").parts)


def test_a_model_in_the_layout_of_google_scanned_objects_is_read_with_its_texture(tmp_path):
    """<model>/meshes/model.obj with its texture in <model>/materials/textures/; a sub-folder with
    no OBJ is left out, and the log says so."""
    model = tmp_path / "meshes" / "mug"
    (model / "meshes").mkdir(parents=True)
    (model / "materials" / "textures").mkdir(parents=True)
    (model / "meshes" / "model.obj").write_text(QUAD_OBJ.replace("mtllib quad.mtl", "mtllib model.mtl"))
    (model / "meshes" / "model.mtl").write_text(QUAD_MTL.replace("map_Kd quad.png", "map_Kd ../materials/textures/texture.png"))
    (model / "materials" / "textures" / "texture.png").write_bytes(checker_png())
    (tmp_path / "meshes" / "notes").mkdir()
    said = []
    (entry,) = find_meshes(tmp_path / "meshes", said.append)
    assert (entry.name, entry.obj) == ("mug", "meshes/model.obj")
    assert said == [f"{tmp_path / 'meshes' / 'notes'}: no OBJ file inside; left out"]
    textures = [part.material.texture for part in load_mesh(entry, "z").parts]
    assert any(t is not None and t.shape == (64, 64, 3) for t in textures)


def test_a_linked_folder_out_of_the_mesh_folder_and_bad_model_files_are_refused_or_reported(tmp_path):
    outside = _mesh_folder(tmp_path / "outside")
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "evil").symlink_to(outside / "quad", target_is_directory=True)
    with pytest.raises(ValueError, match="evil is a link out of the mesh folder"):
        find_meshes(meshes)
    (meshes / "evil").unlink()
    model = meshes / "quad"
    model.mkdir()
    (model / "quad.obj").write_text(QUAD_OBJ)
    (model / "quad.mtl").write_text(QUAD_MTL.replace("d 1.0", "d").replace("Kd 0.2 0.2 0.2", "Kd x y z")
                                    .replace("map_Kd quad.png", "map_Kd bomb.png"))
    Image.new("1", (9000, 9000)).save(model / "bomb.png")  # more pixels than a texture may have
    loaded = load_mesh(find_meshes(meshes)[0], "y")
    said = "\n".join(loaded.problems)
    assert "MTL line 2: cannot read 'Kd x y z'" in said and "MTL line 3: cannot read 'd'" in said
    assert "texture 'bomb.png' of material 'checker' cannot be decoded" in said
    (model / "quad.obj").write_text(QUAD_OBJ.replace("v 0.5 0.0 0.0", "v 1e400 0.0 0.0"))
    load_mesh.cache_clear()
    with pytest.raises(ValueError, match="quad.obj, line 3: cannot read 'v 1e400 0.0 0.0'"):
        load_mesh(find_meshes(meshes)[0], "y")


@needs_gl
def test_a_mesh_data_set_resumes_only_with_the_settings_it_was_written_with(tmp_path):
    meshes = _mesh_folder(tmp_path / "meshes")
    out = tmp_path / "out"
    synth("meshes", 1, 2, 32, 32, "lact", out, 0, meshes=meshes)
    first = (out / "scenes" / "meshes_all_0000000" / "images" / "000.png").read_bytes()
    summary = synth("meshes", 2, 2, 32, 32, "lact", out, 0, meshes=meshes)  # adds seed 1, keeps seed 0
    assert summary["scenes_written"] == 2
    assert (out / "scenes" / "meshes_all_0000000" / "images" / "000.png").read_bytes() == first
    with pytest.raises(ValueError, match="holds meshes scenes written with other settings \\(up: 'y' -> 'z'\\)"):
        synth("meshes", 3, 2, 32, 32, "lact", out, 0, meshes=meshes, up="z")
    assert not (out / "scenes" / "meshes_all_0000002").exists()


@needs_gl
def test_a_mesh_data_set_takes_the_lens_asked_for_and_resumes_only_at_it(tmp_path):
    meshes = _mesh_folder(tmp_path / "meshes")
    out = tmp_path / "out"
    summary = synth("meshes", 1, 2, 32, 32, "lact", out, 0, meshes=meshes, fov=20.0)
    assert summary["fov"] == 20.0
    scale = math.tan(math.radians(25)) / math.tan(math.radians(10))
    for f in json.loads((out / "scenes" / "meshes_all_0000000" / "opencv_cameras.json").read_text()):
        assert f["fx"] == pytest.approx(16 / math.tan(math.radians(10)), rel=1e-5)
        assert np.linalg.norm(np.linalg.inv(np.array(f["w2c"]))[:3, 3]) == pytest.approx(2.7 * scale, rel=1e-5)
    assert (_images(out, "meshes_all_0000000") < 0.9).any(-1).any()  # the model is in the frame
    with pytest.raises(ValueError, match="fov: 20.0 -> 50.0"):
        synth("meshes", 2, 2, 32, 32, "lact", out, 0, meshes=meshes)
    assert not (out / "scenes" / "meshes_all_0000001").exists()


def test_a_model_is_fitted_to_the_unit_sphere_or_into_the_cube(tmp_path):
    from nvs.datasets.asset_scenes import fit_transform

    box_vertices = "".join(f"v {x + 3} {y} {z}\n" for x in (-4, 4) for y in (-2, 2) for z in (-1, 1))  # 8 x 4 x 2, off-centre
    (tmp_path / "box.obj").write_text(box_vertices + CUBE_OBJ[CUBE_OBJ.index("f "):])
    models = {e.name: load_mesh(e) for e in find_meshes(_mesh_folder(tmp_path))}

    def fitted(name, fit):
        m = fit_transform(models[name], 0.0, fit)
        points = np.concatenate([p.positions for p in models[name].parts]).astype(np.float64)
        return points @ m[:3, :3].T + m[:3, 3]

    assert np.linalg.norm(fitted("cube", "sphere"), axis=1).max() == pytest.approx(1.0)
    assert np.abs(fitted("cube", "cube")).max(axis=0) == pytest.approx([1.0, 1.0, 1.0])  # sqrt(3) times larger
    box = fitted("box", "cube")  # one scale for every axis: the longest side reaches the cube's faces
    assert sorted(box.max(axis=0) - box.min(axis=0)) == pytest.approx([0.5, 1.0, 2.0])
    assert (box.max(axis=0) + box.min(axis=0)) == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    with pytest.raises(ValueError, match="unknown object fit 'box'"):
        fit_transform(models["cube"], 0.0, "box")


@needs_gl
def test_a_mesh_data_set_fitted_into_the_cube_draws_the_model_larger_and_resumes_only_so(tmp_path):
    meshes = _mesh_folder(tmp_path / "meshes")
    covered = {}
    for fit in ("sphere", "cube"):
        summary = synth("meshes", 1, 4, 32, 32, "lact", tmp_path / fit, 0, meshes=meshes, fit=fit)
        assert summary["fit"] == fit
        scene = next((tmp_path / fit / "scenes").iterdir()).name
        covered[fit] = float((_images(tmp_path / fit, scene) < 0.98).any(-1).mean())
    assert covered["sphere"] > 0.02 and covered["cube"] > 1.5 * covered["sphere"]
    with pytest.raises(ValueError, match="fit: 'cube' -> 'sphere'"):
        synth("meshes", 2, 4, 32, 32, "lact", tmp_path / "cube", 0, meshes=meshes)
    with pytest.raises(ValueError, match="--fit applies to --kind furniture and meshes"):
        synth("object", 1, 2, 32, 32, "lact", tmp_path / "object", 0, fit="cube")
