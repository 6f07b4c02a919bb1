"""Writing a renderer as the published checkpoints are laid out, and reading it back."""

import pytest
import torch
import yaml

from nvs.models import LaCTRenderer, ModelConfig, load_renderer
from nvs.models.checkpoint import official_to_ours, ours_to_official, save_official_checkpoint

from tests.helpers import FIXTURES, tiny_config


def test_official_names_round_trip_through_the_fixture():
    from safetensors.torch import load_file

    official = {k.removeprefix("model."): v for k, v in load_file(FIXTURES / "one_head.safetensors").items()
                if k.startswith("model.")}
    assert ours_to_official(official_to_ours(official)).keys() == official.keys()


def test_saved_official_checkpoint_loads_back_equal(tmp_path):
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(muon_steps=3)).eval()
    pt, config_path = save_official_checkpoint(model, tmp_path / "model.pt")
    stored = torch.load(pt, weights_only=True)["model"]
    assert "input_linear.weight" in stored and "blocks.1.module_list.1.f.lr_fc.bias" in stored
    config = yaml.safe_load(config_path.read_text())
    assert [b["type"] for b in config["block_config"]] == ["model.SelfAttention", "lact_ttt.FastWeightGluMLPMultihead", "model.MLP"]
    assert ModelConfig.from_yaml(config_path) == model.config
    loaded = load_renderer(pt, config=config_path)
    assert loaded.source_format == "official" and loaded.config.muon_steps == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_only_lact_models_have_an_official_layout(tmp_path):
    from nvs.models import CheckpointError, FullAttentionRenderer

    with pytest.raises(CheckpointError):
        save_official_checkpoint(FullAttentionRenderer(tiny_config(arch="full_attention")), tmp_path / "x.pt")
