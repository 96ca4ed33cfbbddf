"""Fine-tune any registered downstream model on a MedM-PLM task (Table III), with the one loop.

    assets = Assets.from_medm_plm("runs/pretrain/model", text_path=..., gbert_path=...)
    result = finetune("medm-plm", "readmission", "runs/demo/dataset", assets, FinetuneConfig(),
                      "runs/ft/medm-plm-readmission-s0", seed=0)
    result["metrics"]["auroc"]

Protocol (MedM-PLM §III-D, §IV-B):
* samples from the task builders (`medmm.tasks.*`), split 8:1:1 by patient with a FIXED split
  seed (`split_seed`), so every model and every training seed sees the same patients; the seed
  varies the initialisation of the new layers, dropout and the data order (and, with
  `train_fraction` < 1, which training samples are kept);
* training with `medmm.train.loop.Trainer`, evaluated on the validation split after every
  epoch; early stopping and the best checkpoint follow the task's validation selection metric
  (`selection_metric`, default AUROC for all three tasks: binary AUROC for readmission, micro
  AUROC over (visit, label) cells for medication and ICD coding -- AUROC is the primary column of
  Table III; G-BERT selected medication models by PR-AUC, available as "gbert_prauc");
* the best checkpoint is evaluated ONCE on the test split. Model selection never sees the test set.

Test metrics: each task's `test_metrics` (its file under `medmm.tasks` says which: readmission
`binary_metrics`; medication `multilabel_metrics` and G-BERT's per-visit `gbert_metrics` prefixed
"gbert_"; ICD coding `multilabel_metrics` and CAML's `caml_metrics`).

Outputs in `out_dir`: train/ (the loop's config.yaml, metrics.jsonl, summary.json; checkpoints/
last and best, kept until the test split is scored and then removed unless `keep_checkpoints`,
so that an interrupted run continues exactly with `resume=True`), predictions.parquet (patient_id, visit_id, label, prob) of
the test split and result.json (the returned dict; `best_epoch`, `epochs_run`, `epoch_cap` and
`peaked_at_cap` say whether the run converged: a run whose best validation epoch is its last,
at the cap, was stopped by the budget and may be under-trained).

Epochs. Training runs until the validation selection metric has not improved for
`train.early_stopping_patience` epochs (default 5), at most `train.epochs` epochs (default 50),
and the best epoch's weights are restored (`train.restore_best`).

Learning rates: `DEFAULT_LR` below, per model (and per task where the source gives one rate per
task), each with its source; `lr.<model>: rate` or `lr.<model>: {<task>: rate}` replaces it (a
model or task left out keeps its default).

What the recipe sets per run, and therefore a config may not (`FinetuneConfig.__config_reserved__`;
a file or override that sets one is an error saying what to set instead): `train.seed` (the
run's seed: `--seeds` / `seeds=`), `train.lr` (the model's rate from `lr`),
`train.early_stopping_metric` and `train.early_stopping_mode` (from `selection_metric`; "loss" is
minimised, every other metric maximised). Every key of `lr`, `selection_metric` and
`model_overrides` is checked when the config is built (`check_finetune_config`): a model name
against the downstream registry, a task name against the tasks, a selection metric against the
validation metrics of its task (`selection_metrics`), a model override against the fields of
that model's config class (`override_fields`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from medmm.config import did_you_mean
from medmm.data.io import atomic_write_text, jsonable
from medmm.tasks.base import Task
from medmm.tasks.featurize import MAX_HISTORY, Collator, NoteTokens, TaskDataset, featurize
from medmm.tasks.registry import TASK_NAMES, build_task, task_class
from medmm.tasks.spec import TaskSpec
from medmm.train.checkpoint import seed_everything
from medmm.train.device import model_device, to_device
from medmm.train.loop import EpochSampler, Trainer, TrainConfig

PRIMARY = "auroc"
MINIMISED = frozenset({"loss"})  # selection metrics where lower is better; every other one is maximised
EPOCH_CAP, PATIENCE = 50, 5  # converged by default: early stopping decides, the cap is a safety net

# The learning rate of each downstream model (a {task: rate} mapping where the source sets one
# rate per task). `FinetuneConfig.lr` replaces entries; tests check that every registered model has one.
# Next-visit diagnosis is not in the paper: the medication rate, its other task over a visit history.
_PAPER_TASK_LR = {"medication": 5e-5, "readmission": 2e-5, "icd_coding": 1e-5, "next_visit_dx": 5e-5}
DEFAULT_LR: dict[str, float | dict[str, float]] = {
    # MedM-PLM §IV-B (paper-notes): 5e-5 medication, 2e-5 readmission, 1e-5 ICD coding, for the
    # 12-layer ClinicalBERT text tower with its last 2 layers, the code tower and the heads trained.
    "medm-plm": _PAPER_TASK_LR, "medm-plm-cross_modal": _PAPER_TASK_LR,
    # Table III's models with a ClinicalBERT tower: the paper gives no separate rates, so its task
    # rates (Huang et al.'s ClinicalBERT readmission fine-tuning also used 2e-5).
    "clinicalbert": _PAPER_TASK_LR, "gbert+clinicalbert": _PAPER_TASK_LR, "medbert+clinicalbert": _PAPER_TASK_LR,
    # G-BERT's code (run_gbert.py): Adam, lr 5e-4, 20 epochs, the best validation PR-AUC kept.
    "gbert": 5e-4, "gbert-medm-init": 5e-4,
    # Med-BERT: no rate for this protocol in the notes; G-BERT's, for the same size of code transformer.
    "medbert": 5e-4,
    # Trained from scratch (no pre-trained tower): PyHealth's Trainer default, Adam 1e-3, which is
    # also the rate of PyHealth's code-only baselines (RNN, CNN) trained to convergence.
    "lr": 1e-3, "rnn": 1e-3, "cnn": 1e-3,
}


def _default_train() -> TrainConfig:
    # lr / seed / early_stopping_metric / early_stopping_mode are set per run (resolved_train_config).
    return TrainConfig(epochs=EPOCH_CAP, batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=0.01,
                       eval_every="epoch", early_stopping_patience=PATIENCE, early_stopping_mode="max",
                       early_stopping_metric=PRIMARY, log_every=50, progress=False, deterministic=True)


@dataclass
class FinetuneConfig:
    max_text_len: int = 256  # paper: 512; the CPU demo uses 256 word pieces
    max_history: int | None = MAX_HISTORY  # medication: most recent earlier visits kept; null = all
    split_seed: int = 0
    readmission_balance: str = "undersample"  # paper: 1:1 positives / negatives in every split
    icd_label_set: str = "top50"
    icd_top_k: int = 50
    selection_metric: dict[str, str] = field(default_factory=lambda: {t: PRIMARY for t in TASK_NAMES})
    eval_batch_size: int = 128
    train: TrainConfig = field(default_factory=_default_train)  # less the reserved keys below
    lr: dict[str, float | dict[str, float]] = field(default_factory=dict)  # model -> rate; replaces DEFAULT_LR's
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # build_model(**overrides)
    keep_checkpoints: bool = False
    num_threads: int | None = None  # torch intra-op threads during fine-tuning; null = torch's default.
    # On a machine shared with other jobs, 1 thread is several times faster than oversubscribing.
    icu_prediction_hours: float = 48.0  # ICU tasks (arf, shock, mortality, icu_readmission): T (MedCSP: 48)
    timeseries: str | None = None  # ICU tasks: a medmm.tasks.timeseries feature directory (same T, split)

    # Set by `resolved_train_config` for every run; a config that sets one is an error (medmm.config).
    __config_reserved__ = {
        "train.seed": "each run's seed comes from the experiment's seeds (--seeds / seeds=)",
        "train.lr": "the learning rate is per model: set finetune.lr.<model> (defaults: finetune.DEFAULT_LR)",
        "train.early_stopping_metric": "early stopping follows the task's selection metric: set "
                                       "finetune.selection_metric.<task>",
        "train.early_stopping_mode": "it follows finetune.selection_metric ('loss' is minimised, "
                                     "every other metric maximised)",
    }

    def __post_init__(self) -> None:
        check_finetune_config(self)


# ---------------------------------------------------------------------------------------------
# Config checks: every key of the mapping-valued options, before any training


def _model_names() -> list[str]:
    from medmm.models import downstream  # the registry, looked up at call time

    return list(downstream.MODELS)


def override_fields(model: str) -> list[str] | None:
    """The `model_overrides.<model>` keys that `model`'s builder accepts: the fields of its
    registry entry's config class (None for a name that is not registered)."""
    from medmm.models import downstream  # the registry, looked up at call time

    entry = downstream.MODELS.get(model)
    return None if entry is None else [f.name for f in dataclasses.fields(entry.config_class())]


