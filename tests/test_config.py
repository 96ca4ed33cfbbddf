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


# ---------------------------------------------------------------------------------------------
# The experiment config: every key under a mapping-valued option is checked at load time


def exp(overrides: list[str], text: str | None = None, tmp_path: Path | None = None):
    from medmm.recipes.experiment import ExperimentConfig

    path = None
    if text is not None:
        path = tmp_path / "exp.yaml"
        path.write_text(text)
    return load_config(path, overrides, ExperimentConfig)


def test_misspelt_model_in_lr_names_the_valid_models(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"finetune\.lr: unknown model 'gbrt'; valid: lr, rnn, cnn, gbert, .*medm-plm"
                                         r".* \(did you mean 'gbert'\?\)"):
        exp(["finetune.lr.gbrt=1e-3"])
    with pytest.raises(ValueError, match=r"exp\.yaml.*finetune\.lr: unknown model 'medm_plm'.*did you mean 'medm-plm'"):
        exp([], "finetune:\n  lr:\n    medm_plm: 1.0e-4\n", tmp_path)
    # a per-task rate: its task names are checked too
    with pytest.raises(ValueError, match=r"finetune\.lr\.gbert: unknown task 'icd'; valid: readmission, medication, "
                                         r"icd_coding"):
        exp(["finetune.lr.gbert={readmission: 1e-3, icd: 1e-3}"])
    with pytest.raises(ValueError, match=r"finetune\.lr\.gbert: a learning rate must be a number > 0, got 0"):
        exp(["finetune.lr.gbert=0"])


def test_selection_metric_task_and_metric_are_checked() -> None:
    with pytest.raises(ValueError, match=r"finetune\.selection_metric: unknown task 'readmision'; valid: readmission, "
                                         r"medication, icd_coding, next_visit_dx, arf, shock, mortality, "
                                         r"icu_readmission \(did you mean 'readmission'\?\)"):
        exp(["finetune.selection_metric.readmision=auroc"])
    with pytest.raises(ValueError, match=r"finetune\.selection_metric\.medication: unknown validation metric of "
                                         r"medication 'gbert_pr_auc'; valid: .*gbert_prauc.* \(did you mean 'gbert_prauc'\?\)"):
        exp(["finetune.selection_metric.medication=gbert_pr_auc"])
    # a metric another task reports is not one this task reports
    with pytest.raises(ValueError, match=r"selection_metric\.icd_coding: unknown validation metric of icd_coding "
                                         r"'gbert_jaccard'; valid: accuracy, auprc, auroc, f1, loss"):
        exp(["finetune.selection_metric.icd_coding=gbert_jaccard"])
    cfg = exp(["finetune.selection_metric.medication=gbert_prauc", "finetune.selection_metric.readmission=loss"])
    from medmm.recipes.finetune import resolved_train_config

    med = resolved_train_config("gbert", "medication", cfg.finetune, seed=3)
    readm = resolved_train_config("gbert", "readmission", cfg.finetune, seed=3)
    assert (med.early_stopping_metric, med.early_stopping_mode, med.seed) == ("gbert_prauc", "max", 3)
    assert (readm.early_stopping_metric, readm.early_stopping_mode) == ("loss", "min")  # a loss is minimised


def test_selection_metrics_are_what_the_task_logs() -> None:
    import numpy as np

    from medmm.recipes.finetune import selection_metrics
    from medmm.tasks.registry import task_class

    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1.0]])
    p = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.8, 0.4, 0.2], [0.3, 0.1, 0.9]])
    val = task_class("medication").val_metrics(y, p)
    assert set(selection_metrics("medication")) == set(val) >= {"auroc", "gbert_prauc", "loss"}


