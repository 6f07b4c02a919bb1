import pytest
import torch

from nvs.cameras import Cameras
from nvs.inference import configure_inference, memorize_views, render_cameras
from nvs.models import LaCTRenderer
from nvs.models.fast_weight import cpu_has_native_bf16

from tests.helpers import ring_cameras, tiny_config


def _setup():
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(newton_schulz_dtype="float32")).eval()
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return model, images, ring_cameras(1, 6)[0], ring_cameras(1, 5, offset=0.3)[0]


def test_memory_budget_through_the_helpers_keeps_results():
    model, images, cams, targets = _setup()
    configure_inference(model, None)
    state, _ = memorize_views(model, images, cams)
    expected, _ = render_cameras(model, state, targets, chunk=5)
    configure_inference(model, 6 * 16 * 32 * 4 + 60_000)  # a few chunks per layer
    with torch.no_grad():
        assert model.chunk_plan(1, 6, 16) is not None
    state, _ = memorize_views(model, images, cams)
    got, _ = render_cameras(model, state, targets, chunk=5)
    assert (got - expected).abs().max() < 1e-5
    configure_inference(model, "auto")  # this small scene fits the free memory in one pass
    with torch.no_grad():
        assert model.memory_budget > 0 and model.chunk_plan(1, 6, 16) is None


