"""The YAML config layer every trainer shares (erasekit.training.config)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from erasekit.training.config import config_path, merge, parse_overrides, read_config
from erasekit.types import InvalidInputError


class Optim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: int = 10
    optim: Optim = Optim()


def test_overrides_are_nested_and_typed_as_yaml_scalars():
    assert parse_overrides(["optim.lr=0.00002", "steps=3", "name=x", "flag=no"]) == {
        "optim": {"lr": 2e-5}, "steps": 3, "name": "x", "flag": False}
    with pytest.raises(InvalidInputError, match="not KEY=VALUE"):
        parse_overrides(["steps"])
    with pytest.raises(InvalidInputError, match="cannot set a.b: a is not a section"):
        parse_overrides(["a=1", "a.b=2"])


def test_merge_replaces_values_and_merges_sections():
    base = {"optim": {"lr": 1.0, "betas": [0.5, 0.6]}, "steps": 1}
    assert merge(base, {"optim": {"lr": 2.0}, "steps": 5}) == {"optim": {"lr": 2.0, "betas": [0.5, 0.6]},
                                                               "steps": 5}
    assert base["optim"]["lr"] == 1.0  # the base is not modified


def test_read_config_applies_overrides_and_reports_one_line_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\noptim:\n  lr: 0.001\n")
    config = read_config(path, Config, {"optim": {"betas": [0.1, 0.2]}})
    assert config == Config(name="run", optim=Optim(lr=0.001, betas=(0.1, 0.2)))
    path.write_text("name: run\nstepz: 3\n")
    with pytest.raises(InvalidInputError, match=r"c.yaml: stepz: Extra inputs are not permitted"):
        read_config(path, Config)
    path.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        read_config(path, Config)
    path.write_text("- a list\n")
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        read_config(path, Config)
    with pytest.raises(InvalidInputError, match="cannot read config"):
        read_config(tmp_path / "missing.yaml", Config)


def test_config_path_prefers_a_file_then_the_packaged_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: x\n")
    packaged = {"sd2": tmp_path / "packaged.yaml"}
    assert config_path(str(path), packaged.__getitem__) == path
    assert config_path("sd2", packaged.__getitem__) == tmp_path / "packaged.yaml"
    assert config_path("typo.yaml", packaged.__getitem__).name == "typo.yaml"  # read_config then says missing
