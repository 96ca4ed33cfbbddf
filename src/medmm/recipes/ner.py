"""The MedM-PLM NER probe (paper Table V): does multimodal pre-training hurt the text tower?

    medmm experiment ner --data DATASET [--raw RAW] --text TEXT_MLM_DIR --pretrained MEDM_PLM --seeds 3 --out OUT

    run_ner_experiment(data_dir, raw_dir, out_dir, text_path, medm_plm_path, seeds, cfg) -> OUT/report.md

Clinical concept extraction (i2b2/VA 2010 style: problem / treatment / test mentions) is a
text-only task, so it probes what MedM-PLM's joint pre-training did to its text tower. Three
BiLSTM-CRF taggers (`medmm.models.bilstm_crf`), Table V's rows:

1. ``BiLSTM-CRF``: a trainable embedding layer learnt from scratch;
2. ``text-MLM``: the embedding layer replaced by the text tower pre-trained with masked language
   modelling on the notes alone (the ClinicalBERT stand-in, `text_path`);
3. ``MedM-PLM``: replaced by MedM-PLM's text tower (`medm_plm_path`, its ``text/``).

All three read the SAME word pieces (the text-MLM tower's tokenizer; MedM-PLM's tower must have
the same vocabulary, which it has when it was initialised from that tower), so only the vectors
differ. The towers are frozen (default: a probe, and fast on CPU) or fine-tuned with the tagger
(``tower: finetune``; paper lr 3e-5), set by the config.

Data. The prepared dataset's ``notes`` table (cleaned, length-preserving text) joined with the
synthetic generator's ground truth ``ground_truth/entities.parquet`` (ROW_ID = note_id), split
8:1:1 by patient (`medmm.tasks.splits.assign_splits`, ``split_seed``), so no patient's notes are
both trained on and tested on. ``max_train_notes`` keeps a random (``split_seed``) subset of the
training notes, the same for every row and seed, for speed on CPU; the report states it. With
``i2b2_dir`` set the notes are an i2b2 2010 folder pair instead (``txt/`` + ``concept/``,
`medmm.tasks.ner.read_i2b2_dir`), split 8:1:1 by document.

Protocol. Each (row, seed) is trained with the one training loop (`medmm.train.loop.Trainer`);
after every epoch the validation notes are decoded and scored with the strict entity F1, which
drives early stopping and picks the checkpoint; the test notes are scored once with that
checkpoint: strict (exact span and type) precision / recall / F1 over all entities and per type.
The seed varies initialisation, dropout and data order; the split and the training subset are
fixed. A frozen tower's hidden states are computed once per note window and reused by every
epoch and seed (`medmm.models.bilstm_crf.tower_hidden_states`); one tower's states are held in
memory at a time.

Outputs in OUT: report.md (rows = the three embeddings; strict P / R / F1 and F1 per type, mean
(std) over seeds, in %), results.csv, results.json (the table, every run's test and best
validation scores, data counts, the config), timings.json / timings.md (wall and CPU seconds),
runs/<row>/seed<k>/ (one directory per run, below).

Resuming (the grid runner, `medmm.recipes.runner`, as in `medmm.recipes.experiment`). Invoked
again with the same OUT, the experiment runs only what is not finished:
    runs/<row>/seed<k>/
        result.json       the run's result (`run_one`) plus `config_hash`; written last, atomically
        run_config.json   what `config_hash` is the sha256 of (`run_config`): row, embedding kind,
                          seed, the NER config resolved for this row (the loop's config with this
                          embedding's learning rate; only the options this embedding reads) and the
                          content hashes of its inputs (the dataset and entities file, or the i2b2
                          folder; the word-piece vocabulary; the row's tower directory)
        train/            the loop's config.yaml, metrics.jsonl, summary.json; checkpoints/ until
                          the run is recorded (kept with `keep_checkpoints`)
        test_predictions.parquet
A run whose result.json holds the current config's hash is skipped (a log line counts them);
any other is run again, with the reason logged; one interrupted in training whose
run_config.json is the current one continues exactly from train/checkpoints/last. Changing
`lr.scratch` or `embed_dim` thus reruns the BiLSTM-CRF row only, `lr.tower_frozen` or `tower`
the two tower rows, the MedM-PLM directory the MedM-PLM row; the data, caps, split or the
shared training options rerun everything. A row's frozen tower states are computed only when
one of its runs is to run. report.md, results.csv and results.json depend only on the finished
runs, so they are the same bytes whether the experiment ran in one go or in several; clock
times go to timings.json / timings.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from torch import nn

from medmm.data.io import sha256_dir, sha256_file
from medmm.eval import report as R
from medmm.eval.aggregate import format_mean_std, mean_std, results_table
from medmm.eval.ner_metrics import strict_entity_scores
from medmm.recipes import runner
from medmm.recipes.runner import CLOCK_KEYS, load_result, sha256_json
from medmm.tasks.ner import ENTITY_TYPES, NERDataset, NERDocument, count_orphan_entities, documents_from_frames
from medmm.tasks.splits import SPLITS, assign_splits
from medmm.train.device import model_device, to_device
from medmm.train.loop import TrainConfig, Trainer

ROWS = ("BiLSTM-CRF", "text-MLM", "MedM-PLM")   # Table V: scratch, ClinicalBERT stand-in, ours
COLUMNS = ("precision", "recall", "f1") + tuple(f"f1_{t}" for t in ENTITY_TYPES)
HEADERS = {"precision": "P", "recall": "R", "f1": "F1", **{f"f1_{t}": f"F1 {t}" for t in ENTITY_TYPES}}


def _default_train() -> TrainConfig:
    # CPU-sized: at lr 1e-2 the synthetic notes are learnt within 3 epochs (measured: scratch test
    # F1 0.986 at 5e-3 vs 0.998 at 1e-2; frozen text-MLM tower 0.89 vs 0.94).
    return TrainConfig(epochs=3, batch_size=16, lr=1e-2, optimizer="adamw", weight_decay=0.0, grad_clip=5.0,
                       eval_every="epoch", early_stopping_patience=1, early_stopping_metric="f1",
                       early_stopping_mode="max", log_every=50, progress=False, deterministic="strict")


def _default_lr() -> dict[str, float]:
    # The LSTM-CRF on a scratch or frozen embedding learns from zero; a fine-tuned tower takes
    # the paper's 3e-5 for the whole tagger (the loop has one learning rate).
    return {"scratch": 1e-2, "tower_frozen": 1e-2, "tower_finetune": 3e-5}


@dataclass
class NERExperimentConfig:
    tower: Literal["frozen", "finetune"] = "frozen"   # how rows 2 and 3 use their text tower
    max_length: int = 256            # word pieces per window incl. [CLS]/[SEP]; the demo towers saw 256
    split_seed: int = 0
    # CPU-sized caps (the demo's 2,000 patients have ~2,500 training notes); null = all notes.
    max_train_notes: int | None = 200   # random training subset (split_seed), the same for every row and seed
    max_eval_notes: int | None = 100    # random subset of the validation notes, and of the test notes
    i2b2_dir: str | None = None      # i2b2 2010 folder with txt/ and concept/ instead of the synthetic notes
    embed_dim: int = 100             # scratch embedding size
    lstm_hidden: int = 64            # per direction; 128 costs ~2.4x the time per step on CPU
    dropout: float = 0.5
    train: TrainConfig = field(default_factory=_default_train)
    lr: dict[str, float] = field(default_factory=_default_lr)   # per embedding kind; else train.lr
    eval_batch_size: int = 32
    precompute: bool = True          # frozen towers: compute hidden states once (same result, faster)
    num_threads: int | None = 1      # torch intra-op threads; 1 was fastest on the shared 2-core machine
    keep_checkpoints: bool = False   # else train/checkpoints/ is removed once the run is recorded

    def __post_init__(self) -> None:
        if self.tower not in ("frozen", "finetune"):
            raise ValueError(f"tower must be 'frozen' or 'finetune', got {self.tower!r}")
        for name in ("max_train_notes", "max_eval_notes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be a positive integer or null, got {v!r}")
        if self.max_length < 3:
            raise ValueError(f"max_length must be >= 3, got {self.max_length}")


# ---------------------------------------------------------------------------------------------
# Data


def find_entities(data_dir: str | Path, raw_dir: str | Path | None = None) -> Path:
    """`ground_truth/entities.parquet` of the synthetic raw directory `data_dir` was prepared from
    (`raw_dir`, else found beside the dataset by its manifest's input hashes)."""
    from medmm.recipes.experiment import find_ground_truth

    p = find_ground_truth(data_dir, raw_dir, name="entities.parquet")
    if p is None:
        raise FileNotFoundError(f"{data_dir}: no generator ground truth (ground_truth/entities.parquet) found in a "
                                "sibling raw directory with this dataset's input hashes; pass raw_dir (--raw)")
    return p


@dataclass
class NERData:
    splits: dict[str, NERDataset]
    source: str
    counts: dict[str, Any]           # notes / entities / windows per split, caps, orphan entities


def _subset(docs: list[NERDocument], cap: int | None, seed: int) -> list[NERDocument]:
    if cap is None or len(docs) <= cap:
        return docs
    keep = np.sort(np.random.default_rng(seed).choice(len(docs), size=cap, replace=False))
    return [docs[i] for i in keep]


def load_documents(data_dir: str | Path | None, raw_dir: str | Path | None,
                   cfg: NERExperimentConfig) -> tuple[dict[str, list[NERDocument]], str, dict[str, Any]]:
    """Documents per split (train / val / test) before any cap, their source and counts."""
    counts: dict[str, Any] = {}
    if cfg.i2b2_dir is not None:
        from medmm.tasks.ner import read_i2b2_dir

        root = Path(cfg.i2b2_dir)
        docs = read_i2b2_dir(root / "txt", root / "concept")
        # One i2b2 note is one patient's discharge summary: a split by document is by patient.
        split = assign_splits(np.arange(len(docs)), seed=cfg.split_seed)["split"].to_list()
        source = f"i2b2 2010 concepts: {root}"
    else:
        if data_dir is None:
            raise ValueError("run_ner_experiment: give a prepared dataset (data_dir) or cfg.i2b2_dir")
        from medmm.data.schema import load_dataset

        ent_path = find_entities(data_dir, raw_dir)
        notes = load_dataset(data_dir).table("notes").select("note_id", "patient_id", "text").sort("note_id")
        entities = pl.read_parquet(ent_path)
        docs = documents_from_frames(notes, entities, keep_empty=True, source=str(ent_path))
        counts["orphan_entities"] = count_orphan_entities(notes, entities)
        pid = np.array([d.patient_id for d in docs], dtype=np.int64)
        sp = assign_splits(pid, seed=cfg.split_seed)
        of = dict(zip(sp["patient_id"].to_list(), sp["split"].to_list()))
        split = [of[int(p)] for p in pid]
        source = f"synthetic notes `{data_dir}` with generator spans `{ent_path}`"
    by = {s: [d for d, x in zip(docs, split) if x == s] for s in SPLITS}
    return by, source, counts


def build_ner_data(data_dir: str | Path | None, raw_dir: str | Path | None, tokenizer,
                   cfg: NERExperimentConfig) -> NERData:
    """Split, cap and window the notes into one `NERDataset` per split."""
    by, source, counts = load_documents(data_dir, raw_dir, cfg)
    counts["notes_before_cap"] = {s: len(v) for s, v in by.items()}
    by["train"] = _subset(by["train"], cfg.max_train_notes, cfg.split_seed)
    for s in ("val", "test"):
        by[s] = _subset(by[s], cfg.max_eval_notes, cfg.split_seed + 1)
    empty = [s for s, v in by.items() if not v]
    if empty:
        raise ValueError(f"{source}: the {'/'.join(empty)} split has no notes "
                         f"({ {s: len(v) for s, v in by.items()} }); use more patients")
    splits = {s: NERDataset(v, tokenizer, max_length=cfg.max_length) for s, v in by.items()}
    counts["notes"] = {s: len(v) for s, v in by.items()}
    counts["entities"] = {s: sum(len(d.spans) for d in v) for s, v in by.items()}
    counts["entities_by_type"] = {s: {t: sum(sp.label == t for d in v for sp in d.spans) for t in ENTITY_TYPES}
                                  for s, v in by.items()}
    counts["windows"] = {s: len(ds) for s, ds in splits.items()}
    return NERData(splits, source, counts)


class _WithStates(torch.utils.data.Dataset):
    """An `NERDataset` whose items also carry the frozen tower's hidden states (T, E)."""

    def __init__(self, ds: NERDataset, states: list[torch.Tensor]):
        if len(states) != len(ds):
            raise ValueError(f"{len(states)} hidden-state tensors for {len(ds)} windows")
        self.ds, self.states = ds, states

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.ds[i], "hidden_states": self.states[i]}

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = self.ds.collate(batch)
        B, T = out["input_ids"].shape
        h = torch.zeros(B, T, batch[0]["hidden_states"].shape[-1])                     # (B, T, E)
        for i, b in enumerate(batch):
            h[i, :len(b["hidden_states"])] = b["hidden_states"]
        out["hidden_states"] = h
        return out


