"""Running a renderer on a scene: which device, memorising once, rendering cameras in chunks, timing.

Every command and the viewer memorise and render through :func:`memorize_views` and
:func:`render_cameras`, so device placement, GPU synchronisation and chunking live in one place.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import time
import warnings
import weakref

import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.geometry.capture import MIN_OBJECT_FOV_DEG
from nvs.progress import Progress


HEAP_ALLOCATION_LIMIT = 1 << 30  # bytes: blocks up to this size come from the C heap (mallopt M_MMAP_THRESHOLD)
KEPT_FREE_BYTES = (1 << 31) - 1  # freed heap memory kept for reuse, not handed back (mallopt M_TRIM_THRESHOLD)
ALLOCATOR_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def reuse_freed_memory() -> bool:
    """Have glibc's allocator serve tensors up to 1 GiB from its heap and keep freed memory there
    for the next ones; the ``nvs`` command does this when it starts.

    By default every block over 32 MB is a fresh mmap, returned to the system when freed, and
    the kernel zero-fills each of its pages again on first touch. The plane sweep allocates and
    frees such blocks by the dozen per view: at 288x512 the page faults took about 40% of a
    view's time (system time 50 s against 125 s of user time for the same benchmark). The cost: the
    process keeps its peak memory instead of handing it back (memorising in chunks still returns
    each chunk's memory before the next: models/chunked.py). Left alone where the environment
    sets glibc's own variables (MALLOC_MMAP_THRESHOLD_ ...: the user's choice wins). Returns
    whether the settings took (False there, and where the C library is not glibc)."""
    if any(name in os.environ for name in ALLOCATOR_ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):  # one without mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, HEAP_ALLOCATION_LIMIT)) and bool(mallopt(m_trim_threshold, KEPT_FREE_BYTES))


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None): ``cuda`` when torch sees a CUDA GPU, else ``cpu``; otherwise the named
    device, refused with a ValueError when this torch build cannot run on it."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only CPU and CUDA devices are supported")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a renderer's parameters live (its inputs must go there)."""
    return next(model.parameters()).device


DEVICE_HELP = "auto (the default: the CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)



INFERENCE_DTYPES = ("fp32", "bf16")
AUTO_TURNS = 4  # copies of the world an object renderer runs in by default (models/turn_ensemble.py; half
# as many turns where it also renders the mirror image, models/mirror_ensemble.py)
# Input views `nvs render --views auto` memorises at most (README, "Your own photos"). On 12 held-out scenes of 48
# frames, 4 of them the targets, both shipped renderers scored best at the largest count tried, 44: the object
# renderer (8: 23.9 dB, 16: 26.0, 32: 27.5, 44: 27.8) and the scene renderer (8: 32.4, 16: 33.5, 32: 33.5, 44: 34.6).
AUTO_VIEWS_PHOTOS = 48  # a renderer that draws from its photos (view blending, plane sweep)
AUTO_VIEWS = 8  # any other (the published models, renderers that only decode): counts not measured
MAX_VIEWS = 4096
MAX_TURNS = 36
TURNS_HELP = ("auto (the default: 4 for renderers trained in the object frame, 2 where the renderer also renders the "
              "mirror image, as the shipped object renderer does; 1 otherwise) or N: memorise and render the scene in N "
              "copies of its world turned about the up axis and keep each pixel's median (N times the compute, twice that "
              "with the mirror image)")
DTYPE_HELP = ("fp32 (the default) or bf16: matrix products in bfloat16 autocast, on GPUs and on CPUs with "
              "native bfloat16 (AVX512-BF16 / AMX)")
MEMORY_BUDGET_HELP = ("memory that memorising and rendering may use above the model and its inputs: auto (the "
                      "default: 80%% of the free memory of the device), a size such as 4G or 512M, or none (one "
                      "pass over all tokens); scenes that do not fit run in chunks, with the same results up to "
                      "float rounding")