def test_bad_model_override_is_an_error_listing_the_builders_options() -> None:
    with pytest.raises(ValueError, match=r"finetune\.model_overrides\.medm-plm: unknown option of model 'medm-plm' "
                                         r"'text_frozn'; valid: .*text_frozen.* \(did you mean 'text_frozen'\?\)"):
        exp(["finetune.model_overrides.medm-plm.text_frozn=true"])
    with pytest.raises(ValueError, match=r"finetune\.model_overrides: unknown model 'clinicalbrt'.*did you mean "
                                         r"'clinicalbert'"):
        exp(["finetune.model_overrides.clinicalbrt.text_frozen=true"])
    cfg = exp(["finetune.model_overrides.gbert+clinicalbert.text_frozen=true"])
    assert cfg.finetune.model_overrides == {"gbert+clinicalbert": {"text_frozen": True}}


def test_every_registered_model_has_a_learning_rate_and_an_override_schema() -> None:
    from medmm.models import downstream
    from medmm.recipes.finetune import DEFAULT_LR, override_fields

    assert set(DEFAULT_LR) == set(downstream.MODELS)
    for model in downstream.MODELS:
        assert override_fields(model), model


@pytest.mark.parametrize("key, value, says", [
    ("seed", "3", "each run's seed comes from the experiment's seeds"),
    ("lr", "1e-4", r"the learning rate is per model: set finetune\.lr\.<model>"),
    ("early_stopping_metric", "loss", r"set finetune\.selection_metric\.<task>"),
    ("early_stopping_mode", "min", r"it follows finetune\.selection_metric"),
])
def test_keys_the_recipe_sets_are_rejected_with_what_to_set_instead(tmp_path: Path, key, value, says) -> None:
    with pytest.raises(ValueError, match=rf"override 'finetune\.train\.{key}={value}': config key "
                                         rf"'finetune\.train\.{key}' cannot be set: .*{says}"):
        exp([f"finetune.train.{key}={value}"])
    with pytest.raises(ValueError, match=rf"exp\.yaml: config key 'finetune\.train\.{key}' cannot be set: .*{says}"):
        exp([], f"finetune:\n  train:\n    epochs: 2\n    {key}: {value}\n", tmp_path)
    # ... and a config changed in memory is refused before any training
    from medmm.recipes.finetune import check_finetune_config

    cfg = exp([])
    setattr(cfg.finetune.train, key, {"seed": 3, "lr": 1e-4}.get(key, value))
    with pytest.raises(ValueError, match=rf"finetune\.train\.{key} = .* would be ignored: .*{says}"):
        check_finetune_config(cfg.finetune)


def test_train_lr_is_not_a_fallback_per_model_rates_are(tmp_path: Path) -> None:
    from medmm.recipes.finetune import DEFAULT_LR, model_lr, resolved_train_config

    cfg = exp(["finetune.lr.medm-plm={medication: 1e-4}", "finetune.lr.lr=5e-3"]).finetune
    assert model_lr(cfg, "medm-plm", "medication") == 1e-4
    assert model_lr(cfg, "medm-plm", "readmission") == DEFAULT_LR["medm-plm"]["readmission"] == 2e-5  # the paper's
    assert model_lr(cfg, "gbert", "medication") == DEFAULT_LR["gbert"] == 5e-4  # G-BERT's code
    assert resolved_train_config("lr", "icd_coding", cfg, seed=0).lr == 5e-3


def test_experiment_config_round_trips_without_the_reserved_keys(tmp_path: Path) -> None:
    from medmm.recipes.experiment import ExperimentConfig, demo_experiment_config

    for cfg in (ExperimentConfig(), demo_experiment_config()):
        out = save_config(cfg, tmp_path / "saved.yaml")
        train = yaml.safe_load(out.read_text())["finetune"]["train"]
        assert not {"seed", "lr", "early_stopping_metric", "early_stopping_mode"} & set(train)
        assert "epochs" in train and "early_stopping_patience" in train
        assert load_config(out, [], ExperimentConfig) == cfg


def test_experiment_level_names_are_checked() -> None:
    with pytest.raises(ValueError, match=r"ratio_models\[1\]: unknown model 'medmplm'.*did you mean 'medm-plm'"):
        exp(["ratio_models=[lr, medmplm]"])
    with pytest.raises(ValueError, match=r"attention_task: unknown task 'readmit'.*valid: readmission"):
        exp(["attention_task=readmit"])