# ---------------------------------------------------------------------------------------------
# Scoring


@torch.no_grad()
def predict_tags(model: nn.Module, ds: NERDataset | _WithStates, batch_size: int = 32) -> list[list[str]]:
    """Word-level tags per document: Viterbi per window, stitched back into notes."""
    was_training = model.training
    model.eval()
    base = ds.ds if isinstance(ds, _WithStates) else ds
    device = model_device(model)
    preds: list[list[int]] = []
    for k in range(0, len(ds), batch_size):
        batch = ds.collate([ds[i] for i in range(k, min(k + batch_size, len(ds)))])
        preds += model.decode(to_device(batch, device))
    model.train(was_training)
    return base.document_tags(preds)


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Strict entity P / R / F1 (micro over all entities), macro F1, P / R / F1 per type and the
    entity counts (gold, predicted, correct).

    A type with no gold and no predicted entity has an undefined F1 (NaN), not 0.
    """
    s = strict_entity_scores(gold, pred)
    out = {k: float(s[k]) for k in ("precision", "recall", "f1", "macro_f1")}
    out.update(n_gold=s["support"], n_predicted=s["predicted"], n_correct=s["tp"])
    for t in ENTITY_TYPES:
        pt = s["per_type"].get(t)
        out[f"f1_{t}"] = float(pt["f1"]) if pt else math.nan
        out[f"precision_{t}"] = float(pt["precision"]) if pt else math.nan
        out[f"recall_{t}"] = float(pt["recall"]) if pt else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# One run


def _load_tower(directory: Path) -> nn.Module:
    """The BertModel of a BERT or MedM-PLM directory, without transformers' load report (the MLM
    head it drops is expected: the tagger uses the last hidden states)."""
    from transformers.utils import logging as hf_logging

    from medmm.models.pretrained import load_text_encoder

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load_text_encoder(directory)
    finally:
        hf_logging.set_verbosity(level)


def _embedding_kind(row: str, cfg: NERExperimentConfig) -> str:
    return "scratch" if row == ROWS[0] else f"tower_{cfg.tower}"


def train_config(kind: str, cfg: NERExperimentConfig, seed: int) -> TrainConfig:
    """The loop's config of one run: `cfg.train` with the seed and the embedding's learning rate,
    early stopping on validation strict F1."""
    return dataclasses.replace(cfg.train, seed=seed, lr=cfg.lr.get(kind, cfg.train.lr),
                               early_stopping_metric="f1", early_stopping_mode="max")


def run_one(row: str, kind: str, data: NERData, tokenizer, tower_dir: Path | None, cfg: NERExperimentConfig,
            out: Path, seed: int, states: dict[str, list[torch.Tensor]] | None = None,
            tower: nn.Module | None = None, resume: bool = False) -> dict[str, Any]:
    """Train one tagger in out/train with early stopping on validation strict F1; score the test
    split once; return the result (the caller records it: `run_ner_experiment` through the grid
    runner, which then removes out/train/checkpoints unless `keep_checkpoints`).

    resume: continue the interrupted training in out/train from checkpoints/last exactly (a fresh
    start when there is none); the caller vouches that it was written with this run's config."""
    from medmm.models.bilstm_crf import BiLSTMCRF, BiLSTMCRFConfig
    from medmm.train.checkpoint import seed_everything

    t0, c0 = time.perf_counter(), time.process_time()
    seed_everything(seed)  # the new layers' initialisation depends on the seed
    if kind == "tower_finetune" or (kind == "tower_frozen" and tower is None):
        tower = _load_tower(tower_dir)  # a fresh copy: fine-tuning changes it
    mcfg = BiLSTMCRFConfig(tags=list(data.splits["train"].tags), embedding=kind, vocab_size=len(tokenizer),
                           embed_dim=cfg.embed_dim, pad_token_id=data.splits["train"].pad_token_id,
                           lstm_hidden=cfg.lstm_hidden, dropout=cfg.dropout)
    model = BiLSTMCRF(mcfg, tower=None if kind == "scratch" else tower)
    ds = {s: (_WithStates(d, states[s]) if states is not None else d) for s, d in data.splits.items()}
    tcfg = train_config(kind, cfg, seed)
    val_gold = data.splits["val"].gold

    def evaluate(m: nn.Module) -> dict[str, float]:
        return ner_scores(val_gold, predict_tags(m, ds["val"], cfg.eval_batch_size))

    loop_config = {"row": row, "embedding": kind, "tower": None if tower_dir is None else str(tower_dir),
                   "seed": seed, "ner": dataclasses.asdict(dataclasses.replace(cfg, train=tcfg))}  # train/config.yaml
    fit = Trainer(model, ds["train"], tcfg, out / "train", collate_fn=ds["train"].collate, evaluate=evaluate,
                  run_config=loop_config).fit(resume=resume, overwrite=not resume)
    # The loop restored the best validation checkpoint; the test split is scored once.
    test = data.splits["test"]
    pred = predict_tags(model, ds["test"], cfg.eval_batch_size)
    metrics = ner_scores(test.gold, pred)
    _save_predictions(out / "test_predictions.parquet", test, pred)
    return {"row": row, "embedding": kind, "seed": seed, "metrics": metrics, "best_val": fit.best_metrics,
            "best_step": fit.best_step, "steps": fit.global_step, "epochs": fit.epoch,
            "stopped_early": fit.stopped_early, "train_loss": fit.train_loss, "lr": tcfg.lr,
            "train_time_s": fit.wall_time_s, "wall_time_s": round(time.perf_counter() - t0, 3),
            # CPU seconds of this process (all its threads): the cost on a machine shared with other jobs
            "cpu_time_s": round(time.process_time() - c0, 3), "out_dir": str(out)}


