"""The MedM-PLM results experiment: models x tasks x seeds -> Table III, Figure 4, Figure 5.

    medmm experiment medm-plm --data DATASET --pretrained DIR --seeds 3 [--models ...] [--tasks ...] --out OUT

    run_medm_plm_experiment(data_dir, out_dir, assets, models, tasks, seeds) -> OUT/report.md

What runs:
1. the visit records are read and every note is tokenised ONCE; each task's samples and
   tensors are built once and shared by every model and seed (`medmm.recipes.finetune`);
   models configured with a frozen text tower (`text_frozen` in `finetune.model_overrides`)
   have every note run through that tower once, before fine-tuning (`frozen_note_features`);
2. every (model, task, seed) is fine-tuned with early stopping on validation and scored once on
   test (Table III); a progress line per run gives its primary metric and the elapsed time;
   with `workers` > 1 the runs are spread over that many spawned processes (same numbers);
3. Figure 4: `ratio_models` on `ratio_task` trained on each fraction of the training set (the
   100 % point reuses the Table III runs);
4. Figure 5: the cross-modal attention of the fine-tuned MedM-PLM readmission model (first seed)
   on one test visit: the highest-scored true positive with a note.

Oracle (synthetic data only). The generator saves every admission's true 30-day readmission
probability (`ground_truth/visits.parquet`: HADM_ID, p_readmit_30d). Scored on the SAME test
samples it is the Bayes-optimal ranking, so its AUROC is the ceiling; each model's
(AUROC - 0.5) / (oracle AUROC - 0.5) is the fraction of that margin over chance it recovers.
Only the oracle's ranking metrics (AUROC, AUPRC) are reported: its probabilities live on the
natural prevalence, so under 1:1 undersampling F1 / accuracy at 0.5 would be meaningless, and the
same two columns are kept under `readmission_balance: natural` so the row means one thing.

The demo's settings: `demo_experiment_config()` / configs/demo_experiment.yaml, run by
`run_demo_experiment` (the demo's experiment step).

Outputs in OUT: report.md, results.csv (Table III: <column>_mean/_std/_n, then per task the
best epoch, epochs run and fraction of seeds that peaked at the epoch cap), runs.csv (one row per
run: learning rate, selection metric, best epoch, epochs run, cap, patience, `peaked_at_cap`),
results.json (the table, every run's full result, the count and list of runs at their cap, the
oracle, the Figure 4 curves, the config), figures/training_ratio.png, figures/attention.png,
timings.json and timings.md (wall and CPU seconds, see below),
runs/<task>/<model>/seed<k>[-f<frac>]/ (one directory per run).

Convergence. Every run trains until early stopping on its validation selection metric, up to
`finetune.train.epochs`. A run whose best epoch is its cap was stopped by the budget, not by
convergence: report.md says how many in its header and marks each one ("stopped at cap, may be
under-trained"), and `budget_note` says why a config's cap is small (the demo's).

Resuming (the grid runner, `medmm.recipes.runner`, shared by experiment recipes). Invoked again
with the same OUT, the experiment runs only what is not finished:
    runs/<task>/<model>/seed<k>[-f<frac>]/
        result.json       the run's result (`run_finetune`) plus `config_hash`; written last and
                          atomically (temporary file, fsync, rename), so it marks the run finished
        run_config.json   what `config_hash` is the sha256 of (`run_config`): the run's key (task,
                          model, seed, train fraction), its resolved fine-tuning config (this model's
                          learning rate and overrides, this task's selection metric and task
                          options) and the content hashes of the dataset and pre-trained assets
        attention.json    Figure 5's run only: `attention_example` of its model (null if none), so
                          the figure is drawn again when that run is skipped
        train/, predictions.parquet
run_config.json is written when a run starts, result.json when it ends. A run is skipped when
its result.json parses and holds the hash of the current config; an unreadable result.json or a
different hash reruns it (a log line says why). A run interrupted during training (killed,
preempted) whose run_config.json is the current one continues from its train/checkpoints/last,
exactly (a log line gives the step): fine-tuning keeps its checkpoints until it has scored the
test split. Changing one
model's learning rate thus reruns that model's runs only; changing the dataset or a pre-trained
model reruns everything; a code change reruns nothing (start from a new OUT for that).
A run that fails is logged and the others go on; the error is raised at the end. report.md,
results.csv and results.json depend only on the finished runs, so for one OUT they are the same,
byte for byte, whether the experiment ran in one go or in several; clock times, which are not,
go to timings.json / timings.md (each run's own seconds, from its result.json, and this
invocation's tokenise / featurise / cache / fine-tune / total seconds and worker count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from medmm.config import did_you_mean
from medmm.data.io import sha256_dir, sha256_file
from medmm.eval import experiment_report
from medmm.eval import report as R
from medmm.eval.metrics import binary_metrics
from medmm.recipes import runner
from medmm.recipes.runner import CLOCK_KEYS, load_result, resumable_step, sha256_json, stored_result
from medmm.recipes.finetune import (FinetuneConfig, TaskData, check_finetune_config, load_records, model_lr,
                                    predict, prepare_task, resolved_train_config, run_finetune)
from medmm.tasks.featurize import Collator, NoteTokens
from medmm.tasks.registry import TASK_NAMES, task_class

DEFAULT_MODELS = ("lr", "gbert", "clinicalbert", "gbert+clinicalbert", "medm-plm-cross_modal", "medm-plm")
TABLE_III_TASKS = ("readmission", "medication", "icd_coding")  # the paper's; any registered task may be added


@dataclass
class ExperimentConfig:
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    ratio_task: str = "readmission"  # Figure 4
    ratio_models: list[str] = field(default_factory=lambda: ["lr", "medm-plm"])  # those also in `models`
    ours: str = "medm-plm"  # the model the honest-comparison sentences are about; Figure 5's model
    attention_task: str = "readmission"
    workers: int = 1  # fine-tuning processes run side by side (spawned; each uses finetune.num_threads threads)
    budget_note: str = ""  # said in report.md's header, e.g. why the epoch cap is small (the demo's budget)

    def __post_init__(self) -> None:
        check_experiment_config(self)


def check_experiment_config(cfg: ExperimentConfig) -> None:
    """Every model and task name the config holds is a registered one (`finetune`:
    `check_finetune_config`); raises ValueError naming the key and the valid names."""
    from medmm.models import downstream

    models = list(downstream.MODELS)
    for key, task in (("ratio_task", cfg.ratio_task), ("attention_task", cfg.attention_task)):
        if task not in TASK_NAMES:
            raise ValueError(f"{key}: unknown task {task!r}; valid: {', '.join(TASK_NAMES)}"
                             + did_you_mean(task, TASK_NAMES))
    for key, model in [("ours", cfg.ours)] + [(f"ratio_models[{i}]", m) for i, m in enumerate(cfg.ratio_models)]:
        if model not in models:
            raise ValueError(f"{key}: unknown model {model!r}; valid: {', '.join(models)}" + did_you_mean(model, models))
    if cfg.workers < 1:
        raise ValueError(f"workers must be >= 1, got {cfg.workers}")
    check_finetune_config(cfg.finetune)


DEMO_BUDGET_NOTE = ("Demo budget: fine-tuning is capped at 3 epochs (early-stopping patience 1) to fit the demo's "
                    "time on 2 CPU cores, so the runs flagged at their cap stopped while still improving and this "
                    "table partly measures the budget, not the models. Trained to convergence on the same data "
                    "(patience 5), MedM-PLM's and G-BERT's runs took 8 to 26 epochs, 3 to 9 times the CPU time of "
                    "these; configs/medm_plm_10k.yaml trains every run to convergence.")


def demo_experiment_config() -> ExperimentConfig:
    """The settings of the demo's experiment step (identical to configs/demo_experiment.yaml).

    Budget: 6 models x 3 tasks x 3 seeds + Figure 4 in about 12 minutes on 2 idle CPU cores (the
    README has the measured figures; `benchmarks/bench_finetune.py` measures it). Choices:
    * the text towers are FROZEN whole (eval mode) and each note's output is computed once,
      before fine-tuning (`downstream.NoteFeatures`) -- the paper froze 10 of ClinicalBERT's 12 layers; the
      code towers, the cross-modal projection and the heads are fine-tuned. `text_frozen: false`
      in `finetune.model_overrides` restores tower fine-tuning;
    * 256 word pieces per note (paper: 512): computed once, the length costs one pass only;
    * at most 3 epochs, early stopping after 1 epoch without validation AUROC gain, batch 32 --
      a BUDGET, not convergence (the library default is 50 / 5): most medication and ICD-coding
      runs peak at epoch 3, and report.md flags them and says so (`DEMO_BUDGET_NOTE`).
      Converged runs on the demo data (cap 30 / patience 5) took 8 to 26 epochs for the models
      with a code tower, 3-9x the CPU time of a 3-epoch run: too long for the demo;
      learning rates per model (only heads / code towers train, so a larger step than the
      paper's for a full BERT fine-tune; lr / rnn / cnn keep `DEFAULT_LR`'s 1e-3);
    * two worker processes of ONE thread each: for these small models one thread per process
      is several times faster than two threads fighting over two cores;
    * readmission at the NATURAL prevalence (`readmission_balance: natural`), not the paper's 1:1
      undersampling: the paper undersampled 34k admissions; on 2,000 patients 1:1 keeps about
      1,030 / 126 / 134 samples, a test set whose AUROC moves by +-0.045 with the draw of patients
      (the oracle's own test AUROC is 0.74 on it and 0.88 on validation). At the natural
      prevalence every eligible admission is kept (2,301 / 309 / 311): twice the training data and
      a test AUROC that compares models. Set it back to "undersample" for the paper's protocol.
    """
    frozen = {"text_frozen": True}
    ft = FinetuneConfig(max_text_len=256, num_threads=1, readmission_balance="natural",
                        model_overrides={m: dict(frozen) for m in ("clinicalbert", "gbert+clinicalbert",
                                                                     "medbert+clinicalbert", "medm-plm",
                                                                     "medm-plm-cross_modal")})
    ft.train.epochs = 3
    ft.train.early_stopping_patience = 1
    ft.lr = {"clinicalbert": 1e-3, "gbert+clinicalbert": 5e-4, "medbert+clinicalbert": 5e-4, "medm-plm": 5e-4,
             "medm-plm-cross_modal": 5e-4, "gbert": 5e-4, "gbert-medm-init": 5e-4, "medbert": 5e-4}
    return ExperimentConfig(finetune=ft, ratio_models=["lr", "medm-plm"], workers=2, budget_note=DEMO_BUDGET_NOTE)


DEMO_RATIOS = (0.1, 0.25, 0.5, 1.0)  # Figure 4 in the demo (lr and medm-plm only)


# ---------------------------------------------------------------------------------------------
# Ground truth (synthetic data)


def find_ground_truth(data_dir: str | Path, raw_dir: str | Path | None = None,
                      name: str = "visits.parquet") -> Path | None:
    """`ground_truth/<name>` of the synthetic raw directory this dataset was prepared from
    (`visits.parquet`: per-admission truth; `entities.parquet`: the notes' entity spans).

    With `raw_dir` given it must hold the file. Otherwise the sibling directories of `data_dir`
    are searched for one whose ADMISSIONS file has the content hash recorded in the dataset's
    manifest, so a ground truth of some other cohort is never used; None when there is none.
    """
    if raw_dir is not None:
        p = Path(raw_dir) / "ground_truth" / name
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no generator ground truth (is {raw_dir} a `medmm synth` directory?)")
        return p
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        return None
    inputs = json.loads(manifest.read_text()).get("inputs", {})
    adm = {k: v.get("sha256") for k, v in inputs.items() if k.upper().startswith("ADMISSIONS")}
    if not adm:
        return None
    for cand in sorted(data_dir.resolve().parent.iterdir()):
        gt = cand / "ground_truth" / name
        if not gt.is_file():
            continue
        if all((cand / f).is_file() and sha256_file(cand / f) == h for f, h in adm.items()):
            return gt
    return None


def oracle_metrics(td: TaskData, gt_path: Path) -> dict[str, float] | None:
    """AUROC / AUPRC of the generator's true probability (the task's `oracle_column` of the
    ground truth, by HADM_ID) on the task's test samples; None for a task without one."""
    col = td.task.oracle_column
    if col is None:
        return None
    gt = pl.read_parquet(gt_path, columns=["HADM_ID", col])
    test = td.splits["test"]
    df = test.meta.with_row_index("i").join(gt, left_on="visit_id", right_on="HADM_ID", how="left")
    missing = df.filter(pl.col(col).is_null())
    if missing.height:
        raise ValueError(f"{gt_path}: column {col} has no row for HADM_ID {missing['visit_id'][0]} "
                         f"({missing.height} test admissions missing); is it this dataset's ground truth?")
    p = df.sort("i")[col].to_numpy().astype(np.float64)
    m = binary_metrics(test.labels, p)
    # Ranking metrics only: the generator's probabilities are on the natural prevalence, not the
    # task's possibly undersampled one, so a 0.5 threshold on them says nothing about the oracle.
    return {"auroc": m["auroc"], "auprc": m["auprc"]}


# ---------------------------------------------------------------------------------------------
# Figure 5


def attention_example(model: Any, td: TaskData, assets: Any, cfg: FinetuneConfig) -> dict[str, Any] | None:
    """Words, codes and the two attention rows of one test visit (highest-scored true positive)."""
    test = td.splits["test"]
    collate = Collator(td.spec)  # every modality: the model reads notes and codes
    probs, extra = predict(model, test, collate, cfg.eval_batch_size, keys=("attn_code_to_text", "attn_text_to_code"))
    if not extra["attn_code_to_text"] or not extra["attn_text_to_code"]:
        return None
    has_note = np.array([len(test[i]["input_ids"]) > 0 for i in range(len(test))])
    y = test.labels.reshape(len(test), -1)[:, 0]
    score = np.where(has_note, probs.reshape(len(test), -1)[:, 0] + (y > 0), -np.inf)
    i = int(np.argmax(score))
    if not np.isfinite(score[i]):
        return None
    s = test[i]
    words = assets.tokenizer.convert_ids_to_tokens(s["input_ids"])
    vocab = assets.code_config.vocab()
    codes = [vocab[c] for c in s["code_ids"]]
    return {"visit_id": int(test.meta["visit_id"][i]), "label": float(y[i]), "prob": float(probs.reshape(-1)[i]),
            "words": words, "word_weights": extra["attn_code_to_text"][i][: len(words)].tolist(),
            "codes": codes, "code_weights": extra["attn_text_to_code"][i][: len(codes)].tolist()}


# ---------------------------------------------------------------------------------------------
# Resumable runs: what each run depends on, and its record in OUT

ATTENTION = "attention.json"  # Figure 5's run: `attention_example` of its model


@dataclass
class RunSpec:
    """One fine-tuning of the grid: its key, its directory in OUT and what its result depends on."""

    task: str
    model: str
    seed: int
    train_fraction: float
    dir: Path
    config: dict[str, Any]  # `run_config`, written beside the result as run_config.json
    config_hash: str
    attention: bool  # the run whose model draws Figure 5
    resume: bool = False  # continue its interrupted training (`runner.resumable_step`)

    @property
    def required(self) -> tuple[str, ...]:
        return (ATTENTION,) if self.attention else ()

    @property
    def label(self) -> str:
        r = self.train_fraction
        return f"{self.model} / {self.task} / seed {self.seed}" + (f" / {r:.0%} of train" if r < 1 else "")


def input_identity(data_dir: str | Path, assets: Any) -> dict[str, str | None]:
    """Content hashes of what every run reads: the dataset directory and the pre-trained assets
    (directory contents, not paths, so a moved directory is the same input)."""
    ids: dict[str, str | None] = {"dataset": sha256_dir(data_dir)}
    for name in ("medm_plm_path", "text_path", "gbert_path"):
        path = getattr(assets, name, None)
        ids[name] = None if path is None else sha256_dir(path)
    # The tokenizer and code vocabulary as loaded (they need not come from one of those directories).
    ids["tokenizer"] = sha256_json(sorted(assets.tokenizer.get_vocab().items()))
    ids["code_config"] = sha256_json(assets.code_config.to_dict())
    return ids


def run_config(task: str, model: str, seed: int, train_fraction: float, ft: FinetuneConfig,
               inputs: dict[str, str | None]) -> dict[str, Any]:
    """Everything one run's result depends on: its key, `ft` resolved for this model and task
    (the loop's config with this model's learning rate and this task's selection metric; this
    model's overrides; task options only for their task) and the identity of its inputs."""
    resolved = dataclasses.asdict(ft)
    resolved["train"] = dataclasses.asdict(resolved_train_config(model, task, ft, seed))
    del resolved["lr"], resolved["selection_metric"]  # resolved into train.lr / train.early_stopping_metric
    resolved["model_overrides"] = ft.model_overrides.get(model, {})
    # Task options (`Task.options`) of the other tasks: this run does not depend on them.
    for name in {o for t in TASK_NAMES for o in task_class(t).options} - set(task_class(task).options):
        del resolved[name]
    return {"task": task, "model": model, "seed": seed, "train_fraction": train_fraction, "finetune": resolved,
            "inputs": inputs}


def _log(t0: float, msg: str) -> None:
    print(f"[experiment {time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _save_state(state: dict[str, Any], directory: Path) -> None:
    """The experiment's state for worker processes: config, task data and assets in one pickle of
    plain data; each frozen tower's note features as arrays the workers memory-map (one copy in
    the page cache, whatever the number of workers)."""
    keys = list(state["note_features"])
    for i, key in enumerate(keys):
        state["note_features"][key].save(directory / f"features{i}")
    with open(directory / "state.pickle", "wb") as f:
        pickle.dump({**{k: v for k, v in state.items() if k != "note_features"}, "feature_keys": keys}, f,
                    pickle.HIGHEST_PROTOCOL)


def _load_state(directory: str) -> dict[str, Any]:
    from medmm.models.downstream import NoteFeatures

    with open(Path(directory) / "state.pickle", "rb") as f:
        state = pickle.load(f)
    state["note_features"] = {key: NoteFeatures.load(Path(directory) / f"features{i}")
                              for i, key in enumerate(state.pop("feature_keys"))}
    if state["cfg"].finetune.num_threads:
        torch.set_num_threads(state["cfg"].finetune.num_threads)
    return state


def _finetune_job(run: RunSpec, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One fine-tuning of the grid (the runner records it); Figure 5's run also draws attention."""
    cfg, td, assets = state["cfg"], state["task_data"][run.task], state["assets"]
    res, model, _ = run_finetune(run.model, td, None, assets, cfg.finetune, run.dir, seed=run.seed,
                                 train_fraction=run.train_fraction, keep_model=run.attention, resume=run.resume,
                                 note_features=state["note_features"])
    files = {}
    if run.attention:
        files[ATTENTION] = None if model is None else attention_example(model, td, assets, cfg.finetune)
    return res, files


def _describe(run: RunSpec, res: dict[str, Any], secs: float) -> str:
    sel = res["selection_metric"]
    cap = " -- AT CAP, may be under-trained" if res.get("peaked_at_cap") else ""
    return (f"{run.label}: test {sel} {_fmt(res['metrics'].get(sel))}, val {_fmt(res['best_val'].get(sel))}, "
            f"best epoch {res.get('best_epoch')} of {res.get('epochs_run')} run (cap {res.get('epoch_cap')}){cap}, "
            f"{res['steps']} steps, {secs:.1f}s ({res.get('cpu_time_s', 0):.1f} CPU s)")


def frozen_note_features(models: Sequence[str], task_data: dict[str, TaskData], assets: Any,
                         ft: FinetuneConfig) -> tuple[dict[tuple, Any], dict[str, int]]:
    """The outputs of every frozen text tower the models read, over every note of every task,
    each tower once (models with the same tower share them), before any fine-tuning: the runs
    receive them as data. Returns (features by tower key, notes computed per model)."""
    from medmm.models import downstream

    notes = [n for td in task_data.values() for n in td.notes()]
    spec = next(iter(task_data.values())).spec
    features: dict[tuple, Any] = {}
    done: dict[str, int] = {}
    for m in models:
        if "note" not in downstream.model_inputs(m) or not ft.model_overrides.get(m, {}).get("text_frozen"):
            continue
        model = downstream.build_model(m, spec, assets, **ft.model_overrides[m])
        before = set(features)
        features = downstream.compute_note_features([model], notes, features)
        if set(features) - before:
            done[m] = sum(len(features[k]) for k in set(features) - before)
    return features, done


def run_medm_plm_experiment(data_dir: str | Path, out_dir: str | Path, assets: Any,
                            models: Sequence[str] = DEFAULT_MODELS, tasks: Sequence[str] = TABLE_III_TASKS,
                            seeds: int | Sequence[int] = 3, train_ratios: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
                            cfg: ExperimentConfig | None = None, raw_dir: str | Path | None = None) -> Path:
    """Run models x tasks x seeds (+ Figure 4 ratios) and write the report; return report.md's path."""
    cfg = cfg or ExperimentConfig()
    ft = cfg.finetune
    models, tasks = list(dict.fromkeys(models)), list(dict.fromkeys(tasks))
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    for t in tasks:
        if t not in TASK_NAMES:
            raise KeyError(f"unknown task {t!r}; choose from {', '.join(TASK_NAMES)}")
    if not models or not tasks or not seeds:
        raise ValueError("run_medm_plm_experiment: models, tasks and seeds must be non-empty")
    from medmm.models import downstream

    for m in models:
        downstream.model_inputs(m)  # unknown names fail here, before any training
    check_experiment_config(cfg)  # again: its fields may have been changed since it was built
    for m in models:
        for t in tasks:
            model_lr(ft, m, t)  # every run has a learning rate
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    kinds = list(dict.fromkeys(task_class(t).records for t in tasks))
    records = {k: load_records(data_dir, k) for k in kinds}
    # The notes of every visit: from the visit records when a task reads them (ICU stay records
    # hold a subset of the same visits).
    notes = NoteTokens.build(records.get("visits", records[kinds[0]]), assets.tokenizer, ft.max_text_len)
    timings["tokenise_s"] = round(time.perf_counter() - t0, 2)
    _log(t0, ", ".join(f"{r.height} {k.replace('_', ' ')}" for k, r in records.items())
             + f"; {sum(1 for v in notes.ids.values() if v)} notes tokenised (max {ft.max_text_len} word pieces)")
    task_data: dict[str, TaskData] = {}
    for t in tasks:
        task_data[t] = prepare_task(t, records[task_class(t).records], assets, ft, notes)
        n = {s: len(d) for s, d in task_data[t].splits.items()}
        _log(t0, f"task {t}: {n['train']}/{n['val']}/{n['test']} train/val/test samples, "
                 f"{task_data[t].spec.num_labels} label(s)")
    timings["featurise_s"] = round(time.perf_counter() - t0 - timings["tokenise_s"], 2)

    ratios = sorted({float(r) for r in train_ratios} | {1.0})
    ratio_models = [m for m in cfg.ratio_models if m in models] if cfg.ratio_task in tasks else []
    jobs = [(t, m, s, 1.0) for t in tasks for m in models for s in seeds]
    jobs += [(cfg.ratio_task, m, s, r) for m in ratio_models for r in ratios if r < 1.0 for s in seeds]
    t_h = time.perf_counter()
    inputs = input_identity(data_dir, assets)
    runs = [_run_spec(out, t, m, s, r, cfg, inputs, seeds[0]) for t, m, s, r in jobs]
    todo = runner.pending(runs, lambda msg: _log(t0, msg))
    timings["hash_inputs_s"] = round(time.perf_counter() - t_h, 2)
    _log(t0, f"{len(runs)} runs: {len(runs) - len(todo)} finished by an earlier invocation in {out} (skipped), "
             f"{len(todo)} to run")
    prev_threads = torch.get_num_threads()
    try:
        # The frozen towers' one batched pass has nothing beside it: all of torch's threads.
        t_w = time.perf_counter()
        note_features, warmed = frozen_note_features([m for m in models if any(r.model == m for r in todo)],
                                                     task_data, assets, ft)
        timings["text_cache_s"] = round(time.perf_counter() - t_w, 2)
        if warmed:
            _log(t0, "frozen text towers run once over the notes: "
                     + ", ".join(f"{m} {n} notes" for m, n in warmed.items()) + f" ({timings['text_cache_s']:.1f}s)")
        if ft.num_threads:
            torch.set_num_threads(ft.num_threads)  # the sequential runs (workers set their own)
        t_ft = time.perf_counter()
        if todo:
            state = dict(cfg=cfg, task_data=task_data, assets=assets, note_features=note_features)
            order = sorted(todo, key=lambda r: -_job_cost(r, task_data))  # longest first: even load
            runner.run_jobs(order, _finetune_job, state, cfg.workers, lambda msg: _log(t0, msg), _describe,
                            _save_state, _load_state)
    finally:
        torch.set_num_threads(prev_threads)
    timings["finetune_s"] = round(time.perf_counter() - t_ft, 2)
    # Every result from its record in OUT, whether run now or earlier: one path to the report.
    results = [load_result(run) for run in runs]
    attention = next((json.loads((run.dir / ATTENTION).read_text(encoding="utf-8")) for run in runs
                      if run.attention), None)

    # Oracles on the test samples of the tasks whose truth the generator records (synthetic data only).
    oracle: dict[str, dict[str, float]] = {}
    with_truth = [t for t in tasks if task_data[t].task.oracle_column is not None]
    gt = find_ground_truth(data_dir, raw_dir) if with_truth else None
    for t in with_truth if gt is not None else ():
        oracle[t] = oracle_metrics(task_data[t], gt)
        _log(t0, f"oracle of {t} (generator truth, {gt}): test AUROC {_fmt(oracle[t]['auroc'])}")

    table_runs = [{k: v for k, v in res.items() if k not in CLOCK_KEYS} for res in results]
    from medmm.recipes.pretrain import pretraining_note

    experiment_report.write_outputs(out, table_runs, models, tasks, seeds, ratios, ratio_models, cfg, oracle, attention,
                   task_data, data_dir, gt, pretraining=pretraining_note(assets))
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    _write_timings(out, runs, results, {r.dir for r in todo}, timings, cfg)
    _log(t0, f"report: {out / 'report.md'}")
    return out / "report.md"


def _run_spec(out: Path, t: str, m: str, s: int, r: float, cfg: ExperimentConfig, inputs: dict[str, str | None],
              first_seed: int) -> RunSpec:
    rc = run_config(t, m, s, r, cfg.finetune, inputs)
    run_dir = out / "runs" / t / m.replace("+", "_plus_") / (f"seed{s}" + (f"-f{r:g}" if r < 1 else ""))
    return RunSpec(t, m, s, r, run_dir, rc, sha256_json(rc),
                   attention=m == cfg.ours and t == cfg.attention_task and r == 1.0 and s == first_seed)


def _job_cost(run: RunSpec, task_data: dict[str, TaskData]) -> float:
    """A rough relative cost for scheduling: training samples x fraction x model weight."""
    from medmm.models import downstream

    td = task_data[run.task]
    weight = downstream.model_cost(run.model) * (3.0 if td.spec.history else 1.0)
    return len(td.splits["train"]) * run.train_fraction * weight


def _write_timings(out: Path, runs: list[RunSpec], results: list[dict[str, Any]], ran_now: set[Path],
                   timings: dict[str, float], cfg: ExperimentConfig) -> None:
    """timings.json / timings.md: each run's own seconds (from its result.json, so a run finished
    by an earlier invocation keeps the seconds it took then) and this invocation's seconds."""
    per_run = [{"task": run.task, "model": run.model, "seed": run.seed, "train_fraction": run.train_fraction,
                "ran_now": run.dir in ran_now, **{k: res.get(k) for k in CLOCK_KEYS}}
               for run, res in zip(runs, results)]
    invocation = {**timings, "workers": cfg.workers, "runs_run": len(ran_now),
                  "runs_skipped": len(runs) - len(ran_now)}
    R.write_json(out / "timings.json", {**invocation, "runs": per_run})
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in per_run:
        rows.setdefault((r["model"], r["task"]), []).append((r["wall_time_s"] or 0.0, r["cpu_time_s"] or 0.0))
    md = ["# MedM-PLM experiment: timings", "",
          "Wall seconds depend on what else the machine runs; CPU seconds are a run's own cost (summed over "
          "its threads). Runs finished by an earlier invocation keep the seconds they took then.", "",
          "| model | task | runs (incl. Figure 4) | wall seconds (total) | CPU seconds (total) |",
          "|---|---|---:|---:|---:|"]
    for (m, t), secs in rows.items():
        md.append(f"| {m} | {t} | {len(secs)} | {sum(w for w, _ in secs):.1f} | {sum(c for _, c in secs):.1f} |")
    md += ["", f"This invocation: {invocation['runs_run']} runs run, {invocation['runs_skipped']} skipped (finished "
               f"earlier); tokenise {timings['tokenise_s']:.1f}s, featurise {timings['featurise_s']:.1f}s, "
               f"input hashes {timings['hash_inputs_s']:.1f}s, frozen text towers over the notes "
               f"{timings.get('text_cache_s', 0.0):.1f}s, fine-tune {timings['finetune_s']:.1f}s ({cfg.workers} "
               f"worker process(es)), total {timings['total_s']:.1f}s.", ""]
    R.write_text(out / "timings.md", "\n".join(md))


# ---------------------------------------------------------------------------------------------
# CLI glue


def resolve_assets(pretrained: str | Path, text_path: str | Path | None = None,
                   gbert_path: str | Path | None = None) -> Any:
    """Assets from a directory holding the pre-trained models, found by their config.json.

    `pretrained` may itself be a MedM-PLM directory, or hold one anywhere up to three levels down
    (e.g. the `medmm pretrain medm-plm` run dir with model/). Likewise the text-MLM BERT (the
    ClinicalBERT stand-in, model_type "bert", outside the MedM-PLM directory) and a code-only
    G-BERT (model_type "medmm-code-encoder"), unless given explicitly. Exactly one MedM-PLM must
    be found; more than one of a kind is an error listing them.
    """
    from medmm.models.assets import Assets
    from medmm.models.pretrained import CODE_ENCODER, MEDM_PLM, MEDM_PLM_PRETRAINING, find_model_dirs

    root = Path(pretrained)
    if not root.is_dir():
        raise FileNotFoundError(f"--pretrained {root}: not a directory")
    dirs = find_model_dirs(root)
    found = {"plm": sorted(dirs.get(MEDM_PLM, []) + dirs.get(MEDM_PLM_PRETRAINING, [])),
             "bert": dirs.get("bert", []), "code": dirs.get(CODE_ENCODER, [])}
    plms = found["plm"]
    if len(plms) != 1:
        raise FileNotFoundError(f"--pretrained {root}: expected one MedM-PLM directory (config.json model_type "
                                f"'medm-plm'), found {len(plms)}: {[str(p) for p in plms]}")
    plm = plms[0]
    berts = [b for b in found["bert"] if plm not in b.parents]  # not the MedM-PLM's own text/ tower
    if text_path is None and len(berts) > 1:
        raise ValueError(f"--pretrained {root}: several text BERT directories {[str(b) for b in berts]}; "
                         "name one with --text")
    if gbert_path is None and len(found["code"]) > 1:
        raise ValueError(f"--pretrained {root}: several G-BERT directories {[str(c) for c in found['code']]}; "
                         "name one with --gbert")
    text = text_path if text_path is not None else (berts[0] if berts else None)
    gbert = gbert_path if gbert_path is not None else (found["code"][0] if found["code"] else None)
    return Assets.from_medm_plm(plm, text_path=text, gbert_path=gbert)


def main_experiment(args: dict[str, Any]) -> Path:
    """`medmm experiment medm-plm`: args = {"data", "pretrained", "out", "seeds" (int), optional
    "models" (list), "tasks" (list), "config" (YAML of ExperimentConfig), "overrides" (list of
    dotted key=value), "raw" (synthetic raw dir for the oracle), "text", "gbert", "ratios" (list)}."""
    from medmm.config import load_config, save_config

    unknown = set(args) - {"data", "pretrained", "out", "seeds", "models", "tasks", "config", "overrides", "raw",
                           "text", "gbert", "ratios"}
    if unknown:
        raise KeyError(f"main_experiment: unknown argument(s) {sorted(unknown)}")
    cfg = load_config(args.get("config"), args.get("overrides") or [], ExperimentConfig)
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "experiment.yaml")
    assets = resolve_assets(args["pretrained"], args.get("text"), args.get("gbert"))
    seeds = args.get("seeds", 3)
    return run_medm_plm_experiment(args["data"], out, assets, models=args.get("models") or DEFAULT_MODELS,
                                   tasks=args.get("tasks") or TABLE_III_TASKS, seeds=seeds,
                                   train_ratios=args.get("ratios") or (0.1, 0.25, 0.5, 1.0), cfg=cfg,
                                   raw_dir=args.get("raw"))


def run_demo_experiment(data_dir: str | Path, raw_dir: str | Path | None, pretrain_dir: str | Path,
                        text_dir: str | Path | None, out_dir: str | Path, seeds: int = 3,
                        gbert_dir: str | Path | None = None) -> Path:
    """The demo's experiment step: every model of `DEFAULT_MODELS` on all three tasks over `seeds`
    seeds with `demo_experiment_config()` and Figure 4 at `DEMO_RATIOS`; returns report.md's path.

    data_dir: the prepared dataset; raw_dir: the `medmm synth` directory (ground truth for the
    oracle row; None to look beside the dataset); pretrain_dir: the MedM-PLM run (or its model/);
    text_dir: the text-MLM BERT directory (ClinicalBERT stand-in; None to search pretrain_dir);
    gbert_dir: the `medmm pretrain gbert` model directory (None: search pretrain_dir, else G-BERT
    starts un-pre-trained).
    """
    from medmm.config import save_config

    cfg = demo_experiment_config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "experiment.yaml")
    assets = resolve_assets(pretrain_dir, text_dir, gbert_dir)
    return run_medm_plm_experiment(data_dir, out, assets, models=DEFAULT_MODELS, tasks=TABLE_III_TASKS, seeds=seeds,
                                   train_ratios=DEMO_RATIOS, cfg=cfg, raw_dir=raw_dir)


__all__ = ["ExperimentConfig", "demo_experiment_config", "run_demo_experiment", "frozen_note_features", "run_medm_plm_experiment", "main_experiment", "resolve_assets",
           "find_ground_truth", "oracle_metrics", "attention_example", "DEFAULT_MODELS", "RunSpec",
           "run_config", "input_identity", "stored_result", "load_result", "resumable_step"]
