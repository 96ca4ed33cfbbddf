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

Test metrics (`task_metrics`):
    readmission   `binary_metrics` (f1, accuracy, auroc, auprc, precision, recall)
    medication    `multilabel_metrics` (f1 micro, accuracy = Hamming, auroc micro, ...) and
                  G-BERT's per-visit `gbert_metrics` prefixed "gbert_" (gbert_jaccard, gbert_f1, gbert_prauc)
    icd_coding    `multilabel_metrics` and CAML's `caml_metrics` (micro_f1, macro_f1, micro_auc, p@5, ...)

Outputs in `out_dir`: train/ (the loop's config.yaml, metrics.jsonl, summary.json; checkpoints
removed unless `keep_checkpoints`), predictions.parquet (patient_id, visit_id, label, prob) of
the test split and result.json (the returned dict).

Learning rates. The paper's 5e-5 / 2e-5 / 1e-5 are for a 12-layer ClinicalBERT with 10 frozen
layers; the demo's towers are small and briefly pre-trained, and the LR / RNN / CNN baselines
start from scratch, so the defaults below are per model family (override with `lr.<model>=...`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from medmm.data.io import atomic_write_text
from medmm.eval.metrics import binary_metrics, caml_metrics, gbert_metrics, multilabel_metrics
from medmm.tasks.featurize import MAX_HISTORY, Collator, NoteTokens, TaskDataset, featurize
from medmm.tasks.spec import TASK_NAMES, TaskSpec
from medmm.train.checkpoint import seed_everything
from medmm.train.loop import Trainer, TrainConfig

PRIMARY = "auroc"


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=4, batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=0.01,
                       eval_every="epoch", early_stopping_patience=2, early_stopping_mode="max",
                       early_stopping_metric=PRIMARY, log_every=50, progress=False, deterministic=True)


def _default_lr() -> dict[str, float]:
    # Pre-trained transformer towers move with a smaller step than the from-scratch baselines.
    bert = 2e-4
    return {"clinicalbert": bert, "gbert+clinicalbert": bert, "medbert+clinicalbert": bert, "medm-plm": bert,
            "medm-plm-cross_modal": bert, "gbert": 5e-4, "gbert-medm-init": 5e-4, "medbert": 5e-4}


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
    train: TrainConfig = field(default_factory=_default_train)
    lr: dict[str, float] = field(default_factory=_default_lr)  # per-model learning rate; else train.lr
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # build_model(**overrides)
    keep_checkpoints: bool = False
    num_threads: int | None = None  # torch intra-op threads during fine-tuning; null = torch's default.
    # On a machine shared with other jobs, 1 thread is several times faster than oversubscribing.


# ---------------------------------------------------------------------------------------------
# Task data: samples -> spec -> datasets, built once and shared by every model and seed


@dataclass
class TaskData:
    spec: TaskSpec
    samples: pl.DataFrame
    splits: dict[str, TaskDataset]


def load_records(data: str | Path | pl.DataFrame) -> pl.DataFrame:
    """`visit_records` of a prepared dataset directory (or the records themselves)."""
    if isinstance(data, pl.DataFrame):
        return data
    from medmm.data.schema import load_dataset
    from medmm.tasks.visits import visit_records

    return visit_records(load_dataset(data))