def memory_size_argument(text: str) -> str:
    """An argparse type: 'auto', 'none', or a positive size such as 512M or 8G, checked while the
    arguments are parsed (a usage error naming the flag otherwise)."""
    import argparse

    from nvs.models.chunked import parse_memory_size

    if str(text).strip().lower() in ("auto", "none", "off"):
        return text
    try:
        size = parse_memory_size(text) if str(text).strip() else None
        if size is None:
            raise ValueError(f"memory size {text!r} is empty")
        if size > 1 << 50:
            raise ValueError(f"memory size {text!r} is more than any machine has (1 PiB)")
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def auto_input_views(model: torch.nn.Module) -> int:
    """The input views ``--views auto`` memorises at most: AUTO_VIEWS_PHOTOS for renderers that draw
    from their photos, AUTO_VIEWS for any other."""
    config = getattr(model, "config", None)
    return AUTO_VIEWS_PHOTOS if getattr(config, "view_blend", 0) or getattr(config, "sweep_views", 0) else AUTO_VIEWS


def auto_or_count(what: str, high: int):
    """An argparse type: ``auto`` or a whole number of ``what``, 1 to ``high``."""
    import argparse

    def auto_or_count(text: str) -> int | str:
        if str(text).strip().lower() == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not auto or a whole number") from None
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} {what}: use 1-{high}")
        return value

    return auto_or_count


turns_argument = auto_or_count("turns", MAX_TURNS)
views_argument = auto_or_count("input views", MAX_VIEWS)


def add_inference_arguments(parser) -> None:
    """--memory-budget, --dtype and --turns of the commands that memorise and render (eval, render, app)."""
    parser.add_argument("--memory-budget", type=memory_size_argument, default="auto", help=MEMORY_BUDGET_HELP)
    parser.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32", help=DTYPE_HELP)
    parser.add_argument("--turns", type=turns_argument, default="auto", help=TURNS_HELP)


# Inference settings per model, so every caller of memorize_views / render_cameras sees them.
_DTYPES: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device, or MemAvailable of this machine for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def resolve_turns(model: torch.nn.Module, turns: int | str = "auto") -> int:
    """How many turned copies of the world a renderer runs in (models/turn_ensemble.py): ``auto``
    is AUTO_TURNS for renderers trained in the object frame (their checkpoint names the ``object``
    normalisation), half that where their config also renders the mirror image (model config
    ``mirror``: as many copies in all), else 1."""
    if turns == "auto":
        if getattr(model, "normalization", None) != "object":
            return 1
        return AUTO_TURNS // 2 if getattr(getattr(model, "config", None), "mirror", False) else AUTO_TURNS
    if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= MAX_TURNS:
        raise ValueError(f"--turns must be auto or 1-{MAX_TURNS}, got {turns!r}")
    return turns


def chosen_reading_settings(settings: list[tuple[str, object]] | None, has_sweep: bool, samples_photos: bool
                            ) -> dict[str, object]:
    """``settings`` (pairs of a READING_SETTINGS key of nvs.models.config and its value) as a dict,
    for a renderer with or without a plane sweep and sampled photos: ValueError for an unknown key,
    a key given twice, or a setting on a renderer without the part it acts on (its READING_SETTINGS
    value), where it would change nothing. The values are checked where they are laid over a config."""
    from nvs.models.config import READING_SETTINGS

    present = {"sweep": has_sweep, "photos": samples_photos, "inputs": True}
    missing = {"sweep": "has no plane sweep (model config sweep_views 0)",
               "photos": "samples no photos (model config view_blend and sweep_views 0)"}
    chosen: dict[str, object] = {}
    for key, value in settings or []:
        if key not in READING_SETTINGS:
            raise ValueError(f"--setting {key}: not a reading setting; choose one of {', '.join(READING_SETTINGS)}")
        if key in chosen:
            raise ValueError(f"--setting {key}: given twice")
        chosen[key] = value
    for key in chosen:
        if not present[READING_SETTINGS[key]]:
            raise ValueError(f"--setting {key}: this renderer {missing[READING_SETTINGS[key]]}, so the setting would change nothing")
    return chosen


def apply_reading_settings(model: torch.nn.Module, settings: list[tuple[str, object]] | None) -> dict[str, object]:
    """Have a loaded renderer read its photos with ``settings`` (pairs of a READING_SETTINGS key of
    nvs.models.config and its value, as in a model config: ``[("sweep_refine", 0)]``) instead of
    its checkpoint's; its weights stay. ValueError as :func:`chosen_reading_settings` says, or for a
    value the config refuses. Returns the settings applied, as a dict."""
    chosen = chosen_reading_settings(settings, getattr(model, "sweep", None) is not None,
                                     bool(getattr(model, "blends_views", False)))
    if not chosen:
        return chosen
    try:
        changed = dataclasses.replace(model.config, **chosen)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--setting: {exc}") from None
    model.use_reading_settings(changed)
    return chosen