def selection_metrics(task: str) -> tuple[str, ...]:
    """The validation metrics `task` logs every epoch: the choices of `selection_metric[task]`."""
    return task_class(task).selection_metrics()


def _unknown(kind: str, name: str, key: str, valid: list[str]) -> ValueError:
    return ValueError(f"{key}: unknown {kind} {name!r}; valid: {', '.join(valid)}{did_you_mean(name, valid)}")


def check_finetune_config(cfg: FinetuneConfig) -> None:
    """Raise ValueError for any key of `lr`, `selection_metric` or `model_overrides` that no run
    would read, and for a reserved `train` key that does not hold its default (module docstring)."""
    models, tasks = _model_names(), list(TASK_NAMES)
    for model, rate in cfg.lr.items():
        if model not in models:
            raise _unknown("model", model, "finetune.lr", models)
        for task, r in (rate.items() if isinstance(rate, dict) else [(None, rate)]):
            key = f"finetune.lr.{model}" + (f".{task}" if task is not None else "")
            if task is not None and task not in tasks:
                raise _unknown("task", task, f"finetune.lr.{model}", tasks)
            if not (isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0):
                raise ValueError(f"{key}: a learning rate must be a number > 0, got {r!r}")
    for task, metric in cfg.selection_metric.items():
        if task not in tasks:
            raise _unknown("task", task, "finetune.selection_metric", tasks)
        valid = list(selection_metrics(task))
        if metric not in valid:
            raise _unknown(f"validation metric of {task}", metric, f"finetune.selection_metric.{task}", valid)
    for model, kwargs in cfg.model_overrides.items():
        if model not in models:
            raise _unknown("model", model, "finetune.model_overrides", models)
        accepted = override_fields(model)
        if not isinstance(kwargs, dict):
            raise ValueError(f"finetune.model_overrides.{model}: expected a mapping of {model}'s config keys, "
                             f"got {type(kwargs).__name__} ({kwargs!r})")
        for kw in kwargs if accepted is not None else ():
            if kw not in accepted:
                raise _unknown(f"option of model {model!r}", kw, f"finetune.model_overrides.{model}",
                               sorted(accepted))
    default = _default_train()
    for path, why in FinetuneConfig.__config_reserved__.items():
        name = path.split(".", 1)[1]
        if getattr(cfg.train, name) != getattr(default, name):
            raise ValueError(f"finetune.{path} = {getattr(cfg.train, name)!r} would be ignored: {why}")


