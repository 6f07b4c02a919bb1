import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from nvs.datasets.views import ProceduralViews
from nvs.models import load_renderer
from nvs.training.config import load_train_config, recipe_changes
from nvs.models.checkpoint import param_checksum
from nvs.training.loop import build_dataset, freeze_all_but, initial_weights, train
from tests.helpers import ROOT, run_nvs

TINY = [
    "model.dim=32", "model.layers=2", "model.attn_head_dim=16", "model.ttt_head_dim=16",
    "data.height=32", "data.width=32", "data.input_views=3", "data.target_views=2",
    "data.val_scenes=1", "optim.batch_size=2", "optim.warmup_steps=5", "optim.lr=2e-3",
    "run.log_every=1", "run.image_every=5", "run.val_every=1000", "run.keep_last=3",
]


def _cfg(tmp_path, *extra):
    return load_train_config(None, [*TINY, f"run.out_dir={tmp_path / 'run'}", *extra])


@pytest.mark.slow
def test_overfits_one_scene_by_8_db(tmp_path):
    cfg = _cfg(tmp_path, "data.num_scenes=1", "data.input_views=4", "data.target_views=4", "model.dim=64",
               "model.ttt_head_dim=32", "optim.steps=200", "optim.lr=3e-3", "optim.warmup_steps=10",
               "optim.batch_size=1", "run.ckpt_every=1000", "optim.skip_grad_norm=1e9")
    data = ProceduralViews("object", 1, 4, 4, 32, 32, seed=3)
    summary = train(cfg, resume=None, dataset=data)
    first = sum(h["psnr"] for h in summary["history"][:5]) / 5
    last = sum(h["psnr"] for h in summary["history"][-5:]) / 5
    assert last - first >= 8.0, (first, last)


def test_nan_batch_is_skipped_and_counted(tmp_path):
    class Poisoned(ProceduralViews):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            if index == 1:
                item["targets"] = torch.full_like(item["targets"], float("nan"))
            return item

    cfg = _cfg(tmp_path, "data.num_scenes=4", "optim.steps=4", "optim.batch_size=1", "run.ckpt_every=100")
    summary = train(cfg, resume=None, dataset=Poisoned("object", 4, 3, 2, 32, 32))
    assert summary["skipped_steps"] >= 1 and summary["steps"] == 4
    state = load_file(next((tmp_path / "run" / "checkpoints").iterdir()) / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in state.values())


def test_checkpoints_of_re_expressed_scenes_name_their_normalisation(tmp_path):
    cfg = _cfg(tmp_path, "data.scene=room", "data.num_scenes=2", "optim.steps=1", "optim.batch_size=1")
    train(cfg, resume=None)
    model = load_renderer(next((tmp_path / "run" / "checkpoints").iterdir()) / "model.safetensors")
    assert model.normalization == "lvsm"  # procedural rooms are re-expressed in the mean input camera
    assert _cfg(tmp_path).data.normalization is None  # objects stay in their own frame
    assert _cfg(tmp_path, "data.kind=lact", "data.normalize=true").data.normalization == "lvsm"
    # a rule by name: samples re-expressed by it, checkpoints naming it
    cfg = _cfg(tmp_path / "obj", "data.normalize=object", "data.num_scenes=2", "optim.steps=1", "optim.batch_size=1")
    train(cfg, resume=None)
    model = load_renderer(next((tmp_path / "obj" / "run" / "checkpoints").iterdir()) / "model.safetensors")
    assert model.normalization == "object"
    with pytest.raises(ValueError, match="'data.normalize' must be true, false or one of"):
        _cfg(tmp_path, "data.normalize=mean")