def task_samples(task: str, records: pl.DataFrame, cfg: FinetuneConfig) -> tuple[pl.DataFrame, TaskSpec]:
    """The task builder's samples and the TaskSpec (label vocabulary from the TRAIN split only)."""
    if task == "readmission":
        from medmm.tasks.readmission import ReadmissionTask

        samples = ReadmissionTask(balance=cfg.readmission_balance, split_seed=cfg.split_seed).build(records)
        return samples, TaskSpec("readmission", "binary", 1, ["readmitted_30d"])
    if task == "medication":
        from medmm.tasks.medication import MedicationTask

        samples = MedicationTask(split_seed=cfg.split_seed).build(records)
        train = samples.filter(pl.col("split") == "train")
        # Output space: ATC-3 classes given in training visits, most frequent first (a class never
        # seen in training cannot be learned; test visits' other classes are out of the space).
        counts = train.select(pl.col("target_med")).explode("target_med").group_by("target_med").len()
        labels = counts.sort(["len", "target_med"], descending=[True, False])["target_med"].to_list()
        if not labels:
            raise ValueError("medication: no training sample has a medication (too few multi-visit patients?)")
        return samples, TaskSpec("medication", "multilabel", len(labels), labels)
    if task == "icd_coding":
        from medmm.tasks.icd_coding import ICDCodingTask

        samples, labels = ICDCodingTask(label_set=cfg.icd_label_set, top_k=cfg.icd_top_k,
                                        split_seed=cfg.split_seed).build(records)
        if not labels:
            raise ValueError("icd_coding: no training visit has a note and a diagnosis")
        return samples, TaskSpec("icd_coding", "multilabel", len(labels), labels)
    raise KeyError(f"unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")