def model_lr(cfg: FinetuneConfig, model: str, task: str) -> float:
    """The learning rate of `model` on `task`: `cfg.lr`'s entry, else `DEFAULT_LR`'s."""
    for table in (cfg.lr, DEFAULT_LR):
        rate = table.get(model)
        if isinstance(rate, dict):
            rate = rate.get(task)
        if rate is not None:
            return float(rate)
    raise KeyError(f"no learning rate for model {model!r} on task {task!r}: set finetune.lr.{model}")


# ---------------------------------------------------------------------------------------------
# Task data: samples -> spec -> datasets, built once and shared by every model and seed


@dataclass
class TaskData:
    spec: TaskSpec
    samples: pl.DataFrame
    splits: dict[str, TaskDataset]
    task: Task  # what built them: its metrics score the predictions

    def notes(self) -> list[list[int]]:
        """Every note token list the samples hold (current and history notes, every split)."""
        out: list[list[int]] = []
        for ds in self.splits.values():
            out += ds.features.get("input_ids", [])
            out += [n for hist in ds.features.get("hist_input_ids", []) for n in hist]
        return out


def load_records(data: str | Path | pl.DataFrame, kind: str = "visits") -> pl.DataFrame:
    """The records of `kind` (`medmm.tasks.registry.RECORDS`: a task's `records`) of a prepared
    dataset directory, or the records themselves."""
    if isinstance(data, pl.DataFrame):
        return data
    from medmm.data.schema import load_dataset
    from medmm.tasks.registry import record_builder

    return record_builder(kind)(load_dataset(data))


def task_samples(task: str, records: pl.DataFrame, cfg: FinetuneConfig) -> tuple[pl.DataFrame, TaskSpec]:
    """The task's samples and its TaskSpec (label vocabulary from the TRAIN split only)."""
    return build_task(task, cfg).samples(records)


def prepare_task(task: str, records: pl.DataFrame, assets: Any, cfg: FinetuneConfig,
                 notes: NoteTokens | None = None) -> TaskData:
    builder = build_task(task, cfg)
    samples, spec = builder.samples(records)
    for s in ("train", "val", "test"):
        if samples.filter(pl.col("split") == s).height == 0:
            raise ValueError(f"task {task!r}: the {s} split is empty ({samples.height} samples in all); "
                             "the dataset is too small for an 8:1:1 patient split")
    if notes is None or notes.max_text_len != cfg.max_text_len:
        notes = NoteTokens.build(records, assets.tokenizer, cfg.max_text_len)
    return TaskData(spec, samples, featurize(samples, records, spec, builder, assets, notes), builder)