def _save_predictions(path: Path, ds: NERDataset, doc_tags: list[list[str]]) -> None:
    rows = [(str(d.doc_id), sp.start, sp.end, sp.label, d.text[sp.start:sp.end])
            for d, spans in zip(ds.documents, ds.predicted_spans(doc_tags)) for sp in spans]
    df = pl.DataFrame(rows, schema={"doc_id": pl.String, "start": pl.Int64, "end": pl.Int64, "label": pl.String,
                                    "text": pl.String}, orient="row")
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Resumable runs: what each run depends on, and its record in OUT


@dataclass
class NERRun:
    """One tagger of the grid (`runner.Run`): its key, its directory in OUT and what its result
    depends on."""

    row: str
    embedding: str
    seed: int
    tower_dir: Path | None  # the row's text tower; None: the embedding is learnt from scratch
    dir: Path
    config: dict[str, Any]  # `run_config`, written beside the result as run_config.json
    config_hash: str
    required: tuple[str, ...] = ()
    resume: bool = False  # continue its interrupted training (`runner.resumable_step`)

    @property
    def label(self) -> str:
        return f"{self.row} / seed {self.seed}"


def input_identity(data_dir: str | Path | None, raw_dir: str | Path | None, cfg: NERExperimentConfig, tokenizer,
                   towers: dict[str, Path | None]) -> dict[str, Any]:
    """Content hashes of what the runs read (contents, not paths, so a moved directory is the same
    input): the notes (the prepared dataset and the generator's entities file, or the i2b2
    folder), the word-piece vocabulary every row reads, and each row's tower directory."""
    if cfg.i2b2_dir is not None:
        notes = {"i2b2": sha256_dir(cfg.i2b2_dir)}
    else:
        notes = {"dataset": sha256_dir(data_dir), "entities": sha256_file(find_entities(data_dir, raw_dir))}
    return {"notes": notes, "vocabulary": sha256_json(sorted(tokenizer.get_vocab().items())),
            "towers": {row: None if d is None else sha256_dir(d) for row, d in towers.items()}}


