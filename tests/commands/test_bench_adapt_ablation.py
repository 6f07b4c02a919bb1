"""`nvs bench adapt-ablation`: its arms, one arm's row on a held-out scene, and the summary."""

import json

import pytest
import torch

from nvs.commands.bench_adapt import heldout_scenes
from nvs.commands.bench_adapt_ablation import UNREACHABLE_BUDGET_S, ablation_arms, adapt_arm, summarize_ablation
from nvs.commands.cli import main
from nvs.models import build_renderer
from tests.helpers import tiny_config


def test_arms_cross_augmentation_sets_with_loss_weights():
    arms = ablation_arms(["none", "mirror", "all"], [0, 0.5])
    assert [a.name for a in arms] == ["none/mse", "none/mse+0.5*lpips", "mirror/mse", "mirror/mse+0.5*lpips",
                                      "all/mse", "all/mse+0.5*lpips"]
    opts = arms[3].options(steps=7, seed=3)
    assert opts.augmentation_sets == (("mirror",),) and opts.lpips_weight == 0.5 and opts.max_steps == 7
    assert opts.seed == 3 and opts.budget_s == UNREACHABLE_BUDGET_S
    assert arms[0].options(1, 0).augmentation_sets == ((),)
    with pytest.raises(ValueError, match="unknown augmentation sets"):
        ablation_arms(["flip"], [0])
    with pytest.raises(ValueError, match=">= 0"):
        ablation_arms(["none"], [-1])


def test_bad_ablation_arguments_are_messages(capsys):
    for args, message in ((["--augmentations", "flip"], "invalid choice"), (["--lpips-weights", "-1"], "must be a number"),
                          (["--steps", "0"], "--steps")):
        with pytest.raises(SystemExit) as info:
            main(["bench", "adapt-ablation", *args])
        assert info.value.code == 2 and message in capsys.readouterr().err


def test_summary_means_per_set_and_over_all_sets():
    def row(set_name, arm, base, last, kept, fallback=False):
        return {"set": set_name, "arm": arm, "psnr_base": base, "psnr_last": last, "psnr_kept": kept, "ssim_base": 0.5,
                "ssim_last": 0.6, "lpips_base": 0.4, "lpips_last": 0.3, "lpips_kept": 0.35, "fallback": fallback, "seconds": 10.0}

    rows = [row("rooms", "none/mse", 15, 17, 16), row("rooms", "none/mse", 17, 18, 17, True),
            row("temple", "none/mse", 14, 13, 14, True), row("rooms", "all/mse", 15, 16, 16)]
    table = summarize_ablation(rows)
    assert [(t["set"], t["arm"]) for t in table] == [("rooms", "none/mse"), ("rooms", "all/mse"), ("temple", "none/mse"),
                                                    ("all sets", "none/mse"), ("all sets", "all/mse")]
    assert table[0]["gain_last_db"] == 1.5 and table[0]["gain_kept_db"] == 0.5 and table[0]["fallbacks"] == 1
    assert table[0]["psnr_last"] == "16.00 -> 17.50"
    assert table[3]["scenes"] == 3 and table[3]["gain_last_db"] == round((17 + 18 + 13 - 46) / 3, 2)


@pytest.mark.slow
def test_one_arm_adapts_a_heldout_room_for_fixed_steps():
    torch.manual_seed(0)
    model = build_renderer(tiny_config(patch_size=8, newton_schulz_dtype="float32")).eval()
    (_, inputs, in_cams, targets, tg_cams), = list(heldout_scenes("rooms", 1))
    arm, = ablation_arms(["mirror"], [0.5])
    row = adapt_arm(model, arm, inputs, in_cams, targets, tg_cams, steps=2, seed=0)
    assert row["arm"] == "mirror/mse+0.5*lpips" and row["steps"] == 2
    assert {"psnr_last", "ssim_last", "lpips_last", "psnr_kept", "lpips_kept", "fallback"} <= row.keys()
    assert 0 < row["psnr_last"] < 60 and 0 <= row["lpips_last"] <= 1


@pytest.mark.slow
def test_command_runs_the_shipped_model_for_fixed_steps(tmp_path, capsys):
    assert main(["bench", "adapt-ablation", "--sets", "rooms", "--scenes", "1", "--augmentations", "none", "mirror",
                 "--steps", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "adapt-ablation.json").read_text())
    assert [(r["arm"], r["steps"]) for r in rows] == [("none/mse", 1), ("mirror/mse", 1)]
    summary = json.loads((tmp_path / "adapt-ablation-summary.json").read_text())
    assert [s["set"] for s in summary] == ["rooms", "rooms", "all sets", "all sets"]
    assert "none/mse" in capsys.readouterr().out