def train_subset(ds: TaskDataset, fraction: float, seed: int) -> TaskDataset:
    """A seeded `fraction` of the training samples (Figure 4); stratified by label for binary tasks
    so that a 10 % subset still holds both classes."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return ds
    rng = np.random.default_rng(seed)
    groups = ([np.flatnonzero(ds.labels == c) for c in (0.0, 1.0)] if ds.spec.kind == "binary"
              else [np.arange(len(ds))])
    keep = [rng.choice(g, size=max(1, round(fraction * len(g))), replace=False) for g in groups if len(g)]
    return ds.subset(np.sort(np.concatenate(keep)).tolist())


# ---------------------------------------------------------------------------------------------
# Prediction and metrics


@torch.no_grad()
def predict(model: nn.Module, ds: TaskDataset, collate: Collator, batch_size: int = 128,
            keys: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Sigmoid scores (N,) or (N, K) of `ds` in order; plus the per-sample rows of output `keys`."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    probs, extra = [], {k: [] for k in keys}
    try:
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            batch.pop("labels")  # predictions never see the labels
            out = model(to_device(batch, device))
            probs.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
            for k in keys:
                if k in out:
                    extra[k] += list(out[k].float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(probs), extra


def task_metrics(spec: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The task's full metric set (`Task.test_metrics`; see the task's file)."""
    return task_class(spec.name).test_metrics(y, p)


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def run_finetune(model_name: str, task: str | TaskData, data: str | Path | pl.DataFrame | None, assets: Any,
                 cfg: FinetuneConfig | None, out_dir: str | Path, seed: int = 0, train_fraction: float = 1.0,
                 keep_model: bool = False, resume: bool = False,
                 note_features: dict | None = None) -> tuple[dict[str, Any], nn.Module | None, TaskData]:
    """`finetune` that can reuse a prepared `TaskData` and hand back the fine-tuned model.

    note_features: the frozen text towers' outputs (`downstream.NoteFeatures` by tower key), as
    the experiment computes them once for all its runs; missing ones are computed here over the
    task's notes, before training (a model without a frozen tower needs none).

    resume: continue the interrupted run in `out_dir` from train/checkpoints/last exactly (the
    same weights as an uninterrupted run; a fresh start when there is no checkpoint). The caller
    vouches that the run's config is the one the checkpoint was written with (the experiment
    compares run_config.json); the loop checks batch size, seed and data size itself."""
    cfg = cfg or FinetuneConfig()
    check_finetune_config(cfg)  # again: a config's fields may have been changed since it was built
    out = Path(out_dir)
    t0 = time.perf_counter()
    c0 = time.process_time()
    td = task if isinstance(task, TaskData) else prepare_task(task, load_records(data, task_class(task).records),
                                                              assets, cfg)
    prev_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _run(model_name, td, assets, cfg, out, seed, train_fraction, keep_model, resume, note_features, t0, c0)
    finally:
        torch.set_num_threads(prev_threads)


def resolved_train_config(model_name: str, task: str, cfg: FinetuneConfig, seed: int) -> TrainConfig:
    """The loop's config of one run: `cfg.train` with the run's seed, the model's learning rate on
    this task (`model_lr`) and the task's selection metric for early stopping."""
    selection = cfg.selection_metric.get(task, PRIMARY)
    return dataclasses.replace(cfg.train, seed=seed, lr=model_lr(cfg, model_name, task),
                               early_stopping_metric=selection,
                               early_stopping_mode="min" if selection in MINIMISED else "max")


