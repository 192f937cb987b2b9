"""Typed config: presets, validation messages, JSON/YAML round trips."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from adinspect.config import ConfigError, list_presets, load_config, preset_config, save_config


def test_presets_match_design_table():
    assert list_presets() == ["cpu", "paper"]
    paper = preset_config("paper", "bottle")
    assert (paper.backbone.name, paper.method.image_size, paper.method.k_neighbors, paper.method.sigma) == (
        "wide_resnet50_2",
        512,
        50,
        3.2,
    )
    cpu = preset_config("cpu", "bottle")
    assert (cpu.backbone.name, cpu.method.image_size, cpu.method.k_neighbors, cpu.method.sigma) == (
        "efficientnet_lite0",
        256,
        16,
        2.0,
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip(tmp_path, suffix):
    config = preset_config("cpu", "bottle", method={"k_neighbors": 8})
    path = tmp_path / f"config{suffix}"
    save_config(config, path)
    assert load_config(path) == config


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="unknown preset 'gpu'.*cpu, paper"):
        preset_config("gpu")


def test_unknown_field_is_an_error_naming_it(tmp_path):
    raw = json.loads(preset_config("cpu", "bottle").model_dump_json())
    raw["method"]["k_neighbours"] = 3  # British spelling: a typo must not be ignored
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"method\.k_neighbours"):
        load_config(path)


def test_bad_values_and_names():
    with pytest.raises(ConfigError, match="image_size must be a multiple of 32"):
        preset_config("cpu", "p", method={"image_size": 250})
    with pytest.raises(ConfigError, match="product.name"):
        preset_config("cpu", "Bad Name")
    with pytest.raises(ConfigError, match="k_neighbors"):
        preset_config("cpu", "p", method={"k_neighbors": 0})


def test_input_shape_is_checked_against_the_global_descriptor_and_the_short_side():
    config = preset_config("cpu", "p", method={"input_shape": [640, 256]})
    assert config.method.shape == (640, 256) and preset_config("cpu", "p").method.shape == (256, 256)
    assert config.method.side_multiple == 64  # stride-4 map, pooled by 4, in windows of 4
    with pytest.raises(ConfigError, match="the width 250 must be a multiple of 64.*e.g. 256"):
        preset_config("cpu", "p", method={"input_shape": [640, 250]})
    with pytest.raises(ConfigError, match="short side 320 must equal method.image_size 256"):
        preset_config("cpu", "p", method={"input_shape": [768, 320]})


def test_unreadable_config_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("method: [unclosed")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.json: cannot read"):
        load_config(tmp_path / "missing.json")


def test_config_is_frozen():
    config = preset_config("cpu", "p")
    with pytest.raises(ValidationError):
        config.seed = 3  # type: ignore[misc]