def test_checkpoints_record_the_recipe_s_render_settings_and_resume_with_its_training_ones(tmp_path):
    """A run that trains over the fixed sweep range without exposure matching (fast) writes
    checkpoints that render with the range from the inputs and with matching, as shipped."""
    sweep = ["model.sweep_views=2", "model.sweep_planes=4", "data.num_scenes=2", "optim.batch_size=1"]
    render = ["render.sweep_range=inputs", "render.match_exposure=true"]
    train(_cfg(tmp_path, *sweep, *render, "optim.steps=1", "run.ckpt_every=1"), resume=None)
    first = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000001" / "model.safetensors")
    assert (first.config.sweep_range, first.config.match_exposure) == ("inputs", True)
    summary = train(_cfg(tmp_path, *sweep, *render, "optim.steps=2", "run.ckpt_every=1"))  # resumes
    assert summary["start_step"] == 1 and summary["steps"] == 2
    plain = _cfg(tmp_path / "plain", *sweep, "optim.steps=1")
    train(plain, resume=None)
    second = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000002" / "model.safetensors")
    unset = load_renderer(tmp_path / "plain" / "run" / "checkpoints" / "step-0000001" / "model.safetensors")
    assert second.config == first.config and unset.config == plain.model == dataclasses.replace(
        first.config, sweep_range="fixed", match_exposure=False)
    from nvs.models.config import READING_SETTINGS
    from nvs.training.config import RenderConfig
    assert {f.name for f in dataclasses.fields(RenderConfig)} == set(READING_SETTINGS)  # every setting, and only those
    with pytest.raises(ValueError, match="config section 'render': .*sweep_range"):
        _cfg(tmp_path, *sweep, "render.sweep_range=sometimes")
    with pytest.raises(ValueError, match="'render.match_exposure' expects bool"):
        _cfg(tmp_path, *sweep, "render.match_exposure=1")


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'optim.lr'"):
        load_train_config(None, ["optim.lrr=1"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  warmup: 3\n")
    with pytest.raises(ValueError, match="optim.warmup_steps"):
        load_train_config(recipe)
    with pytest.raises(ValueError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")


def test_a_list_of_data_sets_trains_as_one_and_resumes(tmp_path):
    """data.path=[a, b]: the scenes of both, each with its depth maps; the run resumes under the
    same list (saved as a YAML list), and a list where one path is meant is refused."""
    from nvs.datasets.formats import write_dataset, write_lact_scene
    from nvs.datasets.procedural import object_scene

    folders = [tmp_path / "one", tmp_path / "two"]
    for i, folder in enumerate(folders):
        s = object_scene(i, 5, 32, 32)
        write_dataset(folder, "lact", [(f"s{i}", s.images, s.cameras)])
        write_lact_scene(folder, f"s{i}", s.images, s.cameras, s.depth)
    both = f"data.path=[{folders[0]},{folders[1]}]"
    args = ("model.view_blend=2", "data.kind=lact", both, "data.depth=true", "loss.depth_weight=1.0",
            "optim.warmup_steps=1", "run.ckpt_every=1")
    assert _cfg(tmp_path, *args).data.path == tuple(map(str, folders))
    assert len(build_dataset(_cfg(tmp_path, *args, "data.procedural_fraction=0"))) == 2
    first = train(_cfg(tmp_path, *args, "optim.steps=1"), resume=None)
    assert first["steps"] == 1 and math.isfinite(first["history"][0]["depth_log_l1"])
    assert train(_cfg(tmp_path, *args, "optim.steps=2"))["start_step"] == 1  # resumed: the same recipe
    with pytest.raises(ValueError, match="another recipe.*data.path"):
        train(_cfg(tmp_path, *args, f"data.path=[{folders[0]}]", "optim.steps=3"))
    for bad in ("data.path=[]", "data.path=[1, 2]", "data.val_path=[a, b]", "run.out_dir={a: 1}"):
        with pytest.raises(ValueError, match=f"config key '{bad.split('=')[0]}' expects"):
            _cfg(tmp_path, bad)


def test_recipe_changes_what_it_names_of_its_base(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "base.yaml").write_text(
        "model: {layers: 3, patch_size: 4}\ndata: {seed: 4, height: 32, width: 32}\noptim: {lr: 1.0e-3, steps: 9}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: parts/base.yaml\nmodel: {layers: 5}\ndata: {seed: 5}\noptim: {lr: 2.0e-4}\n")
    cfg = load_train_config(child, ["optim.steps=11"])
    assert (cfg.model.layers, cfg.model.patch_size) == (5, 4)
    assert (cfg.data.seed, cfg.data.height, cfg.optim.lr, cfg.optim.steps) == (5, 32, 2.0e-4, 11)

    (tmp_path / "parts" / "base.yaml").write_text("base: ../child.yaml\n")
    with pytest.raises(ValueError, match="name each other as base"):
        load_train_config(child)
    child.write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match=r"nowhere\.yaml: training config not found \(the base of .*child\.yaml\)"):
        load_train_config(child)
    child.write_text("base: [a, b]\n")
    with pytest.raises(ValueError, match="child.yaml: 'base' must be the path"):
        load_train_config(child)


def test_unsupported_data_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="data.kind"):
        train(_cfg(tmp_path, "data.kind=nope", "optim.steps=1"), resume=None)


def _nvs(*args):
    return [sys.executable, "-m", "nvs", *args]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    common = [*TINY, "data.num_scenes=50", "optim.steps=12", "run.ckpt_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_nvs("train", "configs/train-object-cpu.yaml", *common, f"run.out_dir={straight}"),
                   check=True, env=env, capture_output=True, cwd=ROOT)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_nvs("train", "configs/train-object-cpu.yaml", *common, f"run.out_dir={killed}"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "checkpoints").glob("step-000000[3-9]")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # lands at any point, often while a checkpoint is written
    proc.wait()
    ckpts = sorted((killed / "checkpoints").glob("step-*"))
    assert ckpts and int(ckpts[-1].name.split("-")[1]) < 12, "the run was not interrupted"
    # a half-written checkpoint and a corrupt newest one must both be ignored
    (killed / "checkpoints" / ".tmp-step-0000099").mkdir()
    corrupt = killed / "checkpoints" / "step-0000011"
    corrupt.mkdir(exist_ok=True)
    (corrupt / "model.safetensors").write_bytes(b"truncated")
    out = subprocess.run(_nvs("train", "configs/train-object-cpu.yaml", *common, f"run.out_dir={killed}"),
                         check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    assert "resuming from" in out.stdout and "step-0000011" not in out.stdout.split("resuming from")[1].split("\n")[0]
    a = load_file(straight / "checkpoints" / "step-0000012" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step-0000012" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / "checkpoints" / ".tmp-step-0000099").exists()


@pytest.mark.slow
@pytest.mark.parametrize("budget", [[], ["optim.steps=100000", "optim.time_budget_s=6"]], ids=["steps", "time_budget"])
def test_accelerate_two_cpu_processes_stay_in_sync(tmp_path, budget):
    """With a time budget, rank 0's clock decides: both ranks take the same learning rates and
    stop at the same step (a rank that stopped alone would hang the other in its all-reduce)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ddp"
    # torchrun route: on a GPU-less machine the trainer asks accelerate for CPU, so the two
    # processes form a gloo group (accelerate's own --cpu launcher starts several only under MPI)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "nvs", "train", "configs/train-object-cpu.yaml", *TINY, "data.num_scenes=20",
           "optim.steps=3", "run.ckpt_every=3", f"run.out_dir={run}", *budget]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["param_checksums"]) == 2 and summary["ranks_in_sync"]
    if budget:
        assert 1 <= summary["steps"] < 100000 and summary["train_seconds_total"] >= 6


def test_lpips_loss_switches_on(tmp_path):
    cfg = _cfg(tmp_path, "data.num_scenes=4", "optim.steps=3", "optim.batch_size=1", "run.ckpt_every=100",
               "loss.lpips_weight=0.5", "loss.lpips_start=2", "data.height=32", "data.width=32")
    summary = train(cfg, resume=None)
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0
    # steps count from 0: steps 0 and 1 are MSE only, step 2 adds LPIPS (a positive distance)
    assert ["lpips" in h for h in summary["history"]] == [False, False, True]
    assert summary["history"][2]["lpips"] > 0


def _lpips_losses(native_bf16: bool, monkeypatch) -> dict[bool, float]:
    """The LPIPS loss term with loss.lpips_bf16 off and on, on a CPU that has native bfloat16 or not."""
    import nvs.training.loop as loop
    from nvs.training.config import load_train_config

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native_bf16)
    pred, target = torch.rand(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.rand(1, 4, 3, 32, 32)
    values = {}
    for bf16 in (False, True):
        cfg = load_train_config(None, ["loss.lpips_weight=1", "loss.lpips_start=0", "loss.lpips_net=alex",
                                       f"loss.lpips_bf16={str(bf16).lower()}"])
        losses = loop.Losses(cfg, torch.device("cpu"))
        loss, logs = losses(pred, {"targets": target}, step=0)
        assert loss.dtype == torch.float32 and losses.lpips_bf16 == (bf16 and native_bf16)
        values[bf16] = logs["lpips"]
    return values


def test_lpips_loss_in_bfloat16_is_the_same_loss_to_a_few_thousandths(monkeypatch):
    values = _lpips_losses(True, monkeypatch)  # a tiny network: emulated here if it must be
    assert values[True] == pytest.approx(values[False], abs=5e-3) and values[True] != values[False]


def test_lpips_loss_stays_in_float32_on_a_cpu_that_would_emulate_bfloat16(monkeypatch, tmp_path, capsys):
    values = _lpips_losses(False, monkeypatch)
    assert values[True] == values[False]
    cfg = _cfg(tmp_path, "data.num_scenes=2", "optim.steps=1", "optim.batch_size=1", "run.ckpt_every=100",
               "loss.lpips_weight=0.5", "loss.lpips_start=0", "loss.lpips_net=alex", "loss.lpips_bf16=true",
               "data.height=32", "data.width=32")
    train(cfg, resume=None)
    assert "the LPIPS loss runs in float32" in capsys.readouterr().out  # the recipe's setting, and why it is not taken


def test_missing_data_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        train(_cfg(tmp_path, "data.kind=lact", f"data.path={tmp_path / 'nowhere'}", "optim.steps=1"), resume=None)
    with pytest.raises(ValueError, match="needs data.path"):
        train(_cfg(tmp_path, "data.kind=lvsm", "optim.steps=1"), resume=None)


@pytest.mark.slow
def test_trains_on_a_data_set_written_by_nvs_data_synth(tmp_path):
    out = run_nvs("data", "synth", "--scenes", "3", "--views", "6", "--size", "32", "32", "--format", "lvsm",
                  "--out", tmp_path / "data")
    assert out.returncode == 0, out.stderr
    cfg = _cfg(tmp_path, "data.kind=lvsm", f"data.path={tmp_path / 'data'}", f"data.val_path={tmp_path / 'data'}",
               "optim.steps=3", "optim.batch_size=2", "run.ckpt_every=3", "run.val_every=3")
    summary = train(cfg, resume=None)
    assert summary["steps"] == 3 and summary["val_psnr"] > 3


def test_file_validation_takes_the_first_val_scenes_of_the_held_out_set(tmp_path):
    out = run_nvs("data", "synth", "--scenes", "3", "--views", "6", "--size", "32", "32", "--format", "lvsm",
                  "--out", tmp_path / "data")
    assert out.returncode == 0, out.stderr
    files = ["data.kind=lvsm", f"data.path={tmp_path / 'data'}", f"data.val_path={tmp_path / 'data'}"]
    full = build_dataset(_cfg(tmp_path, *files, "data.val_scenes=10"), validation=True)  # more than the set holds
    two = build_dataset(_cfg(tmp_path, *files, "data.val_scenes=2"), validation=True)
    assert len(full) == 3 and len(two) == 2
    assert all(torch.equal(two[i]["targets"], full.dataset[i]["targets"]) for i in range(2))


def test_bf16_autocast_on_cpu_trains(tmp_path):
    cfg = _cfg(tmp_path, "data.num_scenes=4", "optim.steps=2", "optim.batch_size=1", "run.ckpt_every=100",
               "run.mixed_precision=bf16")
    linear_dtypes = set()

    def record(module, args, output):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            linear_dtypes.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        summary = train(cfg, resume=None)
    finally:
        hook.remove()
    assert summary["steps"] == 2 and summary["skipped_steps"] == 0 and math.isfinite(summary["final_loss"])
    assert torch.bfloat16 in linear_dtypes  # the training forward's linear layers ran under bf16 autocast


@pytest.mark.slow
def test_compiled_run_writes_checkpoints_that_load_and_resume(tmp_path):
    """run.compile: the checkpoint holds the plain module's keys (no torch.compile prefix)."""
    from nvs.models import build_renderer

    cfg = _cfg(tmp_path, "data.num_scenes=4", "model.layers=1", "optim.steps=2", "optim.batch_size=1",
               "run.ckpt_every=1", "run.compile=true")
    train(cfg, resume=None, max_steps=1)
    saved = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000001" / "model.safetensors")
    assert saved.state_dict().keys() == build_renderer(cfg.model).state_dict().keys()
    summary = train(cfg, resume="auto")
    assert summary["start_step"] == 1 and summary["steps"] == 2


def test_init_from_carries_weights_to_larger_patches(tmp_path):
    """A p8 model at 32 px becomes a p16 model at 64 px that renders the same picture, and a run
    starts from it (not resumes: fresh optimiser and step 0)."""
    from nvs.datasets.procedural import object_scene
    from nvs.models import build_renderer, save_renderer
    from nvs.training.patch_resize import resize_patches

    from tests.helpers import tiny_config

    small = build_renderer(tiny_config()).eval()
    with torch.no_grad():  # a trained-looking head: outputs away from the sigmoid's flat middle
        small.head.proj.weight.normal_(0, 0.5)
    big = resize_patches(small, 16).eval()
    lo, hi = object_scene(4, 5, 32, 32), object_scene(4, 5, 64, 64)
    with torch.no_grad():
        a = small(lo.images[None, :4], lo.cameras[None, :4], lo.cameras[None, 4:])
        b = big(hi.images[None, :4], hi.cameras[None, :4], hi.cameras[None, 4:])
    upsampled = a.repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert (b - upsampled).abs().mean() < 0.01 and (b - upsampled).abs().max() < 0.1
    with pytest.raises(ValueError, match="not a multiple"):
        resize_patches(small, 12)
    for head in ("view_blend", "pixel_decoder"):
        with pytest.raises(ValueError, match="plain RGB head"):
            resize_patches(build_renderer(tiny_config(**{head: 2})), 16)

    path = save_renderer(small, tmp_path / "small.safetensors")
    summary = train(_cfg(tmp_path, "model.patch_size=16", "data.height=64", "data.width=64", "optim.steps=1",
                         f"run.init_from={path}", "run.ckpt_every=1"), resume="auto")
    assert summary["start_step"] == 0 and summary["steps"] == 1
    with pytest.raises(ValueError, match="differs from the recipe"):
        train(_cfg(tmp_path / "other", "model.dim=64", "optim.steps=1", f"run.init_from={path}"), resume=None)


@pytest.mark.slow
def test_time_budget_stops_the_run_and_decays_over_time(tmp_path):
    from nvs.training.config import OptimConfig
    from nvs.training.loop import Schedule

    schedule = Schedule(OptimConfig(lr=1.0, warmup_steps=2, steps=10, time_budget_s=100.0, min_lr_ratio=0.1))
    assert schedule.factor(0, 0.0) == 0.5  # warm-up counts steps
    assert schedule.factor(2, 20.0) == pytest.approx(1.0)  # warm-up ended at 20 s: the cosine starts there
    assert schedule.factor(3, 60.0) == pytest.approx(0.55)  # half of the remaining 80 s
    assert schedule.factor(4, 100.0) == pytest.approx(0.1)

    cfg = _cfg(tmp_path, "data.num_scenes=8", "optim.steps=100000", "optim.batch_size=1", "optim.warmup_steps=1",
               "optim.time_budget_s=4", "run.ckpt_every=100000", "run.val_every=100000")
    summary = train(cfg, resume=None)
    steps = summary["steps"]
    assert 1 <= steps < 100000 and summary["val_psnr"] > 3  # stopped by time, validated at the end
    assert 4 <= summary["train_seconds_total"] < 30
    assert (tmp_path / "run" / "checkpoints" / f"step-{steps:07d}").is_dir()
    again = train(cfg, resume="auto")  # the budget is spent: resuming trains no further step
    assert again["start_step"] == steps and again["steps"] == steps


def test_a_saved_recipe_from_before_a_key_existed_reads_as_that_keys_default():
    cfg = load_train_config(None, ["optim.lr=5e-4"])
    saved = cfg.to_dict()
    del saved["loss"]["depth_weight"], saved["optim"]["view_blend_hold_steps"]  # keys newer than the run
    assert recipe_changes(saved, cfg) == []
    assert recipe_changes(saved, load_train_config(None, ["optim.lr=5e-4", "loss.depth_weight=2"])) == [
        "loss.depth_weight: 0.0 -> 2.0"]


def test_resume_refuses_a_run_folder_trained_with_another_recipe(tmp_path):
    cfg = _cfg(tmp_path, "data.num_scenes=4", "model.layers=1", "optim.steps=1", "optim.batch_size=1", "run.ckpt_every=1")
    train(cfg, resume=None)
    longer = _cfg(tmp_path, "data.num_scenes=4", "model.layers=1", "optim.steps=2", "optim.batch_size=1",
                  "run.ckpt_every=1", "run.log_every=2")
    assert train(longer, resume="auto")["start_step"] == 1  # a longer schedule and other logging resume
    other = _cfg(tmp_path, "data.num_scenes=4", "model.layers=1", "optim.steps=3", "optim.batch_size=1",
                 "run.ckpt_every=1", "optim.lr=5e-4", "data.seed=7")
    with pytest.raises(ValueError, match=r"another recipe.*data\.seed: 0 -> 7; optim\.lr: 0\.002 -> 0\.0005"):
        train(other, resume="auto")
    assert train(other, resume=None)["start_step"] == 0


CONFIGS = ROOT / "configs"
RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if {"optim", "base"} & set(yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("arch", ["lact", "full_attention"])
def test_init_from_appends_identity_blocks_that_learn(tmp_path, arch):
    """A 2-block model grown to 4 renders exactly what it rendered; the new blocks' output
    projections start at zero yet get gradient, and a run starts from the grown weights."""
    from nvs.datasets.procedural import object_scene
    from nvs.models import build_renderer, save_renderer
    from nvs.training.grow_depth import add_identity_blocks

    from tests.helpers import tiny_config

    small = build_renderer(tiny_config(arch=arch)).eval()
    deep = add_identity_blocks(small, 4)
    assert deep.config.layers == 4 and len(deep.blocks) == 4
    scene = object_scene(2, 5, 32, 32)
    args = scene.images[None, :4], scene.cameras[None, :4], scene.cameras[None, 4:]
    with torch.no_grad():
        torch.testing.assert_close(deep(*args), small(*args), rtol=0, atol=1e-6)
    new_projs = [p for n, p in deep.named_parameters() if n.startswith(("blocks.2.", "blocks.3.")) and n.endswith(".proj.weight")]
    assert len(new_projs) == (6 if arch == "lact" else 4) and all(p.abs().sum() == 0 for p in new_projs)
    deep.train()
    deep(*args).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in new_projs)
    with pytest.raises(ValueError, match="only grows deeper"):
        add_identity_blocks(deep, 2)

    if arch == "lact":
        path = save_renderer(small, tmp_path / "small.safetensors")
        cfg = _cfg(tmp_path, "model.layers=4", "optim.steps=1", f"run.init_from={path}")
        with torch.no_grad():  # what a run starts from: the checkpoint grown, rendering as it did
            torch.testing.assert_close(initial_weights(cfg.model, str(path)).eval()(*args), small(*args), rtol=0, atol=1e-6)
        summary = train(cfg, resume=None)
        assert summary["start_step"] == 0 and summary["steps"] == 1


def test_init_from_adds_a_view_blending_head(tmp_path):
    """A checkpoint without a blending head starts a view_blend recipe: its weights kept, the head
    new (close to the decoded colour), and a run trains from there."""
    from nvs.datasets.procedural import object_scene
    from nvs.models import build_renderer, save_renderer
    from nvs.models.view_blend import SAMPLE_LOGIT_INIT

    from tests.helpers import tiny_config

    plain = build_renderer(tiny_config()).eval()
    path = save_renderer(plain, tmp_path / "plain.safetensors")
    cfg = _cfg(tmp_path, "model.view_blend=2", "model.view_blend_depth=3.0", "optim.steps=1", f"run.init_from={path}")
    blended = initial_weights(cfg.model, str(path)).eval()
    assert blended.config.view_blend == 2 and blended.config.view_blend_depth == 3.0
    for name, value in plain.state_dict().items():
        assert torch.equal(blended.state_dict()[name], value), name
    scene = object_scene(2, 5, 32, 32)
    args = scene.images[None, :4], scene.cameras[None, :4], scene.cameras[None, 4:]
    with torch.no_grad():
        gap = (blended(*args) - plain(*args)).abs().max()
    assert 0 < gap <= 2 * math.exp(SAMPLE_LOGIT_INIT) / (1 + 2 * math.exp(SAMPLE_LOGIT_INIT))
    summary = train(cfg, resume=None)
    assert summary["start_step"] == 0 and summary["steps"] == 1
    with_warp = _cfg(tmp_path / "warp", "model.view_blend=2", "optim.steps=1", "loss.warp_weight=1.0", f"run.init_from={path}")
    assert train(with_warp, resume=None)["steps"] == 1
    with pytest.raises(ValueError, match="loss.warp_weight needs a view-blending renderer"):
        train(_cfg(tmp_path / "plain", "optim.steps=1", "loss.warp_weight=1.0"), resume=None)


def test_depth_supervision_trains_a_blending_head_on_data_with_depth(tmp_path):
    """data.depth + loss.depth_weight: file scenes with depth maps mixed with procedural ones;
    the log shows the depth loss, and it falls on a fixed sample as steps go."""
    from nvs.datasets.formats import write_dataset
    from nvs.datasets.procedural import object_scene

    root = tmp_path / "data"
    scenes = [object_scene(seed, 5, 32, 32) for seed in range(2)]
    write_dataset(root, "lact", [(f"s{i}", s.images, s.cameras) for i, s in enumerate(scenes)])
    with pytest.raises(ValueError, match="data.depth is set but 2 of 2 scenes have no depth maps"):
        train(_cfg(tmp_path / "early", "model.view_blend=2", "data.kind=lact", f"data.path={root}", "data.depth=true",
                   "loss.depth_weight=1.0", "optim.steps=1"), resume=None)
    for i, s in enumerate(scenes):  # the same scenes again, now with their depth maps
        from nvs.datasets.formats import write_lact_scene
        write_lact_scene(root, f"s{i}", s.images, s.cameras, s.depth)
    cfg = _cfg(tmp_path, "model.view_blend=2", "model.view_blend_depth=2.7", "data.kind=lact", f"data.path={root}",
               "data.depth=true", "data.procedural_fraction=0.5", "loss.depth_weight=1.0",
               "optim.view_blend_lr_scale=20", "optim.steps=12", "optim.warmup_steps=1", "optim.lr=1e-3",
               "optim.view_blend_hold_steps=12", "run.ckpt_every=100")
    summary = train(cfg, resume=None)
    depth_logs = [h["depth_log_l1"] for h in summary["history"]]
    assert len(depth_logs) == 12 and all(math.isfinite(v) and v > 0 for v in depth_logs)
    assert sum(depth_logs[-3:]) < sum(depth_logs[:3]), depth_logs
    # held: the blending logits are where a new head starts, the depth has moved
    head = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000012" / "model.safetensors").view_blend
    fresh = type(head)(head.patch, 32, head.views, depth=2.7)
    channels = torch.arange(head.proj.bias.numel()) % head.channels
    assert torch.equal(head.proj.bias[channels > 0], fresh.proj.bias[channels > 0])
    assert not torch.equal(head.proj.bias[channels == 0], fresh.proj.bias[channels == 0])
    assert head.proj.weight[channels > 0].abs().max() < 1e-6 < head.proj.weight[channels == 0].abs().max()
    free = _cfg(tmp_path / "free", "model.view_blend=2", "model.view_blend_depth=2.7", "data.kind=lact",
                f"data.path={root}", "data.depth=true", "loss.depth_weight=1.0", "optim.steps=2", "optim.warmup_steps=1")
    train(free, resume=None)
    moved = load_renderer(tmp_path / "free" / "run" / "checkpoints" / "step-0000002" / "model.safetensors").view_blend
    assert not torch.equal(moved.proj.bias[channels > 0], fresh.proj.bias[channels > 0])  # unheld, they move
    with pytest.raises(ValueError, match="loss.depth_weight needs the targets' true depth: set data.depth=true"):
        train(_cfg(tmp_path / "nodepth", "model.view_blend=2", "optim.steps=1", "loss.depth_weight=1.0"), resume=None)
    with pytest.raises(ValueError, match="loss.depth_weight needs a view-blending renderer"):
        train(_cfg(tmp_path / "plain", "optim.steps=1", "loss.depth_weight=1.0", "data.depth=true"), resume=None)


def test_a_plane_sweep_trains_alone_on_a_frozen_renderer(tmp_path):
    """optim.train_only=[sweep]: a plane sweep added to a checkpoint trains on depth and colour
    while every other weight stays as it was; the log shows its depth loss."""
    from nvs.models import build_renderer, save_renderer

    from tests.helpers import tiny_config

    plain = build_renderer(tiny_config()).eval()
    path = save_renderer(plain, tmp_path / "plain.safetensors")
    sweep = ["model.sweep_views=2", "model.sweep_planes=8", "model.sweep_near=1.0", "model.sweep_far=4.0"]
    cfg = _cfg(tmp_path, *sweep, "optim.train_only=[sweep]", "data.depth=true", "loss.depth_weight=1.0",
               "optim.steps=3", "optim.warmup_steps=1", f"run.init_from={path}")
    summary = train(cfg, resume=None)
    assert all(math.isfinite(h["depth_log_l1"]) and h["depth_log_l1"] > 0 for h in summary["history"])
    trained = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000003" / "model.safetensors")
    for name, value in plain.state_dict().items():
        assert torch.equal(trained.state_dict()[name], value), name
    fresh = initial_weights(cfg.model, str(path))
    freeze_all_but(fresh, cfg.optim.train_only)
    assert {n.split(".")[0] for n, p in fresh.named_parameters() if p.requires_grad} == {"sweep"}
    moved = [n for n, v in trained.sweep.state_dict().items() if not torch.equal(v, fresh.sweep.state_dict()[n])]
    assert len(moved) == len(fresh.sweep.state_dict())
    first_loss = {p: train(_cfg(tmp_path / f"degrade{p}", *sweep, "optim.train_only=[sweep]", f"optim.sweep_degrade={p}",
                                "optim.steps=1", "run.log_every=1", f"run.init_from={path}"), resume=None)["history"][0]["loss"]
                  for p in (0.0, 1.0)}
    assert math.isfinite(first_loss[1.0]) and first_loss[1.0] != first_loss[0.0]  # the same batch, its decoded colour degraded
    with pytest.raises(ValueError, match=r"'optim.sweep_degrade' needs a plane sweep"):
        _cfg(tmp_path / "nosweep", "optim.sweep_degrade=0.5")
    with pytest.raises(ValueError, match="optim.sweep_degrade"):
        _cfg(tmp_path / "toolarge", *sweep, "optim.sweep_degrade=1.5")
    with pytest.raises(ValueError, match=r"optim.train_only names \['sweeps'\], which this renderer lacks"):
        train(_cfg(tmp_path / "typo", *sweep, "optim.train_only=[sweeps]", "optim.steps=1"), resume=None)
    with pytest.raises(ValueError, match="config key 'optim.train_only' expects"):
        _cfg(tmp_path / "scalar", *sweep, "optim.train_only=sweep")


def test_a_sweep_added_from_another_checkpoint_trains_only_its_blend(tmp_path):
    """run.heads_from: the plane sweep a recipe adds to init_from's weights starts as another
    renderer's; optim.train_only=[sweep.blender] trains that module alone."""
    from nvs.models import build_renderer, save_renderer

    from tests.helpers import tiny_config

    plain = save_renderer(build_renderer(tiny_config()), tmp_path / "plain.safetensors")
    torch.manual_seed(5)
    donor_model = build_renderer(tiny_config(sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0))
    donor = save_renderer(donor_model, tmp_path / "donor.safetensors")
    sweep = ["model.sweep_views=2", "model.sweep_planes=8", "model.sweep_near=1.0", "model.sweep_far=4.0",
             "model.sweep_range=inputs", "model.sweep_zncc=10.0"]
    cfg = _cfg(tmp_path, *sweep, "optim.train_only=[sweep.blender]", "optim.steps=2", "optim.warmup_steps=1",
               f"run.init_from={plain}", f"run.heads_from={donor}")
    start = initial_weights(cfg.model, str(plain), str(donor))
    assert start.config.sweep_range == "inputs"
    assert start.config.sweep_zncc == start.sweep.zncc_weight == 10.0
    for name, value in donor_model.sweep.state_dict().items():
        assert torch.equal(start.sweep.state_dict()[name], value), name
    train(cfg, resume=None)
    trained_path = tmp_path / "run" / "checkpoints" / "step-0000002" / "model.safetensors"
    trained = load_renderer(trained_path)
    assert trained.sweep.zncc_weight == 10.0
    recipe_without = dataclasses.replace(cfg.model, sweep_zncc=0.0, sweep_coarse=0.5, sweep_coarse_levels=3)
    reread = initial_weights(recipe_without, str(trained_path)).sweep  # settings: the recipe's are taken
    assert (reread.zncc_weight, reread.coarse_weight, reread.coarse_levels) == (0.0, 0.5, 3)
    moved = {n.split(".")[0] for n, v in trained.sweep.state_dict().items() if not torch.equal(v, start.sweep.state_dict()[n])}
    assert moved == {"blender"}
    assert all(torch.equal(v, start.state_dict()[n]) for n, v in trained.state_dict().items() if not n.startswith("sweep.blender."))
    with pytest.raises(ValueError, match="run.heads_from .* has no sweep"):
        initial_weights(cfg.model, str(plain), str(plain))
    with pytest.raises(ValueError, match="set run.init_from too"):
        train(_cfg(tmp_path / "alone", *sweep, "optim.steps=1", f"run.heads_from={donor}"), resume=None)
    with pytest.raises(ValueError, match=r"optim.train_only names \['sweep.blend'\]"):
        train(_cfg(tmp_path / "typo", *sweep, "optim.train_only=[sweep.blend]", "optim.steps=1"), resume=None)


def test_init_from_adds_a_pixel_decoder_that_starts_where_the_checkpoint_was(tmp_path):
    from nvs.datasets.procedural import object_scene
    from nvs.models import build_renderer, save_renderer

    from tests.helpers import tiny_config

    plain = build_renderer(tiny_config()).eval()
    path = save_renderer(plain, tmp_path / "plain.safetensors")
    cfg = _cfg(tmp_path, "model.pixel_decoder=4", "optim.steps=2", "optim.pixel_decoder_lr_scale=5", f"run.init_from={path}")
    grown = initial_weights(cfg.model, str(path)).eval()
    assert grown.config.pixel_decoder == 4
    scene = object_scene(2, 5, 32, 32)
    args = scene.images[None, :4], scene.cameras[None, :4], scene.cameras[None, 4:]
    with torch.no_grad():
        assert torch.equal(grown(*args), plain(*args))
    summary = train(cfg, resume=None)
    assert summary["start_step"] == 0 and summary["steps"] == 2
    trained = load_renderer(tmp_path / "run" / "checkpoints" / "step-0000002" / "model.safetensors")
    assert trained.config.pixel_decoder == 4 and trained.pixel_decoder.convs[-1].weight.abs().sum() > 0


def test_added_heads_train_at_their_own_learning_rates():
    from nvs.models import build_renderer
    from nvs.training.loop import param_groups

    from tests.helpers import tiny_config

    model = build_renderer(tiny_config(view_blend=2, pixel_decoder=4))
    scales = {"view_blend": 20.0, "pixel_decoder": 5.0}
    groups = param_groups(model, 0.05, scales)
    owner = {id(p): name for name in scales for p in getattr(model, name).parameters()}
    for group in groups:
        owners = {owner.get(id(p)) for p in group["params"]}
        assert len(owners) == 1 and group["lr_scale"] == scales.get(owners.pop(), 1.0)
        assert group["weight_decay"] == (0.05 if group["params"][0].ndim >= 2 else 0.0)
    assert len(groups) == 6 and sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(param_groups(build_renderer(tiny_config()), 0.05, scales)) == 2  # no head, no extra groups


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_starts_from_weights_a_clone_has(recipe):
    """A recipe starts from scratch, from a file in the repository, or from another recipe's run."""
    cfg = load_train_config(recipe)  # unknown keys and wrong types raise
    if cfg.run.init_from:
        out_dirs = {load_train_config(r).run.out_dir for r in RECIPES}
        in_repo = (ROOT / cfg.run.init_from).is_file()
        assert in_repo or any(cfg.run.init_from.startswith(f"{d}/") for d in out_dirs), (
            f"{recipe.name} starts from {cfg.run.init_from}: neither a file in the repository nor another recipe's run")


GPU_RUN_KEYS = {("data", "workers"), ("optim", "batch_size"), ("optim", "time_budget_s"), ("run", "mixed_precision"),
                ("run", "out_dir"), ("run", "log_every"), ("run", "val_every"), ("run", "ckpt_every")}


@pytest.mark.parametrize("renderer", ["object", "scene"])
def test_the_gpu_recipes_are_the_shipped_recipes_in_bf16_within_ten_minutes(renderer):
    """`make train-gpu` trains the shipped recipe: same model, data, loss and learning rate; only
    the batch, the budget, bf16 autocast and where it writes differ, and the plane sweep trains
    over its fixed range and without exposure matching (both run SIFT on the CPU for every sample)
    or halving (whose steps would be the fixed range's)."""
    cpu = load_train_config(CONFIGS / f"train-lact-{renderer}.yaml").to_dict()
    gpu = load_train_config(CONFIGS / f"train-lact-{renderer}-gpu.yaml").to_dict()
    differ = {(section, key) for section in cpu for key in cpu[section] if cpu[section][key] != gpu[section][key]}
    assert cpu["model"]["sweep_range"] == "inputs" and gpu["model"]["sweep_range"] == "fixed"
    assert not gpu["model"]["match_exposure"]
    # what its checkpoints record is the shipped recipe's model, reading settings included
    gpu_recipe = load_train_config(CONFIGS / f"train-lact-{renderer}-gpu.yaml")
    assert gpu_recipe.render.apply(gpu_recipe.model).to_dict() == cpu["model"]
    assert not gpu["model"]["sweep_max_step"]
    differ -= {(section, key) for section in ("model", "render") for key in ("sweep_range", "match_exposure", "sweep_max_step")}
    assert differ <= GPU_RUN_KEYS and ("run", "mixed_precision") in differ
    assert gpu["run"]["mixed_precision"] == "bf16" and gpu["optim"]["time_budget_s"] <= 480
    makefile = (ROOT / "Makefile").read_text()  # writes the data the recipe reads
    data = re.search(rf"^DATA_{renderer} := (\S+)$", makefile, re.M).group(1)
    val = re.search(rf"^VAL_{renderer} := (\S+)$", makefile, re.M).group(1)
    assert (gpu["data"]["path"], gpu["data"]["val_path"]) == (f"data/{data}-train", f"data/{val}")


def test_shipped_renderer_is_what_its_manifest_says():
    """The manifest next to the weights gives their config, parameter count and checksum (the sum
    the training run's summary.json printed), and its evaluation commands are valid `nvs` commands."""
    import shlex

    from nvs.assets import ASSETS
    from nvs.commands.cli import build_parser
    from nvs.models import ModelConfig

    for manifest_path in sorted(ASSETS.glob("*.json")):
        manifest = json.loads(manifest_path.read_text())
        model = load_renderer(ASSETS / manifest["file"])
        assert model.config == ModelConfig.from_dict(manifest["config"]) == ModelConfig.from_yaml(ROOT / manifest["config_file"])
        assert model.num_parameters == manifest["parameters"]
        assert model.normalization == manifest["normalize"]  # the frame eval, render and the viewer put cameras in
        # approx only for the float64 reduction order; other weights differ by far more
        assert param_checksum(model) == pytest.approx(manifest["param_checksum"], rel=1e-12)
        stages = manifest["training"]["stages"]
        assert [s["stage"] for s in stages] == list(range(1, len(stages) + 1))
        assert sum(s["steps"] for s in stages) == manifest["training"]["total_steps"]
        assert stages[-1]["blocks"] == model.config.layers and stages[-1]["patch_size"] == model.config.patch_size
        for entry in manifest["evaluation"]:
            args = shlex.split(entry["command"])
            assert args[0] == "nvs"
            build_parser().parse_args(args[1:])  # exits (SystemExit) on an invalid command