def test_configure_refuses_bad_settings(monkeypatch):
    model, *_ = _setup()
    with pytest.raises(ValueError, match="--dtype"):
        configure_inference(model, None, "fp16")
    with pytest.raises(ValueError, match="memory size"):
        configure_inference(model, "plenty")
    monkeypatch.setattr("nvs.models.fast_weight.cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="native bfloat16"):
        configure_inference(model, None, "bf16")


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 inference on the CPU needs native bfloat16")
def test_bf16_renders_close_to_fp32():
    model, images, cams, targets = _setup()
    out = {}
    for dtype in ("fp32", "bf16"):
        configure_inference(model, None, dtype)
        out[dtype] = render_cameras(model, memorize_views(model, images, cams)[0], targets, chunk=5)[0]
    assert out["bf16"].dtype == torch.float32
    diff = (out["bf16"] - out["fp32"]).abs()
    assert 0 < diff.max() and diff.mean() < 0.01  # bf16 did run, and rounds only


def test_a_capture_unlike_the_renderers_training_is_warned_about():
    from nvs.datasets.procedural import room_scene
    from nvs.inference import capture_warning

    model = LaCTRenderer(tiny_config()).eval()
    walk, ring = room_scene(3, 8, 32, 32).cameras, ring_cameras(1, 8)[0]
    assert "walk through a scene" in capture_warning(model, walk) and "--checkpoint scene" in capture_warning(model, walk)
    assert capture_warning(model, ring) is None
    on_white, on_a_table = torch.ones(8, 3, 32, 32), torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert capture_warning(model, ring, on_white) is None
    assert "photos show a background" in capture_warning(model, ring, on_a_table)
    model.normalization = "lvsm"  # a renderer trained on re-expressed scenes
    assert capture_warning(model, walk) is None
    assert "--checkpoint object" in capture_warning(model, ring) == capture_warning(model, ring, on_white)
    assert capture_warning(model, ring, on_a_table) is None  # what auto gives such photos
    telephoto = Cameras(ring.intrinsics * torch.tensor([4.0, 4.0, 1.0, 1.0]), ring.c2w, 32, 32)
    assert capture_warning(model, telephoto, on_white) is None  # what auto gives a telephoto turntable
    model.normalization = "object"
    assert "the photos span 13.3 deg across their shorter side, under the 23 deg below which" in capture_warning(model, telephoto, on_white)


def test_auto_picks_the_shipped_renderer_of_the_capture_kind(tmp_path):
    from nvs.assets import OBJECT_CHECKPOINT, SCENE_CHECKPOINT
    from nvs.datasets.procedural import room_scene
    from nvs.inference import choose_checkpoint

    walk, ring = room_scene(3, 8, 32, 32).cameras, ring_cameras(1, 8)[0]
    assert choose_checkpoint("auto", walk) == (SCENE_CHECKPOINT, "auto: the input cameras walk through a scene")
    assert choose_checkpoint("auto", ring) == (OBJECT_CHECKPOINT, "auto: the input cameras circle an object")
    assert choose_checkpoint("auto", ring, torch.ones(8, 3, 32, 32))[0] == OBJECT_CHECKPOINT
    on_a_table = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    path, why = choose_checkpoint("auto", ring, on_a_table)
    assert path == SCENE_CHECKPOINT and "the photos show a background" in why
    assert choose_checkpoint("object", ring, on_a_table)[0] == OBJECT_CHECKPOINT
    telephoto = Cameras(ring.intrinsics * torch.tensor([4.0, 4.0, 1.0, 1.0]), ring.c2w, 32, 32)
    path, why = choose_checkpoint("auto", telephoto, torch.ones(8, 3, 32, 32))
    assert path == SCENE_CHECKPOINT and "through a long lens (13 deg; the object renderer was trained at 50)" in why
    assert choose_checkpoint("scene", ring)[0] == SCENE_CHECKPOINT  # a name overrides the capture
    assert choose_checkpoint(tmp_path / "mine.safetensors", walk)[0] == tmp_path / "mine.safetensors"
    with pytest.raises(ValueError, match="input cameras"):
        choose_checkpoint("auto")


def test_the_gains_of_a_memorised_scene_are_reported_whatever_runs_it():
    from nvs.inference import exposure_gains, exposure_note, reads_backdrops
    from nvs.models.turn_ensemble import TurnEnsemble

    _, images, cams, _ = _setup()
    torch.manual_seed(0)
    plain = LaCTRenderer(tiny_config())
    matching = LaCTRenderer(tiny_config(match_exposure=True))
    matching.load_state_dict(plain.state_dict())
    assert exposure_gains(memorize_views(plain.eval(), images, cams)[0]) is None and exposure_note(None) is None
    with torch.no_grad():
        for runner in (matching.eval(), TurnEnsemble(matching, 2)):
            gains = exposure_gains(memorize_views(runner, images, cams)[0])
            assert gains.shape == (6, 3) and gains.device.type == "cpu"
    note = exposure_note(torch.tensor([[0.9, 1.0, 1.1], [1.05, 0.98, 0.95]]))
    assert note.startswith("input exposures matched") and "0.90-1.10" in note
    assert exposure_note(torch.ones(2, 3)) is None and exposure_note([[1.0, 1.0, 1.0]]) is None  # nothing was done
    backdrop = exposure_note([[0.8, 0.8, 0.8], [0.8, 0.82, 0.8]], backdrop=True)
    assert backdrop.startswith("input backdrops brought to white") and "0.80-0.82" in backdrop
    reading = LaCTRenderer(tiny_config(sweep_views=2, sweep_hull=10.0, backdrop_white=True))
    assert reads_backdrops(reading) and reads_backdrops(TurnEnsemble(reading, 2))
    assert not reads_backdrops(matching) and not reads_backdrops(TurnEnsemble(matching, 2))


def test_a_scene_swept_on_halved_photos_says_so_whatever_runs_it():
    from nvs.inference import scene_octave, sweep_note
    from nvs.models.turn_ensemble import TurnEnsemble

    images, cams = torch.rand(4, 3, 64, 64), ring_cameras(1, 4, 64)[0]
    halving = LaCTRenderer(tiny_config(sweep_views=2, sweep_max_step=0.5)).eval()
    with torch.no_grad():
        for runner in (halving, TurnEnsemble(halving, 2)):
            assert scene_octave(memorize_views(runner, images, cams)[0]) == 1
        assert scene_octave(memorize_views(LaCTRenderer(tiny_config(sweep_views=2)).eval(), images, cams)[0]) == 0
        assert scene_octave(memorize_views(LaCTRenderer(tiny_config()).eval(), images, cams)[0]) == 0
    assert sweep_note(0) is None and "1/4 of their resolution" in sweep_note(2)


_HEAP_AFTER_A_LARGE_TENSOR = """
import ctypes, torch
from nvs.inference import reuse_freed_memory
class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2, all size_t
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
took = reuse_freed_memory()
tensor = torch.empty(50_000_000)  # 200 MB
mapped = mallinfo2().hblkhd
del tensor
print(took, mapped >> 20, mallinfo2().fordblks >> 20)
"""


def _heap_after_a_large_tensor(**env) -> tuple[str, int, int]:
    """(whether the settings took, MB of mmapped blocks while a 200 MB tensor lives, MB of free heap
    memory kept after it is freed), in a fresh interpreter with ``env`` and no other MALLOC_ variables."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    took, mapped, kept = subprocess.run([sys.executable, "-c", _HEAP_AFTER_A_LARGE_TENSOR], env=clean | env,
                                        capture_output=True, text=True, timeout=120, check=True).stdout.split()
    return took, int(mapped), int(kept)


@pytest.mark.slow
def test_large_tensors_come_from_the_heap_and_return_to_it_unless_the_environment_says_otherwise():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's (mallopt, mallinfo2)")
    took, mapped, kept = _heap_after_a_large_tensor()
    assert took == "True" and mapped < 100 and kept >= 190  # on the heap, and kept there for the next tensor
    took, mapped, kept = _heap_after_a_large_tensor(MALLOC_TOP_PAD_="0")
    assert took == "False" and mapped >= 190 and kept < 100  # glibc's default: its own mmap, unmapped when freed


def test_auto_input_views_counts_only_for_renderers_that_draw_from_their_photos():
    """--views auto raises the count only where it was measured: renderers with a plane sweep or
    view blending, in any frame; a renderer that only decodes keeps 8, whatever its frame."""
    from nvs.inference import AUTO_VIEWS, AUTO_VIEWS_PHOTOS, auto_input_views

    counts = {}
    for name, config in (("decoder", tiny_config()), ("sweep", tiny_config(sweep_views=2, sweep_planes=8)),
                         ("blend", tiny_config(view_blend=2))):
        for frame in ("object", "lvsm", None):
            model = LaCTRenderer(config)
            model.normalization = frame
            counts[name, frame] = auto_input_views(model)
    assert AUTO_VIEWS_PHOTOS > AUTO_VIEWS
    assert counts == {**{("decoder", frame): AUTO_VIEWS for frame in ("object", "lvsm", None)},
                      **{(heads, frame): AUTO_VIEWS_PHOTOS for heads in ("sweep", "blend") for frame in ("object", "lvsm", None)}}


@pytest.mark.parametrize("parts", [{"view_blend": 0, "sweep_views": 0}, {"view_blend": 2, "sweep_views": 0},
                                   {"view_blend": 0, "sweep_views": 2}])
def test_each_reading_setting_is_refused_only_by_a_renderer_without_the_part_it_acts_on(parts):
    from nvs.inference import apply_reading_settings
    from nvs.models.config import READING_SETTINGS

    model = LaCTRenderer(tiny_config(**parts))
    has = {"inputs": True, "photos": bool(parts["view_blend"] or parts["sweep_views"]), "sweep": bool(parts["sweep_views"])}
    assert set(READING_SETTINGS.values()) == set(has)
    assert {key: part for key, part in READING_SETTINGS.items() if not key.startswith("sweep_")} == {
        "match_exposure": "inputs", "backdrop_white": "sweep", "photo_interpolation": "photos", "frame_extent": "inputs",
        "frame_canvas": "inputs", "mirror": "inputs"}
    assert all(part == "sweep" for key, part in READING_SETTINGS.items() if key.startswith("sweep_"))
    for key, part in READING_SETTINGS.items():
        value = getattr(model.config, key)  # its own value: refused or not, for the part alone
        if has[part]:
            assert apply_reading_settings(model, [(key, value)]) == {key: value}
        else:
            with pytest.raises(ValueError, match=f"--setting {key}: this renderer (has no plane sweep|samples no photos)"):
                apply_reading_settings(model, [(key, value)])