def prepare_task(task: str, records: pl.DataFrame, assets: Any, cfg: FinetuneConfig,
                 notes: NoteTokens | None = None) -> TaskData:
    samples, spec = task_samples(task, records, cfg)
    for s in ("train", "val", "test"):
        if samples.filter(pl.col("split") == s).height == 0:
            raise ValueError(f"task {task!r}: the {s} split is empty ({samples.height} samples in all); "
                             "the dataset is too small for an 8:1:1 patient split")
    if notes is None or notes.max_text_len != cfg.max_text_len:
        notes = NoteTokens.build(records, assets.tokenizer, cfg.max_text_len)
    return TaskData(spec, samples, featurize(samples, records, spec, assets, notes, cfg.max_history))


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
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    probs, extra = [], {k: [] for k in keys}
    try:
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            batch.pop("labels")  # predictions never see the labels
            out = model({k: v.to(device) for k, v in batch.items()})
            probs.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
            for k in keys:
                if k in out:
                    extra[k] += list(out[k].float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(probs), extra


def task_metrics(spec: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The task's full metric set (see module docstring)."""
    if spec.kind == "binary":
        return binary_metrics(y, p)
    out = multilabel_metrics(y, p)
    if spec.name == "medication":
        out.update({f"gbert_{k}": v for k, v in gbert_metrics(y, p).items()})
    elif spec.name == "icd_coding":
        out.update(caml_metrics(y, p, ks=(5, 8, 15)))
    return out


def _val_metrics(spec: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """What the loop logs each epoch: cheap metrics and the selection metric."""
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    if spec.kind == "binary":
        m = binary_metrics(y, p)
    else:
        full = multilabel_metrics(y, p)
        m = {k: full[k] for k in ("f1", "accuracy", "auroc", "auprc")}
        if spec.name == "medication":
            m.update({f"gbert_{k}": v for k, v in gbert_metrics(y, p).items()})
    m["loss"] = loss
    return m


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def run_finetune(model_name: str, task: str | TaskData, data: str | Path | pl.DataFrame | None, assets: Any,
                 cfg: FinetuneConfig | None, out_dir: str | Path, seed: int = 0, train_fraction: float = 1.0,
                 keep_model: bool = False) -> tuple[dict[str, Any], nn.Module | None, TaskData]:
    """`finetune` that can reuse a prepared `TaskData` and hand back the fine-tuned model."""
    cfg = cfg or FinetuneConfig()
    out = Path(out_dir)
    t0 = time.perf_counter()
    c0 = time.process_time()
    td = task if isinstance(task, TaskData) else prepare_task(task, load_records(data), assets, cfg)
    prev_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _run(model_name, td, assets, cfg, out, seed, train_fraction, keep_model, t0, c0)
    finally:
        torch.set_num_threads(prev_threads)


def resolved_train_config(model_name: str, task: str, cfg: FinetuneConfig, seed: int) -> TrainConfig:
    """The loop's config of one run: `cfg.train` with the run's seed, the model's learning rate and
    the task's selection metric for early stopping."""
    return dataclasses.replace(cfg.train, seed=seed, lr=cfg.lr.get(model_name, cfg.train.lr),
                               early_stopping_metric=cfg.selection_metric.get(task, PRIMARY),
                               early_stopping_mode="max")


def _run(model_name: str, td: TaskData, assets: Any, cfg: FinetuneConfig, out: Path, seed: int,
         train_fraction: float, keep_model: bool, t0: float, c0: float) -> tuple[dict[str, Any], nn.Module | None, TaskData]:
    from medmm.models import downstream  # the registry, looked up at call time (tests may stand in)

    spec = td.spec
    train_ds = train_subset(td.splits["train"], train_fraction, seed)
    val_ds, test_ds = td.splits["val"], td.splits["test"]
    inputs = downstream.model_inputs(model_name)
    collate = Collator(spec, text="text" in inputs, codes="codes" in inputs)
    selection = cfg.selection_metric.get(spec.name, PRIMARY)

    seed_everything(seed)  # the new layers' initialisation depends on the seed
    model = downstream.build_model(model_name, spec, assets, **cfg.model_overrides.get(model_name, {}))
    tcfg = resolved_train_config(model_name, spec.name, cfg, seed)
    y_val = val_ds.labels

    def evaluate(m: nn.Module) -> dict[str, float]:
        p, _ = predict(m, val_ds, collate, cfg.eval_batch_size)
        return _val_metrics(spec, y_val, p)

    run_config = {"model": model_name, "task": spec.name, "seed": seed, "train_fraction": train_fraction,
                  "finetune": dataclasses.asdict(dataclasses.replace(cfg, train=tcfg))}
    fit = Trainer(model, train_ds, tcfg, out / "train", collate_fn=collate, evaluate=evaluate,
                  run_config=run_config).fit(overwrite=True)
    # The loop has restored the best validation checkpoint; the test split is scored once.
    p_test, _ = predict(model, test_ds, collate, cfg.eval_batch_size)
    metrics = task_metrics(spec, test_ds.labels, p_test)
    _save_predictions(out / "predictions.parquet", test_ds, p_test)
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "train" / "checkpoints", ignore_errors=True)
    result = {
        "model": model_name, "task": spec.name, "seed": seed, "train_fraction": train_fraction,
        "metrics": metrics, "selection_metric": selection, "best_val": fit.best_metrics,
        "best_step": fit.best_step, "steps": fit.global_step, "epochs": fit.epoch, "stopped_early": fit.stopped_early,
        "n_train": len(train_ds), "n_val": len(val_ds), "n_test": len(test_ds), "num_labels": spec.num_labels,
        "lr": tcfg.lr, "train_time_s": fit.wall_time_s, "wall_time_s": round(time.perf_counter() - t0, 3),
        # CPU seconds of this process (all its threads): the cost on a machine shared with other jobs
        "cpu_time_s": round(time.process_time() - c0, 3),
        "out_dir": str(out),
    }
    atomic_write_text(out / "result.json", json.dumps(_jsonable(result), indent=2) + "\n")
    return result, (model if keep_model else None), td


def finetune(model_name: str, task: str, data: str | Path | pl.DataFrame, assets: Any,
             cfg: FinetuneConfig | None, out_dir: str | Path, seed: int = 0,
             train_fraction: float = 1.0) -> dict[str, Any]:
    """Fine-tune `model_name` on `task` from a dataset directory (or visit records); return the
    result dict whose "metrics" are the TEST metrics of the best validation checkpoint."""
    result, _, _ = run_finetune(model_name, task, data, assets, cfg, out_dir, seed, train_fraction)
    return result


def _save_predictions(path: Path, ds: TaskDataset, p: np.ndarray) -> None:
    df = ds.meta.with_columns(
        pl.Series("label", ds.labels.tolist()), pl.Series("prob", p.astype(np.float32).tolist()))
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp)
    tmp.replace(path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


__all__ = ["FinetuneConfig", "TaskData", "finetune", "run_finetune", "prepare_task", "task_samples",
           "load_records", "task_metrics", "predict", "train_subset", "resolved_train_config"]