# The options an embedding kind does not read: a run does not depend on them.
_UNREAD = {"scratch": ("tower", "precompute"), "tower_frozen": ("embed_dim",),
           "tower_finetune": ("embed_dim", "precompute")}


def run_config(row: str, seed: int, cfg: NERExperimentConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """Everything one run's result depends on: its row, embedding kind and seed, `cfg` resolved
    for it (the loop's config with this embedding's learning rate; less the options this
    embedding does not read, and `keep_checkpoints`) and the identity of its inputs (`input_identity`)."""
    kind = _embedding_kind(row, cfg)
    ner = dataclasses.asdict(cfg)
    ner["train"] = dataclasses.asdict(train_config(kind, cfg, seed))
    del ner["lr"], ner["keep_checkpoints"]  # resolved into train.lr; where checkpoints go, not what is learnt
    for name in _UNREAD[kind]:
        del ner[name]
    return {"row": row, "embedding": kind, "seed": seed, "ner": ner,
            "inputs": {"notes": inputs["notes"], "vocabulary": inputs["vocabulary"], "tower": inputs["towers"][row]}}


def _run_spec(out: Path, row: str, tower_dir: Path | None, seed: int, cfg: NERExperimentConfig,
              inputs: dict[str, Any]) -> NERRun:
    rc = run_config(row, seed, cfg, inputs)
    return NERRun(row, rc["embedding"], seed, tower_dir, out / "runs" / row.lower() / f"seed{seed}", rc,
                  sha256_json(rc))


def _ner_job(run: NERRun, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One tagger of the grid (the runner records it); `state` holds the data and the row's frozen
    tower with its precomputed hidden states."""
    res = run_one(run.row, run.embedding, state["data"], state["tokenizer"], run.tower_dir, state["cfg"], run.dir,
                  run.seed, state["states"], state["tower"], resume=run.resume)
    return res, {}


def _describe(run: NERRun, res: dict[str, Any], secs: float) -> str:
    return (f"{run.label} ({run.embedding}): test strict F1 {res['metrics']['f1']:.4f}, "
            f"val {res['best_val'].get('f1', float('nan')):.4f}, {res['steps']} steps, {secs:.1f}s "
            f"({res['cpu_time_s']:.1f} CPU s)")


def _drop_checkpoints(run: NERRun) -> None:
    """A recorded run's checkpoints: no longer needed to resume it."""
    shutil.rmtree(run.dir / "train" / "checkpoints", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The experiment


def _log(t0: float, msg: str) -> None:
    print(f"[ner {time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _same_vocabulary(tokenizer, medm_plm_path: Path) -> None:
    from medmm.models.pretrained import read_config
    from medmm.models.tokenizer import load_tokenizer

    d = medm_plm_path
    if (d / "text").is_dir() and read_config(d)["model_type"] != "bert":
        d = d / "text"
    try:
        other = load_tokenizer(d)
    except FileNotFoundError:
        n = json.loads((d / "config.json").read_text()).get("vocab_size")
        if n != len(tokenizer):
            raise ValueError(f"{d}: the MedM-PLM text tower has vocab_size {n} but the text-MLM tokenizer "
                             f"has {len(tokenizer)} tokens; the rows must read the same word pieces") from None
        return
    if other.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"{d}: the MedM-PLM tower's vocabulary differs from the text-MLM tower's; the three rows "
                         "must read the same word pieces (initialise MedM-PLM's text tower from the text-MLM one)")


def run_ner_experiment(data_dir: str | Path | None, raw_dir: str | Path | None, out_dir: str | Path,
                       text_path: str | Path, medm_plm_path: str | Path, seeds: int | Sequence[int] = 3,
                       cfg: NERExperimentConfig | None = None) -> Path:
    """Train the three rows x seeds that OUT does not hold finished, score them, write the report
    from every finished run; return report.md's path."""
    from medmm.models.bilstm_crf import tower_hidden_states
    from medmm.models.tokenizer import load_tokenizer

    cfg = cfg or NERExperimentConfig()
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("run_ner_experiment: seeds must be non-empty")
    text_path, medm_plm_path = Path(text_path), Path(medm_plm_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        _log(t0, msg)

    timings: dict[str, float] = {}
    prev_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        tokenizer = load_tokenizer(text_path)
        _same_vocabulary(tokenizer, medm_plm_path)
        data = build_ner_data(data_dir, raw_dir, tokenizer, cfg)
        timings["data_s"] = round(time.perf_counter() - t0, 2)
        c = data.counts
        log(f"notes train/val/test {c['notes']['train']}/{c['notes']['val']}/{c['notes']['test']} "
            f"(train before cap {c['notes_before_cap']['train']}), windows {c['windows']}, entities {c['entities']}")

        towers = {ROWS[0]: None, ROWS[1]: text_path, ROWS[2]: medm_plm_path}
        t_h = time.perf_counter()
        inputs = input_identity(data_dir, raw_dir, cfg, tokenizer, towers)
        runs = [_run_spec(out, row, tower_dir, seed, cfg, inputs) for row, tower_dir in towers.items()
                for seed in seeds]
        todo = runner.pending(runs, log)
        timings["hash_inputs_s"] = round(time.perf_counter() - t_h, 2)
        log(f"{len(runs)} runs: {len(runs) - len(todo)} finished by an earlier invocation in {out} (skipped), "
            f"{len(todo)} to run")
        ran_now = {r.dir for r in todo}
        if not cfg.keep_checkpoints:  # of a run stopped between its record and their removal
            for run in runs:
                if run.dir not in ran_now:
                    _drop_checkpoints(run)

        timings["precompute_s"] = timings["train_s"] = 0.0
        failed: list[Exception] = []
        for row, tower_dir in towers.items():
            row_todo = [r for r in todo if r.row == row]
            if not row_todo:
                continue  # nor its tower states
            tower, states = None, None
            if row_todo[0].embedding == "tower_frozen":
                tower = _load_tower(tower_dir)
                if cfg.precompute:
                    tp = time.perf_counter()
                    states = {s: tower_hidden_states(tower, [w.input_ids for w in ds.windows], cfg.eval_batch_size,
                                                     ds.pad_token_id) for s, ds in data.splits.items()}
                    timings["precompute_s"] += round(time.perf_counter() - tp, 2)
                    log(f"{row}: tower hidden states of {sum(len(v) for v in states.values())} windows "
                        f"in {time.perf_counter() - tp:.1f}s")
            # One process: the states stay in this one's memory (no worker pool to hand them to).
            state = {"cfg": cfg, "data": data, "tokenizer": tokenizer, "tower": tower, "states": states}
            t_r = time.perf_counter()
            try:
                runner.run_jobs(row_todo, _ner_job, state, 1, log, _describe,
                                on_recorded=None if cfg.keep_checkpoints else _drop_checkpoints)
            except Exception as e:  # logged by the runner; the other rows go on, then it is raised
                failed.append(e)
            timings["train_s"] += round(time.perf_counter() - t_r, 2)
            del tower, states, state  # one tower's hidden states in memory at a time
        if failed:
            raise failed[0]
        # Every result from its record in OUT, whether run now or earlier: one path to the report.
        results = [load_result(run) for run in runs]
        table_runs = [{k: v for k, v in res.items() if k not in CLOCK_KEYS} for res in results]
        _write_outputs(out, table_runs, data, seeds, cfg, text_path, medm_plm_path)
        timings["total_s"] = round(time.perf_counter() - t0, 2)
        _write_timings(out, runs, results, ran_now, timings, cfg.num_threads or torch.get_num_threads())
    finally:
        torch.set_num_threads(prev_threads)
    log(f"report: {out / 'report.md'}")
    return out / "report.md"


def tower_sentence(f1: dict[str, list[float]], ours: str = ROWS[2], ref: str = ROWS[1],
                   scratch: str = ROWS[0]) -> str:
    """Whether multimodal pre-training hurt the text tower: `ours` vs `ref` test strict F1, read
    against one standard deviation (the larger of the two rows')."""
    (mo, so), (mr, sr) = mean_std(f1[ours]), mean_std(f1[ref])
    diff = mo - mr
    a, b = f"{ours} {format_mean_std(mo, so)}", f"{ref} {format_mean_std(mr, sr)}"
    stds = [s for s in (so, sr) if not math.isnan(s)]
    spread = max(stds) if stds else math.nan
    if math.isnan(diff):
        verdict = f"Strict F1 is undefined for {ours} or {ref}, so no comparison is made."
    elif math.isnan(spread):
        verdict = (f"With one seed no spread was measured: {a} vs {b} ({100 * diff:+.2f} points), so whether "
                   "multimodal pre-training hurt the text tower on this unimodal task cannot be told apart from "
                   "seed noise.")
    elif diff < -spread:
        verdict = (f"Multimodal pre-training HURT the text tower on this unimodal task: {a} vs {b}, "
                   f"{100 * diff:+.2f} points, beyond one standard deviation ({100 * spread:.2f}).")
    elif diff > spread:
        verdict = (f"Multimodal pre-training did not hurt the text tower on this unimodal task; it helped: {a} vs "
                   f"{b}, {100 * diff:+.2f} points, beyond one standard deviation ({100 * spread:.2f}).")
    else:
        verdict = (f"Multimodal pre-training neither measurably hurt nor helped the text tower on this unimodal "
                   f"task: {a} vs {b}, {100 * diff:+.2f} points, within one standard deviation "
                   f"({100 * spread:.2f}).")
    if scratch in f1:
        ms, ss = mean_std(f1[scratch])
        better = [r for r in (ref, ours) if mean_std(f1[r])[0] > ms]
        verdict += (f" Against the embedding learnt from scratch ({format_mean_std(ms, ss)}), "
                    + (f"{' and '.join(better)} {'is' if len(better) == 1 else 'are'} higher in mean F1."
                       if better else "neither tower is higher in mean F1."))
    return verdict


def _write_outputs(out: Path, runs: list[dict], data: NERData, seeds: list[int], cfg: NERExperimentConfig,
                   text_path: Path, medm_plm_path: Path) -> None:
    """report.md, results.csv, results.json: from the finished runs only (no clock times), so a
    resumed experiment writes the same bytes as an uninterrupted one."""
    per_row = {r: {c: [x["metrics"][c] for x in runs if x["row"] == r] for c in COLUMNS} for r in ROWS}
    md_table, csv, table = results_table(per_row, list(COLUMNS), headers=HEADERS)
    table["headers"] = HEADERS
    sentence = tower_sentence({r: per_row[r]["f1"] for r in ROWS})
    c = data.counts
    mode = "frozen (a probe of what each tower learnt)" if cfg.tower == "frozen" else \
        f"fine-tuned with the tagger (lr {cfg.lr.get('tower_finetune', cfg.train.lr):g})"
    md = ["# NER probe: Table V on this dataset", ""]
    md.append(f"Notes: {data.source}. Seeds: {', '.join(map(str, seeds))} (fixed split by patient, seed "
              f"{cfg.split_seed}; the seed varies initialisation, dropout and data order). Each cell is the TEST "
              "strict entity score (exact span and type) of the best validation-F1 checkpoint, mean (std) over "
              "seeds, in %; std is '-' with a single seed.")
    md.append("")
    capped = c["notes_before_cap"]["train"] > c["notes"]["train"]
    md.append(f"Notes train/val/test: {c['notes']['train']}/{c['notes']['val']}/{c['notes']['test']}"
              + (f" (training capped at a random {c['notes']['train']} of {c['notes_before_cap']['train']} notes "
                 "for speed, `max_train_notes`; the same subset for every row and seed)" if capped else "")
              + (f"; evaluation capped at {cfg.max_eval_notes} notes per split" if cfg.max_eval_notes else "")
              + f". Gold entities: {c['entities']['train']}/{c['entities']['val']}/{c['entities']['test']} "
              f"(test: " + ", ".join(f"{t} {n}" for t, n in c["entities_by_type"]["test"].items()) + "). "
              f"Windows of at most {cfg.max_length} word pieces: {c['windows']['train']}/{c['windows']['val']}/"
              f"{c['windows']['test']}."
              + (f" {c['orphan_entities']} ground-truth entities belong to notes absent from the dataset and are "
                 "not used." if c.get("orphan_entities") else ""))
    md.append("")
    md.append(f"Rows: BiLSTM-CRF with an embedding learnt from scratch; with the text-MLM tower (`{text_path}`, the "
              f"ClinicalBERT stand-in); with MedM-PLM's text tower (`{medm_plm_path}`). Towers {mode}. All rows "
              "read the same word pieces (the text-MLM tokenizer).")
    md += ["", "## Table V", "", md_table.rstrip(), "", "## Did multimodal pre-training hurt the text tower?", "",
           sentence, "", "## Training", "", "| row | runs | steps (mean) |", "|---|---:|---:|"]
    for r in ROWS:
        rr = [x for x in runs if x["row"] == r]
        md.append(f"| {r} | {len(rr)} | {np.mean([x['steps'] for x in rr]):.0f} |")
    md += ["", "Timings (per run and per invocation): `timings.md`, `timings.json`.", ""]
    R.write_text(out / "report.md", "\n".join(md))
    R.write_text(out / "results.csv", csv)
    R.write_json(out / "results.json", {
        "table": table, "sentence": sentence, "runs": runs, "counts": c, "source": data.source,
        "config": dataclasses.asdict(cfg), "rows": list(ROWS), "seeds": seeds,
        "text": str(text_path), "medm_plm": str(medm_plm_path),
    })


def _write_timings(out: Path, runs: list[NERRun], results: list[dict[str, Any]], ran_now: set[Path],
                   timings: dict[str, float], threads: int) -> None:
    """timings.json / timings.md: each run's own seconds (from its result.json, so a run finished
    by an earlier invocation keeps the seconds it took then) and this invocation's seconds."""
    per_run = [{"row": run.row, "seed": run.seed, "ran_now": run.dir in ran_now, **{k: res.get(k) for k in CLOCK_KEYS}}
               for run, res in zip(runs, results)]
    invocation = {**timings, "threads": threads, "runs_run": len(ran_now), "runs_skipped": len(runs) - len(ran_now)}
    R.write_json(out / "timings.json", {**invocation, "runs": per_run})
    md = ["# NER probe: timings", "",
          "Wall seconds depend on what else the machine runs; CPU seconds are a run's own cost (summed over its "
          "threads). Runs finished by an earlier invocation keep the seconds they took then.", "",
          "| row | runs | wall seconds (total) | CPU seconds (total) |", "|---|---:|---:|---:|"]
    for r in ROWS:
        rr = [x for x in per_run if x["row"] == r]
        md.append(f"| {r} | {len(rr)} | {sum(x['wall_time_s'] or 0.0 for x in rr):.1f} | "
                  f"{sum(x['cpu_time_s'] or 0.0 for x in rr):.1f} |")
    md += ["", f"This invocation: {invocation['runs_run']} runs run, {invocation['runs_skipped']} skipped (finished "
               f"earlier); data {timings['data_s']:.1f}s, input hashes {timings['hash_inputs_s']:.1f}s, tower hidden "
               f"states {timings['precompute_s']:.1f}s, training and scoring {timings['train_s']:.1f}s, total "
               f"{timings['total_s']:.1f}s ({threads} thread(s)).", ""]
    R.write_text(out / "timings.md", "\n".join(md))


# ---------------------------------------------------------------------------------------------
# CLI glue


def main_ner(args: dict[str, Any]) -> Path:
    """`medmm experiment ner`: args = {"data", "out", "text" (text-MLM BERT dir), "pretrained" (MedM-PLM
    dir or a run dir holding one), optional "raw" (synthetic raw dir; default: found beside the
    dataset), "seeds" (int, default 3), "config" (YAML of NERExperimentConfig), "overrides" (list
    of dotted key=value)}."""
    from medmm.config import load_config, save_config
    from medmm.models.pretrained import MEDM_PLM, MEDM_PLM_PRETRAINING, find_model_dir

    unknown = set(args) - {"data", "raw", "text", "pretrained", "out", "seeds", "config", "overrides"}
    if unknown:
        raise KeyError(f"main_ner: unknown argument(s) {sorted(unknown)}")
    for k in ("out", "text", "pretrained"):
        if not args.get(k):
            raise ValueError(f"main_ner: {k!r} is required")
    cfg = load_config(args.get("config"), args.get("overrides") or [], NERExperimentConfig)
    if args.get("data") is None and cfg.i2b2_dir is None:
        raise ValueError("main_ner: give 'data' (a prepared dataset) or set i2b2_dir in the config")
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "ner.yaml")
    text = Path(args["text"])
    if not text.is_dir():
        raise FileNotFoundError(f"--text {text}: not a directory")
    pre = Path(args["pretrained"])
    if not pre.is_dir():
        raise FileNotFoundError(f"--pretrained {pre}: not a directory")
    text = find_model_dir(text, ("bert",), "text-MLM BERT")
    plm = find_model_dir(pre, (MEDM_PLM, MEDM_PLM_PRETRAINING), "MedM-PLM")
    return run_ner_experiment(args.get("data"), args.get("raw"), out, text, plm, args.get("seeds", 3), cfg)


__all__ = ["NERExperimentConfig", "NERData", "NERRun", "run_ner_experiment", "main_ner", "build_ner_data",
           "load_documents", "find_entities", "ner_scores", "predict_tags", "tower_sentence", "run_one", "run_config",
           "input_identity", "train_config", "ROWS", "COLUMNS"]
