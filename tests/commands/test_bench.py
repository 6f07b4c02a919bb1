"""`nvs bench peak | lact-layer | views | train-step`: FLOP counts checked against torch's counter,
each command's JSON rows and PNG plot (tiny sizes: timings here are not the point)."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nvs.models.fast_weight import TTTOp, run_fast_weight_ops
from nvs.commands.bench_model import lact_layer_flops
from tests.helpers import run_nvs


def test_lact_layer_flop_count_matches_torch_counter():
    d, dh, tokens, chunk, steps = 24, 40, 96, 32, 3
    q, k, v = (torch.randn(1, tokens, d) for _ in range(3))
    w = (torch.randn(1, d, dh), torch.randn(1, dh, d), torch.randn(1, d, dh))
    lrs = tuple(torch.full((1, tokens, 1), 0.01) for _ in range(3))
    for ops in ([TTTOp(0, tokens, True, True)], [TTTOp(s, s + chunk, True, True) for s in range(0, tokens, chunk)]):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            run_fast_weight_ops(w, q, k, v, lrs, ops, steps)
        assert counter.get_total_flops() == lact_layer_flops(tokens, d, dh, len(ops), steps)


def _bench(tmp_path, *args):
    out = run_nvs("bench", *args, "--out", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
def test_bench_commands_write_rows_and_plots(tmp_path):
    stdout = _bench(tmp_path, "lact-layer", "--tokens", "256", "--chunks", "full", "64", "--dim", "64", "--hidden", "128")
    rows = json.loads((tmp_path / "lact-layer.json").read_text())
    assert [r["chunk"] for r in rows] == ["full", 64] and "peak (fp32)" in stdout
    assert set(rows[0]) == {"tokens", "chunk", "dtype", "tokens_timed", "seconds", "tokens_per_s", "gflops", "kernels",
                            "percent_of_peak"}
    for r in rows:  # the rates are the counted work over the measured time (seconds is per `tokens`)
        n_ops = 1 if r["chunk"] == "full" else -(-r["tokens_timed"] // r["chunk"])
        seconds_timed = r["seconds"] * r["tokens_timed"] / r["tokens"]
        assert r["tokens_per_s"] == pytest.approx(r["tokens_timed"] / seconds_timed, rel=0.02)
        assert r["gflops"] == pytest.approx(lact_layer_flops(r["tokens_timed"], 64, 128, n_ops, 5) / seconds_timed / 1e9, rel=0.05, abs=0.1)
        assert 0 < r["percent_of_peak"]
    assert {r["kernels"] for r in rows} == {"torch"}  # auto runs the reference (kernels/__init__.py says why)
    _bench(tmp_path, "views", "--views", "2", "4", "--size", "32")
    rows = json.loads((tmp_path / "views.json").read_text())
    assert [(r["model"], r["views"]) for r in rows] == [("LaCT", 2), ("LaCT", 4), ("full attention", 2), ("full attention", 4)]
    assert all(r["render_s_per_view"] > 0 and r["peak_mem_mb"] >= 0 and r["state_mb"] > 0 for r in rows)
    _bench(tmp_path, "peak", "--dtypes", "fp32")
    assert {r["n"] for r in json.loads((tmp_path / "peak.json").read_text())} == {1024, 2048, 3072}
    _bench(tmp_path, "train-step")
    (row,) = json.loads((tmp_path / "train-step.json").read_text())
    assert row["tokens_per_step"] == 4 * 12 * 64 and row["tokens_per_s"] > 0
    for name in ("lact-layer", "views", "peak", "train-step"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_triton_kernels_without_a_gpu_are_refused_by_name(tmp_path):
    if torch.cuda.is_available():
        import pytest

        pytest.skip("this machine has a GPU: --kernels triton runs there")
    out = run_nvs("bench", "lact-layer", "--tokens", "64", "--dim", "32", "--hidden", "64", "--kernels", "triton",
                  "--out", tmp_path)
    assert out.returncode != 0 and "--kernels triton" in out.stderr and "CUDA GPU" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "lact-layer.json").exists()


@pytest.mark.slow
def test_generator_bench_times_the_writer_in_worker_processes(tmp_path):
    from nvs.datasets.asset_scenes import unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    _bench(tmp_path, "generator", "--kinds", "object", "furniture", "--scenes", "2", "--views", "3", "--size", "16",
           "--workers", "2")
    rows = {r["kind"]: r for r in json.loads((tmp_path / "generator.json").read_text())}
    assert rows["furniture"]["workers"] == 2 and rows["object"]["workers"] == 1
    assert all(r["views"] == 6 and r["views_per_second"] == pytest.approx(6 / r["seconds"], rel=0.05) for r in rows.values())


@pytest.mark.slow
def test_memorize_bench_measures_each_row_in_its_own_process(tmp_path):
    _bench(tmp_path, "memorize", "--config", "configs/lact-tiny.yaml", "--tokens", "256", "512", "--layers", "1",
           "--size", "64")
    rows = json.loads((tmp_path / "memorize.json").read_text())
    assert [(r["tokens"], r["layers"], r["views"]) for r in rows] == [(256, 1, 4), (512, 1, 8)]
    assert all(r["seconds"] > 0 and r["peak_mb"] > 0 and r["chunk_tokens"] <= r["tokens"] for r in rows)


def _fails_in_child(conn) -> None:
    raise ValueError("this benchmark case breaks")


def _sends_a_product(conn) -> None:
    from nvs.commands.bench_child import send_to_parent

    send_to_parent(conn, torch.randn(64, 64) @ torch.randn(64, 64))


def test_a_benchmark_child_that_fails_stops_the_benchmark_instead_of_hanging_it():
    from nvs.commands.bench_child import run_in_child

    with pytest.raises(RuntimeError, match="the broken case failed in its process"):
        run_in_child(_fails_in_child, what="the broken case")


@pytest.mark.slow
@pytest.mark.timeout(120)  # a forked child would hang, not fail
def test_a_benchmark_child_runs_torch_after_its_parent_did():
    """A fork of this process, which has run torch's thread pool, can hang in OpenMP; the child is
    a fresh interpreter instead, and its tensors reach the parent."""
    from nvs.commands.bench_child import run_in_child

    torch.randn(256, 256) @ torch.randn(256, 256)
    result = run_in_child(_sends_a_product, what="a product")
    assert result.shape == (64, 64) and torch.isfinite(result).all()


@pytest.mark.slow
def test_render_bench_times_both_shipped_renderers_as_the_viewer_runs_them(tmp_path):
    stdout = _bench(tmp_path, "render", "--sizes", "32", "--views", "3", "--batch", "2", "--repeats", "1")
    rows = json.loads((tmp_path / "render.json").read_text())
    assert [(r["renderer"], r["example"], r["height"], r["width"], r["turns"]) for r in rows] == [
        ("scene", "procedural room", 32, 64, 1), ("object", "procedural object", 32, 32, 2)]  # two turns, each mirrored
    for r in rows:
        assert r["input_views"] == 3 and r["device"] == "cpu" and r["dtype"] == "fp32"
        assert r["memorize_s"] > 0 and r["render_s_one_view"] > 0 and r["render_s_per_view_2_per_call"] > 0
        assert "reading_settings" not in r
    assert "render_s_one_view" in stdout
    _bench(tmp_path, "render", "--renderers", "scene", "--sizes", "32", "--views", "3", "--batch", "2", "--repeats", "1",
           "--setting", "sweep_refine=0")
    assert [r["reading_settings"] for r in json.loads((tmp_path / "render.json").read_text())] == [{"sweep_refine": 0}]


@pytest.mark.slow
def test_train_step_bench_takes_the_recipes_loss_terms_and_trained_parameters(tmp_path):
    """A sweep trained alone on depth and LPIPS, as the sweep recipes train it: the bench's step has
    those loss terms and updates only the sweep's weights."""
    import yaml

    from nvs.commands.bench_model import bench_train_step

    recipe = {"model": {"dim": 32, "layers": 1, "attn_head_dim": 16, "ttt_head_dim": 16, "patch_size": 8,
                        "sweep_views": 2, "sweep_planes": 4},
              "data": {"height": 32, "width": 32, "input_views": 3, "target_views": 2, "depth": True, "val_scenes": 0},
              "loss": {"lpips_weight": 1.0, "lpips_start": 100, "depth_weight": 1.0},
              "optim": {"batch_size": 1, "train_only": ["sweep"]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    (row,) = bench_train_step(tmp_path, [str(path)], steps=1, settings=[("photo_interpolation", "cubic")])
    sweep = sum(p.numel() for n, p in _renderer(recipe["model"]).named_parameters() if n.startswith("sweep."))
    assert row["loss_terms"] == ["mse", "depth_log_l1", "lpips"]
    assert row["trained_parameters"] == sweep > 0
    assert row["tokens_per_step"] == 5 * 16 and row["tokens_per_s"] > 0
    assert row["reading_settings"] == {"photo_interpolation": "cubic"}  # as the child's model has it
    assert row["peak_mb"] is None or row["peak_mb"] >= 0
    with pytest.raises(ValueError, match="--setting with .*recipe.yaml: model config 'photo_interpolation' must be one of"):
        bench_train_step(tmp_path, [str(path)], steps=1, settings=[("photo_interpolation", "lanczos")])
    with pytest.raises(ValueError, match="--setting sweep_refine: given twice"):
        bench_train_step(tmp_path, [str(path)], steps=1, settings=[("sweep_refine", 0), ("sweep_refine", 3)])
    no_sweep = {**recipe, "model": {**recipe["model"], "sweep_views": 0}}
    path.write_text(yaml.safe_dump(no_sweep))
    with pytest.raises(ValueError, match="--setting photo_interpolation: this renderer samples no photos"):
        bench_train_step(tmp_path, [str(path)], steps=1, settings=[("photo_interpolation", "cubic")])
    missing_data = {**recipe, "data": {**recipe["data"], "kind": "lact", "path": str(tmp_path / "no-such-data")}}
    path.write_text(yaml.safe_dump(missing_data))
    with pytest.raises(ValueError, match="recipe.yaml: .*no-such-data"):  # the child's failure, named, not a traceback
        bench_train_step(tmp_path, [str(path)], steps=1)


def _renderer(model: dict):
    from nvs.models import build_renderer
    from nvs.models.config import ModelConfig

    return build_renderer(ModelConfig.from_dict(model))