def _run(model_name: str, td: TaskData, assets: Any, cfg: FinetuneConfig, out: Path, seed: int,
         train_fraction: float, keep_model: bool, resume: bool, note_features: dict | None, t0: float,
         c0: float) -> tuple[dict[str, Any], nn.Module | None, TaskData]:
    from medmm.models import downstream  # the registry, looked up at call time (tests may stand in)

    spec = td.spec
    train_ds = train_subset(td.splits["train"], train_fraction, seed)
    val_ds, test_ds = td.splits["val"], td.splits["test"]
    inputs = downstream.model_inputs(model_name)
    collate = Collator(spec, reads=inputs)
    selection = cfg.selection_metric.get(spec.name, PRIMARY)

    seed_everything(seed)  # the new layers' initialisation depends on the seed
    model = downstream.build_model(model_name, spec, assets, **cfg.model_overrides.get(model_name, {}))
    if downstream.frozen_text_towers(model):  # frozen towers read their outputs as data, computed once
        downstream.attach_note_features(model, downstream.compute_note_features([model], td.notes(), note_features))
    tcfg = resolved_train_config(model_name, spec.name, cfg, seed)
    y_val = val_ds.labels

    def evaluate(m: nn.Module) -> dict[str, float]:
        p, _ = predict(m, val_ds, collate, cfg.eval_batch_size)
        return td.task.val_metrics(y_val, p)

    run_config = {"model": model_name, "task": spec.name, "seed": seed, "train_fraction": train_fraction,
                  "finetune": {**dataclasses.asdict(cfg), "train": dataclasses.asdict(tcfg)}}
    fit = Trainer(model, train_ds, tcfg, out / "train", collate_fn=collate, evaluate=evaluate,
                  run_config=run_config).fit(resume=resume, overwrite=not resume)
    # The loop has restored the best validation checkpoint; the test split is scored once.
    p_test, _ = predict(model, test_ds, collate, cfg.eval_batch_size)
    epochs = training_epochs(fit, tcfg, len(train_ds))
    metrics = td.task.test_metrics(test_ds.labels, p_test)
    _save_predictions(out / "predictions.parquet", test_ds, p_test)
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "train" / "checkpoints", ignore_errors=True)
    result = {
        "model": model_name, "task": spec.name, "seed": seed, "train_fraction": train_fraction,
        "metrics": metrics, "selection_metric": selection, "best_val": fit.best_metrics,
        "best_step": fit.best_step, "steps": fit.global_step, **epochs, "stopped_early": fit.stopped_early,
        "n_train": len(train_ds), "n_val": len(val_ds), "n_test": len(test_ds), "num_labels": spec.num_labels,
        "lr": tcfg.lr, "train_time_s": fit.wall_time_s, "wall_time_s": round(time.perf_counter() - t0, 3),
        # CPU seconds of this process (all its threads): the cost on a machine shared with other jobs
        "cpu_time_s": round(time.process_time() - c0, 3),
        "out_dir": str(out),
    }
    atomic_write_text(out / "result.json", json.dumps(jsonable(result), indent=2) + "\n")
    return result, (model if keep_model else None), td


def training_epochs(fit: Any, tcfg: TrainConfig, n_train: int) -> dict[str, Any]:
    """How long a run trained, in epochs: `best_epoch` (of the restored weights), `epochs_run`,
    `epoch_cap` (`train.epochs`, or `max_steps` in epochs) and `peaked_at_cap`: the budget ran out
    (no early stop) and the last evaluation was the best -- the run may be under-trained."""
    spe = EpochSampler(n_train, tcfg.batch_size, drop_last=tcfg.drop_last).steps_per_epoch
    cap_steps = tcfg.max_steps if tcfg.max_steps is not None else tcfg.epochs * spe

    def epochs(steps: int | None) -> int | float | None:
        if steps is None:
            return None
        return steps // spe if steps % spe == 0 else round(steps / spe, 4)

    peaked = (not fit.stopped_early and fit.best_step is not None and fit.global_step >= cap_steps
              and fit.best_step == fit.global_step)
    return {"best_epoch": epochs(fit.best_step), "epochs_run": epochs(fit.global_step),
            "epoch_cap": epochs(cap_steps), "patience": tcfg.early_stopping_patience, "peaked_at_cap": peaked}


def finetune(model_name: str, task: str, data: str | Path | pl.DataFrame, assets: Any,
             cfg: FinetuneConfig | None, out_dir: str | Path, seed: int = 0,
             train_fraction: float = 1.0, resume: bool = False) -> dict[str, Any]:
    """Fine-tune `model_name` on `task` from a dataset directory (or visit records); return the
    result dict whose "metrics" are the TEST metrics of the best validation checkpoint
    (`resume`: see `run_finetune`)."""
    result, _, _ = run_finetune(model_name, task, data, assets, cfg, out_dir, seed, train_fraction,
                                resume=resume)
    return result


def _save_predictions(path: Path, ds: TaskDataset, p: np.ndarray) -> None:
    df = ds.meta.with_columns(
        pl.Series("label", ds.labels.tolist()), pl.Series("prob", p.astype(np.float32).tolist()))
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp)
    tmp.replace(path)


__all__ = ["FinetuneConfig", "TaskData", "finetune", "run_finetune", "prepare_task", "task_samples",
           "load_records", "task_metrics", "predict", "train_subset", "resolved_train_config", "DEFAULT_LR",
           "check_finetune_config", "model_lr", "selection_metrics", "override_fields", "training_epochs"]