def configure_inference(model: torch.nn.Module, memory_budget: str | int | None = "auto", dtype: str = "fp32",
                        turns: int | str = 1) -> torch.nn.Module:
    """Set how ``model`` runs in :func:`memorize_views` / :func:`render_cameras`: the memory budget of
    renderers that can chunk (``auto``: 80% of the device's free memory now) and the autocast dtype;
    returns the renderer to run: ``model`` itself, or with ``turns`` (:func:`resolve_turns`) above 1
    a turn ensemble of it; where the model config sets ``mirror``, that inside a mirror ensemble
    (models/mirror_ensemble); where it sets ``frame_extent``, that inside object
    framing (models/object_framing). ValueError for an unknown dtype, bf16 on a CPU without native
    bfloat16, or a malformed size."""
    from nvs.models.fast_weight import cpu_has_native_bf16
    from nvs.models.mirror_ensemble import MirrorEnsemble
    from nvs.models.object_framing import ObjectFraming
    from nvs.models.turn_ensemble import TurnEnsemble

    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"--dtype must be one of {INFERENCE_DTYPES}, got {dtype!r}")
    device = model_device(model)
    if dtype == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise ValueError("--dtype bf16 needs a GPU or a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                         "this CPU would emulate it about 100x slower than fp32")
    _DTYPES[model] = dtype
    if hasattr(model, "set_memory_budget"):
        if isinstance(memory_budget, str) and memory_budget.strip().lower() == "auto":
            memory_budget = int(0.8 * free_memory_bytes(device))
        model.set_memory_budget(memory_budget)
    count = resolve_turns(model, turns)
    runner = model if count == 1 else TurnEnsemble(model, count)
    config = getattr(model, "config", None)
    if getattr(config, "mirror", False):
        runner = MirrorEnsemble(runner)
    extent = getattr(config, "frame_extent", 0.0)
    if extent:
        runner = ObjectFraming(runner, extent, canvas=getattr(config, "frame_canvas", False))
    _DTYPES[runner] = dtype
    return runner


def inference_autocast(model: torch.nn.Module):
    """The autocast context of the model's configured dtype (a no-op for fp32)."""
    if _DTYPES.get(model, "fp32") == "fp32":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    # RMSNorm's float32 weights on bfloat16 inputs take the unfused kernel, with the same result
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    stack.enter_context(torch.autocast(model_device(model).type, dtype=torch.bfloat16))
    return stack


@torch.no_grad()
def memorize_views(model: torch.nn.Module, images: Tensor, cams: Cameras):
    """Memorise one scene: images [V, 3, H, W] and cams [V] (any device) -> (state on the model's
    device, seconds including the wait for the GPU)."""
    device = model_device(model)
    start = time.perf_counter()
    with inference_autocast(model):
        state = model.memorize(images[None].to(device), cams.unsqueeze(0).to(device))
    synchronize(device)
    return state, time.perf_counter() - start


def renderer_state(state):
    """The renderer's own state in one memorised by :func:`configure_inference`'s runner: inside
    object framing's, of the capture as given in a mirror ensemble's, and a turn ensemble's first turn."""
    from nvs.models.mirror_ensemble import MirroredStates
    from nvs.models.object_framing import FramedState
    from nvs.models.turn_ensemble import TurnedStates

    if isinstance(state, FramedState):
        state = state.inner
    if isinstance(state, MirroredStates):
        state = state.as_given
    return state.states[0] if isinstance(state, TurnedStates) else state


def framing_zoom(state) -> float:
    """The zoom object framing (model config ``frame_extent``) memorised one scene at; 1.0 for
    the cameras as given."""
    from nvs.models.object_framing import FramedState

    return float(state.scale[0]) if isinstance(state, FramedState) else 1.0


def framing_canvas(state) -> bool:
    """Whether object framing also memorised one scene on a widened canvas (model config ``frame_canvas``)."""
    from nvs.models.object_framing import FramedState

    return isinstance(state, FramedState) and any(canvas is not None for canvas in state.canvases)


def framing_note(zoom: float, canvas: bool = False) -> str | None:
    """One line for a user on cameras object framing zoomed out (:func:`framing_zoom`) and, with
    ``canvas`` (:func:`framing_canvas`), the photos also read on a widened canvas; or None."""
    if zoom == 1.0:
        return None
    widened = (", and averaged with views of the photos as shot on a canvas widened to the same share (frame_canvas)"
               if canvas else "")
    return (f"the object fills more of the photos than the renderer's training objects usually did: every camera zoomed out "
            f"to {zoom:.2f}x about its image centre before rendering (model config frame_extent), the views resampled back"
            f"{widened}")


def exposure_gains(state) -> Tensor | None:
    """The gains [V, 3] a renderer that matches exposures or backdrops (model config
    ``match_exposure``, ``backdrop_white``) divided one memorised scene's photos by (a turn
    ensemble's: those of its first turn), on the CPU; None for a renderer that reads its photos as
    given."""
    first = renderer_state(state)
    gains = getattr(first, "exposure_gains", None)
    return None if gains is None else gains[0].float().cpu()


def reads_backdrops(model: torch.nn.Module) -> bool:
    """Whether a renderer (or the one a turn ensemble runs) brings photos on a plain backdrop to
    white before it reads them (model config ``backdrop_white``)."""
    return bool(getattr(getattr(getattr(model, "renderer", model), "config", None), "backdrop_white", False))


def exposure_note(gains, backdrop: bool = False) -> str | None:
    """One line for a user on what exposure matching, or with ``backdrop`` (:func:`reads_backdrops`)
    the reading of the backdrops, did to the photos (gains [V, 3], a tensor or nested lists), or
    None where it did nothing (no gains, or all 1)."""
    if gains is None:
        return None
    gains = torch.as_tensor(gains)
    if bool((gains == 1).all()):
        return None
    span = f"{float(gains.min()):.2f}-{float(gains.max()):.2f}"
    if backdrop:
        return (f"input backdrops brought to white: each photo's colour channels divided by its backdrop's ({span}), "
                "and the views rendered back on the brightest")
    return f"input exposures matched: each photo's colour channels divided by a gain of {span}"


def scene_octave(state) -> int:
    """How many times the plane sweep halved one memorised scene's photos before matching them
    (model config ``sweep_max_step``; a turn ensemble's: its first turn's); 0 without a sweep."""
    first = renderer_state(state)
    features = getattr(first, "sweep_features", None)
    return 0 if features is None else int(features.octave)


def sweep_note(octave: int) -> str | None:
    """One line for a user on a sweep that matched halved photos (:func:`scene_octave`), or None."""
    if not octave:
        return None
    return (f"input photos far apart for their size: depth matched on them at 1/{2 ** octave} of their resolution "
            "(model config sweep_max_step), the views drawn from them at full resolution")


@torch.no_grad()
def render_cameras(model: torch.nn.Module, state, cams: Cameras, chunk: int = 8,
                   progress: Progress | None = None) -> tuple[Tensor, float]:
    """Render cams [N] from a memorised state, ``chunk`` views per call -> (images [N, 3, H, W] on the
    CPU, seconds of rendering including the wait for the GPU, not the copies back). A ValueError
    names the views if any pixel is NaN or infinite (broken weights or inputs), instead of images
    and scores that would silently be garbage."""
    device = model_device(model)
    out, seconds = [], 0.0
    for i in range(0, cams.shape[0], chunk):
        start = time.perf_counter()
        with inference_autocast(model):
            pred = model.render(state, cams[i : i + chunk].unsqueeze(0).to(device))[0]
        if pred.dtype == torch.bfloat16:
            pred = pred.float()
        synchronize(device)
        seconds += time.perf_counter() - start
        out.append(pred.cpu())
        if progress is not None:
            progress("rendering", min(1.0, (i + chunk) / cams.shape[0]))
    images = torch.cat(out) if out else torch.zeros(0, 3, cams.height, cams.width)
    broken = (~torch.isfinite(images).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if broken:
        raise ValueError(f"the renderer gave NaN or infinite pixels in {len(broken)} of {len(images)} views "
                         f"(views {broken[:10]}{' ...' if len(broken) > 10 else ''}): its weights or these inputs are broken")
    return images, seconds


RENDERER_HELP = ("auto (the shipped renderer trained on this kind of capture: the object renderer for turntables of an "
                 "object on white, the scene renderer for walks through a scene, for photos with a background and for "
                 f"turntables through a long lens, under {MIN_OBJECT_FOV_DEG:.0f} deg across the photos' shorter side), "
                 "object, scene, or a checkpoint file: ours (.safetensors) or a published LaCT .pt")


def choose_checkpoint(spec, cams: Cameras | None = None, images: Tensor | None = None) -> tuple[Path, str]:
    """(checkpoint file, why) for a ``--checkpoint`` value: ``object`` or ``scene`` (the shipped
    renderers), ``auto`` (the shipped renderer of the kind of capture of the input cameras ``cams``
    and, when given, their images [V, 3, H, W]: see nvs.geometry.capture), or a file, returned as
    given."""
    from pathlib import Path

    from nvs.assets import SHIPPED

    spec = str(spec)
    if spec == "auto":
        if cams is None:
            raise ValueError("--checkpoint auto picks a renderer from the input cameras; name object, scene or a file")
        from nvs.geometry.capture import OBJECT_FOV_DEG, field_of_view_deg, suited_renderer

        kind, test = suited_renderer(cams, images)
        why = {"walk": "the input cameras walk through a scene",
               "background": "the input cameras circle an object, but the photos show a background (the object "
                             "renderer knows objects on white only)",
               "long lens": f"the input cameras circle an object, but through a long lens ({field_of_view_deg(cams):.0f} "
                            f"deg; the object renderer was trained at {OBJECT_FOV_DEG:.0f})",
               "turntable": "the input cameras circle an object"}[test]
        return SHIPPED[kind], f"auto: {why}"
    if spec in SHIPPED:
        return SHIPPED[spec], f"the shipped {spec} renderer"
    return Path(spec), "the checkpoint asked for"


def renderer_frame(model: torch.nn.Module, input_cams: Cameras):
    """Cameras -> the same cameras in the frame the renderer was trained in: its checkpoint's scene
    normalisation fitted on the input cameras (unchanged when it names none)."""
    from nvs.geometry.scene_normalization import fitted_frame

    return fitted_frame(getattr(model, "normalization", None) or "none", input_cams)


def capture_warning(model: torch.nn.Module, cams: Cameras, images: Tensor | None = None) -> str | None:
    """A warning when the inputs are not the kind of capture the renderer was trained on
    (nvs.geometry.capture): a walk through a scene, photos with a background, or a long lens, given
    to an object renderer; a turntable of an object on white, through a lens not that long, given to
    our scene renderer: where --checkpoint auto (nvs.geometry.capture.suited_renderer) would pick
    the other renderer; None otherwise (and for published checkpoints). ``images`` [V, 3, H, W]:
    the input photos, when at hand."""
    from nvs.geometry.capture import OBJECT_FOV_DEG, field_of_view_deg, suited_renderer

    if getattr(model, "source_format", "") == "official":
        return None
    # ours trained on walks name a scene normalisation; on objects, none or the object frame
    trained = "object" if getattr(model, "normalization", None) in (None, "none", "object") else "scene"
    suited, test = suited_renderer(cams, images)  # what --checkpoint auto gives these inputs
    if suited == trained:
        return None
    if test == "walk":
        return ("the input cameras walk through a scene rather than circle an object, and this renderer was trained "
                "on objects: expect blurred views; the scene renderer (--checkpoint scene) is trained on walks, and "
                "adapting to the scene's own photos helps")
    if test == "background":
        return ("the photos show a background, and this renderer was trained on objects on white: expect a wrong "
                "background; the scene renderer (--checkpoint scene) draws backgrounds")
    if test == "long lens":
        return (f"the photos span {field_of_view_deg(cams):.1f} deg across their shorter side, under the "
                f"{MIN_OBJECT_FOV_DEG:.0f} deg below which the scene renderer (--checkpoint scene) draws turntables better "
                f"than the shipped object renderer (trained at {OBJECT_FOV_DEG:.0f} deg)")
    return ("the input cameras circle an object on white, and this renderer was trained on walks through rooms: "
            "the object renderer (--checkpoint object) is trained on such turntables")
