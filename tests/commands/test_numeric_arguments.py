"""A bounded fuzz of every numeric argument of every `nvs` subcommand, found by walking the parser
(so a flag added later is covered, or this test fails for it): zero where zero means nothing,
negative, huge, NaN, infinite and non-numbers each end in argparse's usage error, exit code 2,
with the flag named and no traceback. The same for every numeric key of a training recipe."""

import argparse
import dataclasses
import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from nvs.commands.cli import build_parser
from nvs.training.config import TrainConfig, load_train_config

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "train-object-cpu.yaml"
ZERO_MEANS_SOMETHING = {"--targets", "--seed", "--adapt-seed", "--scene-index", "--lpips-weights",  # 0: all remaining views / a seed / the first scene / MSE alone
                        "--confirm-views", "--adapt-confirm-views",  # 0: the verifier alone judges
                        "--input-exposure-jitter", "--input-pose-noise",  # 0: the inputs as they are
                        "--backdrop"}  # 0: a black backdrop
NEGATIVE_MEANS_SOMETHING = {("--threads", "-1")}  # every core
SIGNED = {"--elevations"}  # camera elevations in degrees: at and below the horizon too
NOT_NUMBERS = ["abc", "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "0x1F", "1,5", "½", "3 4", "--", "None"]
TOO_BIG = ["99999999999999999999", "1e20", "9" * 40]
NUMERIC_TYPES = {"memory_size", "auto_or_count", "positive_int", "nonneg_int", "image_side", "port", "seed", "threads", "chunk", "positive_float",
                 "finite_float", "float_range"}


def _leaf_parsers(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, path + (name,))
    if parser.get_default("func") is not None:
        yield path, parser


def _is_numeric(action) -> bool:
    name = getattr(action.type, "__name__", "")
    defaults = action.default if isinstance(action.default, list) else [action.default]
    return (name in NUMERIC_TYPES or name.startswith(("int_", "float")) or action.type in (int, float)
            or any(isinstance(d, (int, float)) and not isinstance(d, bool) for d in defaults))


def _base_argv(parser: argparse.ArgumentParser, tmp: Path) -> list[str]:
    """The smallest argument list the subcommand parses: its positionals and required options."""
    argv = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not (action.required or not action.option_strings):
            continue
        kind = getattr(action.type, "__name__", "")
        value = str(tmp / ("video.mp4" if kind == "out_media" else "out")) if kind.startswith("out") else "x"
        if action.nargs == "*":
            continue
        argv += ([action.option_strings[0]] if action.option_strings else []) + [value]
    return argv


def _numeric_flags():
    cases = []
    for path, parser in _leaf_parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and _is_numeric(action):
                cases.append((path, action.option_strings[0]))
    return cases


CASES = _numeric_flags()


def test_every_numeric_flag_is_typed_and_the_probe_sees_them_all():
    for path, parser in _leaf_parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and _is_numeric(action):
                assert action.type not in (None, int, float), f"nvs {' '.join(path)} {action.option_strings[0]} has no checked type"
    flags = {flag for _, flag in CASES}
    assert {"--fps", "--frames", "--views", "--targets", "--size", "--port", "--scenes", "--max-size", "--threads",
            "--tokens", "--chunks", "--dim", "--hidden", "--max-steps", "--scene-index", "--width", "--seed"} <= flags
    assert len(CASES) >= 30


def _probe(path, flag, values, tmp):
    parser = build_parser()
    sub = dict(_leaf_parsers(parser))[path]
    action = next(a for a in sub._actions if flag in a.option_strings)
    base = _base_argv(sub, tmp)
    failures = []
    for value in values:
        placements = [[value, "64"], ["64", value]] if action.nargs == 2 else [[value]]
        for given in placements:
            argv = list(path) + base + [flag] + given
            err = io.StringIO()
            try:
                with redirect_stderr(err):
                    parser.parse_args(argv)
            except SystemExit as exc:
                text = err.getvalue()
                if exc.code != 2 or flag not in text or "Traceback" in text:
                    failures.append(f"{argv}: exit {exc.code}, {text.strip().splitlines()[-1:]}")
                continue
            failures.append(f"{argv}: accepted")
    return failures


@pytest.mark.parametrize("path, flag", CASES, ids=[f"{' '.join(p)} {f}" for p, f in CASES])
def test_bad_numbers_end_in_a_usage_error_naming_the_flag(path, flag, tmp_path):
    values = NOT_NUMBERS + TOO_BIG + ["-7", "-1e9"]
    if "budget" in flag:  # memory budgets: 'none' is a documented value (no limit)
        values.remove("None")
    if flag not in ZERO_MEANS_SOMETHING:
        values += ["0", "-0", "0.0"]
    values += [v for v in ("-1",) if (flag, v) not in NEGATIVE_MEANS_SOMETHING]
    if flag in SIGNED:
        values = [v for v in values if v not in ("-7", "-1", "0", "-0", "0.0")]
    failures = _probe(path, flag, values, tmp_path)
    assert not failures, "\n".join(failures)


def test_the_defaults_themselves_parse(tmp_path):
    for path, parser in _leaf_parsers(build_parser()):
        args = build_parser().parse_args(list(path) + _base_argv(parser, tmp_path))
        assert args.func is not None


def test_outputs_that_are_existing_files_are_refused(tmp_path):
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    parser = build_parser()
    for path, sub in _leaf_parsers(parser):
        for action in sub._actions:
            if getattr(action.type, "__name__", "") in ("out_dir", "out_media"):
                target = str(existing if action.type.__name__ == "out_dir" else existing / "video.mp4")
                argv = list(path) + [a for a in _base_argv(sub, tmp_path)] + [action.option_strings[0], target]
                err = io.StringIO()
                with redirect_stderr(err), pytest.raises(SystemExit) as info:
                    parser.parse_args(argv)
                assert info.value.code == 2 and action.option_strings[0] in err.getvalue(), argv
    assert existing.read_text() == "mine"


# ----- training recipes --------------------------------------------------------------------------
ZERO_OK_KEYS = {"data.seed", "data.val_scenes", "data.val_seed", "data.workers", "optim.weight_decay",
                "optim.warmup_steps", "optim.min_lr_ratio", "optim.time_budget_s", "loss.lpips_weight",
                "loss.lpips_start", "run.seed", "model.muon_steps", "data.procedural_fraction", "model.view_blend", "loss.warp_weight",
                "loss.depth_weight", "optim.view_blend_hold_steps",
                "model.pixel_decoder", "model.sweep_views", "model.sweep_zncc", "model.sweep_coarse", "model.sweep_hull",
                "model.sweep_front", "model.sweep_max_step", "model.sweep_refine", "model.sweep_depth_views", "model.sweep_head_prior",
                "optim.sweep_degrade", "model.frame_extent"}


def _numeric_keys():
    keys = []
    for section in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(section.default_factory):
            if str(f.type).startswith(("int", "float")) and not str(f.type).endswith("None"):
                keys.append(f"{section.name}.{f.name}")
    return keys


@pytest.mark.parametrize("key", _numeric_keys())
def test_bad_numbers_in_a_recipe_are_refused_naming_the_key(key):
    values = ["-1", ".nan", "abc", "[1, 2]", "-1e30"] + ([] if key in ZERO_OK_KEYS else ["0"])
    for value in values:
        with pytest.raises(ValueError, match=key.split(".")[-1]):
            load_train_config(RECIPE, [f"{key}={value}"])


def test_the_issue_s_recipe_values_are_refused_with_the_key():
    for override in ("run.ckpt_every=0", "run.log_every=0", "optim.grad_accum=0", "optim.batch_size=0",
                     "data.frame_gap=[10, 2]", "optim.betas=[0.9, 1.5]", "run.mixed_precision=fp64"):
        with pytest.raises(ValueError, match=override.split("=")[0]):
            load_train_config(RECIPE, [override])
