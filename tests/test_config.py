"""Typed configs: YAML + dotted overrides, unknown keys, type checks, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from medmm.config import apply_overrides, from_dict, load_config, parse_override, save_config, to_dict
from medmm.train import TrainConfig


@dataclass
class Encoder:
    hidden: int = 32
    dropout: float = 0.1
    kind: Literal["bert", "gru"] = "bert"


@dataclass
class Model:
    text: Encoder = field(default_factory=Encoder)
    codes: Encoder = field(default_factory=lambda: Encoder(hidden=16, kind="gru"))
    loss_weights: dict[str, float] = field(default_factory=lambda: {"t2c": 1.0})


@dataclass
class Run:
    name: str
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: Path | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    frozen_layers: int | None = None


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_yaml_then_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, """
name: pretrain
model:
  text: {hidden: 64}
  loss_weights: {t2c: 1.0, c2c: 0.5}
train:
  lr: 5e-4            # YAML 1.1 reads this as a string; a float field accepts it
  epochs: 3
  eval_every: epoch
data: /tmp/ds
""")
    cfg = load_config(p, ["train.batch_size=64", "model.codes.dropout=0", "seeds=[1, 2, 3]",
                          "model.loss_weights.c2c=0.25", "train.eval_every=50", "frozen_layers=null"], Run)
    assert cfg.name == "pretrain" and cfg.model.text.hidden == 64 and cfg.model.text.kind == "bert"
    assert cfg.model.codes == Encoder(hidden=16, dropout=0.0, kind="gru")
    assert isinstance(cfg.model.codes.dropout, float)
    assert cfg.model.loss_weights == {"t2c": 1.0, "c2c": 0.25}
    assert cfg.train.lr == 5e-4 and cfg.train.epochs == 3 and cfg.train.batch_size == 64
    assert cfg.train.eval_every == 50 and cfg.seeds == [1, 2, 3] and cfg.frozen_layers is None
    assert cfg.data == Path("/tmp/ds")


def test_defaults_without_file() -> None:
    cfg = load_config(None, ["name=x", "train.optimizer=adam"], Run)
    assert cfg.train == TrainConfig(optimizer="adam") and cfg.model == Model()


def test_unknown_keys_are_named_with_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        load_config(None, ["name=x", "train.lrr=0.1"], Run)
    msg = str(e.value)
    assert "'train.lrr'" in msg and "did you mean 'lr'" in msg and "batch_size" in msg and "override" in msg
    p = write(tmp_path, "name: x\nmodel:\n  text:\n    hiden: 3\n")
    with pytest.raises(ValueError, match=r"run\.yaml.*'model\.text\.hiden'.*valid keys under 'model\.text': "
                                         r"dropout, hidden, kind \(did you mean 'hidden'\?\)"):
        load_config(p, [], Run)
    with pytest.raises(ValueError, match="unknown config key 'modle'.*at the top level.*did you mean 'model'"):
        load_config(None, ["modle.text.hidden=3"], Run)
    with pytest.raises(ValueError, match="'train.lr' is a float, it has no sub-key 'train.lr.x'"):
        load_config(None, ["train.lr.x=1"], Run)


def test_type_errors(tmp_path: Path) -> None:
    cases = {
        "train.epochs=three": "'train.epochs' expects an integer, got str",
        "train.epochs=2.5": "'train.epochs' expects an integer, got float",
        "train.progress=1": "'train.progress' expects a boolean",
        "model.text.kind=lstm": "'model.text.kind' expects one of 'bert', 'gru'",
        "seeds=[1, x]": r"'seeds\[1\]' expects an integer",
        "train.eval_every=often": "'train.eval_every' expects",
        "model.text=5": "'model.text' must be a mapping",
        "name=[1]": "'name' expects a string",
    }
    for override, pattern in cases.items():
        with pytest.raises(ValueError, match=pattern):
            load_config(None, ["name=x", override], Run)
    # __post_init__ validation is reported with where it came from.
    with pytest.raises(ValueError, match=r"override.*|<defaults>.*invalid config 'train': batch_size must be"):
        load_config(None, ["name=x", "train.batch_size=0"], Run)


def test_missing_required_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing required config key.*name"):
        load_config(None, [], Run)
    with pytest.raises(ValueError, match="expected dotted.key=value"):
        load_config(None, ["name"], Run)
    with pytest.raises(ValueError, match="empty component"):
        parse_override("a..b=1")
    with pytest.raises(ValueError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), [], Run)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml", [], Run)
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"), [], Run)


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["name=r", "data=some/dir", "train.betas=[0.9, 0.98]", "model.text.hidden=8"], Run)
    out = save_config(cfg, tmp_path / "sub" / "config.yaml")
    plain = yaml.safe_load(out.read_text())
    assert plain == to_dict(cfg) and plain["data"] == "some/dir" and plain["train"]["betas"] == [0.9, 0.98]
    again = load_config(out, [], Run)
    assert again == cfg and again.train.betas == (0.9, 0.98)
    assert from_dict(Run, to_dict(cfg)) == cfg
    assert list(plain) == ["name", "model", "train", "data", "seeds", "frozen_layers"]  # declaration order


def test_apply_overrides_does_not_mutate_input() -> None:
    data = {"name": "a", "model": {"text": {"hidden": 1}}}
    new = apply_overrides(data, ["model.text.hidden=2"], Run)
    assert data["model"]["text"]["hidden"] == 1 and new["model"]["text"]["hidden"] == 2
