"""Pre-training recipes: text-tower MLM (the ClinicalBERT stand-in), MedM-PLM (T2C + C2C) and
G-BERT (code-only self- and dual-prediction, the Table III baseline's pre-training).

    medmm pretrain text-mlm  --data DATASET --out RUN [--config FILE] [key=value ...]
    medmm pretrain medm-plm  --data DATASET --out RUN [--config FILE] [key=value ...] [--resume]
    medmm pretrain gbert     --data DATASET --out RUN [--config FILE] [key=value ...] [--resume]

Pre-training data (`medmm.tasks.pretraining`, MedM-PLM §III-C): every visit with a discharge
summary and at least one code is a single-visit record, from the `train` and `val` patients of
`medmm.tasks.splits` (the downstream `test` patients never appear). G-BERT pre-trains on the same
visits (their codes only), with the same vocabulary rule, so its tower loads into the experiment
beside MedM-PLM's (`Assets.gbert_path`; the vocabularies must be the same lists).

Both masked-code recipes validate alike (`MaskedCodeValidation`): fixed masks on the validation
visits, the mean of every `loss_*`, and the masked-code top-5 of each prediction side against
the frequency baseline's on the same masks.

Training masks (`MaskingCollate`) are drawn per visit from a generator seeded by (train.seed,
epoch, the visit's index in the training set): new masks every epoch, the same ones however the
epoch is split into ranks, micro-batches or resumed runs. With `torchrun` each rank trains on its
shard; rank 0 alone writes out/model, recipe.yaml and pretrain_summary.json (the other ranks wait
for it and return its summary). A MedM-PLM or text-MLM loss is a mean over masked tokens, so the
loop is given the token count (`loss_weight`): a step's gradient is the mean over the global
batch's masked tokens, on any number of ranks (`medmm.train.loop`, "Data parallelism").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch.utils.data import Dataset

from medmm.config import load_config, save_config
from medmm.models.baselines.gbert import GBertForPretraining, GBertPretrainConfig
from medmm.models.code_encoder import CodeEncoderConfig
from medmm.models.medm_plm import MedMPLMConfig, MedMPLMForPretraining
from medmm.models.pretrained import save_pretrained
from medmm.models.text import TextEncoderConfig, TextMLM
from medmm.models.tokenizer import load_tokenizer, train_wordpiece
from medmm.objectives.masked_code import masked_code_topk
from medmm.tasks.pretraining import (Column, EvalMasking, MaskingCollate, PretrainDataConfig, VisitDataset,
                                     code_encoder_config, code_vocabularies, collate_visits, encode_codes,
                                     fixed_eval_batches, masked_token_count, note_ids, pad, pretraining_visits,
                                     sample_generator, split_visits, train_val, with_vocabularies)
from medmm.train import distributed as D
from medmm.train.checkpoint import seed_everything
from medmm.train.device import model_device, to_device
from medmm.train.loop import FitResult, Trainer, TrainConfig

# ----------------------------------------------------------------------------- configs


@dataclass
class TextMLMRecipe:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(
        vocab_size=4000, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=256,
        max_position_embeddings=512))
    tokenizer_min_frequency: int = 2
    mlm_prob: float = 0.15
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=4, batch_size=32, lr=5e-4, eval_every="epoch", log_every=10))


@dataclass
class CodeTowerRecipe:
    embed_dim: int = 75  # x gat_heads = 300, the paper's width
    gat_heads: int = 4
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 300
    dropout: float = 0.1
    max_codes: int = 61


@dataclass
class MedMPLMRecipe:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    # The text tower: a local BERT directory (ClinicalBERT, or `medmm pretrain text-mlm`'s out/text).
    # Demo: embeddings and the first of 2 layers frozen (the paper freezes 10 of ClinicalBERT's 12).
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(freeze_embeddings=True,
                                                                              freeze_layers=1))
    code: CodeTowerRecipe = field(default_factory=CodeTowerRecipe)
    cross_modal: bool = True
    objective: str = "ce"  # paper: CE at masked codes; "bce": the authors' multi-hot variant
    dropout: float = 0.1
    mask_prob: float = 0.15
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=8, batch_size=32, lr=5e-4, optimizer="adam", eval_every="epoch",
        early_stopping_patience=2, early_stopping_metric="loss", log_every=10))


@dataclass
class GBertRecipe:
    """G-BERT's code-only pre-training (`models.baselines.gbert.GBertForPretraining`).

    `data` as for MedM-PLM (its `max_text_len` is unused: no text). Defaults are the demo's: the
    code tower sized as MedM-PLM's, so Table III compares pre-training, not capacity. G-BERT's own
    settings (4 heads, dropout 0.4, batch 64, 10 epochs): configs/gbert_paper.yaml.
    """

    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    code: CodeTowerRecipe = field(default_factory=CodeTowerRecipe)
    dropout: float = 0.1  # of the prediction heads (the tower's is code.dropout)
    mask_prob: float = 0.15
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=8, batch_size=32, lr=5e-4, optimizer="adam", eval_every="epoch",
        early_stopping_patience=2, early_stopping_metric="loss", log_every=10))


# ----------------------------------------------------------------------------- text MLM


def pretrain_text_mlm(data_dir: str | Path, out_dir: str | Path, cfg: TextMLMRecipe,
                      resume: bool = False) -> dict[str, Any]:
    """Train a WordPiece tokenizer and a BERT MLM on the training patients' notes; save out/text."""
    out = Path(out_dir)
    train, val = train_val(pretraining_visits(data_dir, cfg.data.split_seed))
    if cfg.text.pretrained_path:
        tokenizer = load_tokenizer(cfg.text.pretrained_path)
    else:
        tokenizer = train_wordpiece(train["text"].to_list(), vocab_size=cfg.text.vocab_size,
                                    min_frequency=cfg.tokenizer_min_frequency)
        cfg.text.vocab_size = len(tokenizer)
    seed_everything(cfg.train.seed)  # initialisation is part of the run: same seed, same weights
    model = TextMLM(cfg.text)
    text_train = Column("input_ids", note_ids(train, tokenizer, cfg.data.max_text_len))
    text_val = Column("input_ids", note_ids(val, tokenizer, cfg.data.max_text_len))
    collate = MaskingCollate(model, tokenizer, cfg.mlm_prob, seed=cfg.train.seed)
    val_batches = fixed_eval_batches(text_val, MaskingCollate(model, tokenizer, cfg.mlm_prob, seed=1234),
                                     cfg.train.batch_size)

    def evaluate(m: TextMLM) -> dict[str, float]:
        tot, n = 0.0, 0
        device = model_device(m)
        for b in val_batches:
            k = int((b["labels"] != -100).sum())
            tot += float(m(**to_device(b, device))["loss"]) * k
            n += k
        loss = tot / max(n, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50))}

    with D.distributed_session(device=cfg.train.device):
        result = Trainer(_KwargsAdapter(model), text_train, cfg.train, out, collate_fn=collate,
                         evaluate=lambda m: evaluate(m.inner), run_config=cfg,
                         loss_weight=masked_token_count("labels")).fit(resume=resume, overwrite=not resume)

        def export() -> dict[str, Any]:
            save_pretrained(model, out / "text", tokenizer=tokenizer)
            summary = {"recipe": "text-mlm", "data": str(data_dir), "train_visits": train.height,
                       "val_visits": val.height, "vocab_size": len(tokenizer), "best_val": result.best_metrics,
                       "steps": result.global_step, "wall_time_s": result.wall_time_s, "text_dir": str(out / "text")}
            (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
            return summary

        return D.on_main(export)


class _KwargsAdapter(torch.nn.Module):
    """The loop calls model(batch); TextMLM takes keyword tensors."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.inner(**batch)


# ----------------------------------------------------------------------------- MedM-PLM


def build_medm_plm(cfg: MedMPLMRecipe, dx_vocab: list[str], med_vocab: list[str]) -> MedMPLMForPretraining:
    if not cfg.text.pretrained_path:
        raise ValueError("text.pretrained_path is not set: give a local BERT directory (ClinicalBERT, or "
                         "the out/text directory of `medmm pretrain text-mlm`)")
    return MedMPLMForPretraining(MedMPLMConfig(
        text=cfg.text, code=code_encoder_config(dx_vocab, med_vocab, cfg.code), cross_modal=cfg.cross_modal,
        objective=cfg.objective, dropout=cfg.dropout, mask_prob=cfg.mask_prob))


def pretrain_medm_plm(data_dir: str | Path, out_dir: str | Path, cfg: MedMPLMRecipe,
                      resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Pre-train MedM-PLM with L = L_T2C + L_C2C (Eq. 10); save out/model (save_pretrained).

    `stop_after` interrupts at that global step as a pre-emption would (checkpoint `last`
    written, no model exported); `resume=True` continues exactly from it.
    """
    t0 = time.perf_counter()
    train, val, dx_vocab, med_vocab = _visits(data_dir, cfg.data)
    seed_everything(cfg.train.seed)  # initialisation is part of the run: same seed, same weights
    model = build_medm_plm(cfg, dx_vocab, med_vocab)
    tokenizer = load_tokenizer(cfg.text.pretrained_path)

    def mk(df: pl.DataFrame) -> VisitDataset:
        return VisitDataset(note_ids(df, tokenizer, cfg.data.max_text_len), encode_codes(df, model.config.code))

    return _pretrain_masked_codes("medm-plm", data_dir, model, model.config.code, mk(train), mk(val), ("t2c", "c2c"),
                                  cfg, Path(out_dir), resume, stop_after, t0,
                                  export=lambda d: save_pretrained(model.model, d, tokenizer=tokenizer))


# ----------------------------------------------------------------------------- G-BERT


def build_gbert(cfg: GBertRecipe, dx_vocab: list[str], med_vocab: list[str]) -> GBertForPretraining:
    return GBertForPretraining(GBertPretrainConfig(code=code_encoder_config(dx_vocab, med_vocab, cfg.code),
                                                   dropout=cfg.dropout, mask_prob=cfg.mask_prob))


def pretrain_gbert(data_dir: str | Path, out_dir: str | Path, cfg: GBertRecipe,
                   resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """G-BERT's pre-training, L = L_se + L_du (`GBertForPretraining`), on MedM-PLM's pre-training
    visits; save the code tower to out/model (a "medmm-code-encoder" directory: the experiment's
    `--gbert`, `Assets.gbert_path`). `stop_after` / `resume` as for `pretrain_medm_plm`.
    """
    t0 = time.perf_counter()
    train, val, dx_vocab, med_vocab = _visits(data_dir, cfg.data)
    seed_everything(cfg.train.seed)  # initialisation is part of the run: same seed, same weights
    model = build_gbert(cfg, dx_vocab, med_vocab)
    code_cfg = model.encoder.config
    train_ds, val_ds = (Column("code_ids", encode_codes(df, code_cfg)) for df in (train, val))
    return _pretrain_masked_codes("gbert", data_dir, model, code_cfg, train_ds, val_ds, ("self", "dual"), cfg,
                                  Path(out_dir), resume, stop_after, t0,
                                  export=lambda d: save_pretrained(model.encoder, d))


# ----------------------------------------------------------------------------- shared by both


def _visits(data_dir: str | Path, data: PretrainDataConfig
            ) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[str]]:
    """`split_visits`, with the visits read through this module's `pretraining_visits`, the name a
    test replaces to plant visits."""
    return with_vocabularies(pretraining_visits(data_dir, data.split_seed), data.min_code_count)


class MaskedCodeValidation:
    """`evaluate(model)` of a masked-code pre-training (MedM-PLM, G-BERT).

    Validation visits masked once (`EvalMasking`, fixed seed): the same masks at every
    evaluation, and -- the visits, vocabularies and seed being shared -- the same masks for
    MedM-PLM and G-BERT. Each `loss_*` of the model's output is averaged over masked codes and
    `loss` is their sum; `top5_<side>` ranks `logits_<side>` (B, n_codes) with `topk_unseen`; the
    frequency baseline ranks the training counts the same way on the same masks.
    """

    def __init__(self, val_ds: Dataset, code_cfg: CodeEncoderConfig, counts: torch.Tensor, sides: tuple[str, ...],
                 mask_prob: float, batch_size: int):
        self.batches = fixed_eval_batches(val_ds, EvalMasking(code_cfg, mask_prob), batch_size)
        self.offset, self.sides = code_cfg.dx_range[0], sides
        self.n_masked = max(sum(int((b["code_labels"] != -100).sum()) for b in self.batches), 1)
        self.baseline = sum(topk_unseen(counts.expand(b["code_ids"].shape[0], -1), b, self.offset)[0]
                            for b in self.batches) / self.n_masked

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        sums: dict[str, float] = {}
        hits = dict.fromkeys(self.sides, 0)
        device = model_device(model)
        for cpu_batch in self.batches:
            b = to_device(cpu_batch, device)
            o = model(b)
            k = int((b["code_labels"] != -100).sum())
            for key, v in o.items():
                if key.startswith("loss_"):
                    sums[key] = sums.get(key, 0.0) + float(v) * k
            for side in self.sides:
                hits[side] += topk_unseen(o[f"logits_{side}"], b, self.offset)[0]
        res = {k: v / self.n_masked for k, v in sums.items()}
        res["loss"] = sum(res.values())
        res.update({f"top5_{s}": hits[s] / self.n_masked for s in self.sides})
        res["top5_frequency_baseline"] = self.baseline
        return res


def _pretrain_masked_codes(recipe: str, data_dir: str | Path, model: torch.nn.Module, code_cfg: CodeEncoderConfig,
                           train_ds: Dataset, val_ds: Dataset, sides: tuple[str, ...], cfg: MedMPLMRecipe | GBertRecipe,
                           out: Path, resume: bool, stop_after: int | None, t0: float,
                           export: Callable[[Path], Any]) -> dict[str, Any]:
    """The Trainer loop (exact resume) with `MaskedCodeValidation`; then, on rank 0, `export(out/model)`
    and out/pretrain_summary.json. Returns the summary (on every rank), or {"interrupted_at_step"}
    at `stop_after`."""
    counts = code_counts(train_ds, code_cfg.dx_range[0], code_cfg.num_codes)
    evaluate = MaskedCodeValidation(val_ds, code_cfg, counts, sides, cfg.mask_prob, cfg.train.batch_size)
    with D.distributed_session(device=cfg.train.device):
        result: FitResult = Trainer(model, train_ds, cfg.train, out, evaluate=evaluate, run_config=cfg,
                                    collate_fn=MaskingCollate(model, seed=cfg.train.seed),  # model.mask: mask_prob
                                    loss_weight=_loss_weight(model)).fit(resume=resume, overwrite=not resume,
                                                                         stop_after=stop_after)
        if result.interrupted:
            return {"interrupted_at_step": result.global_step}

        def finish() -> dict[str, Any]:
            export(out / "model")
            summary = {"recipe": recipe, "data": str(data_dir), "train_visits": len(train_ds),
                       "val_visits": len(val_ds), "dx_vocab": len(code_cfg.dx_vocab),
                       "med_vocab": len(code_cfg.med_vocab), "steps": result.global_step,
                       "best_val": result.best_metrics,
                       "first_val": _first_eval(out), "top5_frequency_baseline": evaluate.baseline,
                       "top5_note": "top-5 among codes not visible in the masked visit; val masks all [MASK]",
                       "wall_time_s": round(time.perf_counter() - t0, 1), "model_dir": str(out / "model")}
            (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
            return summary

        return D.on_main(finish)


def _loss_weight(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], Any] | None:
    """How many terms the pre-training loss averages over in a batch (`Trainer(loss_weight=)`).

    MedM-PLM "ce": L_T2C and L_C2C are both means over the batch's masked codes; "bce": both are
    means over visits x codes, i.e. proportional to the visits. G-BERT: None -- its four BCE terms
    average over different subsets of visits (those with both systems), so no one count makes its
    sum a sum over terms; under DDP or accumulation its step is the mean of per-shard losses.
    """
    if isinstance(model, MedMPLMForPretraining):
        if model.config.objective == "ce":
            return masked_token_count("code_labels")
        return lambda batch: batch["code_ids"].shape[0]
    return None


def code_counts(train_ds: Dataset, offset: int, n_codes: int) -> torch.Tensor:
    """How often each code occurs among the training visits: the frequency baseline's scores."""
    counts = torch.zeros(n_codes)
    for i in range(len(train_ds)):
        for t in train_ds[i]["code_ids"]:
            if offset <= t < offset + n_codes:
                counts[t - offset] += 1
    return counts


def topk_unseen(logits: torch.Tensor, batch: dict[str, torch.Tensor], offset: int, k: int = 5) -> tuple[int, int]:
    """Masked-code top-k hits, ranking only codes NOT visible in the visit's (masked) input.

    Codes are unique within a visit, so a visible code cannot be a masked one; leaving them in the
    ranking would reward predicting what the input already shows. Applied alike to the model and
    to the frequency baseline.
    """
    ids = batch["code_ids"]
    visible = (ids >= offset) & (ids < offset + logits.shape[1])
    scores = logits.clone().float()
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)[visible]
    scores[rows, ids[visible] - offset] = float("-inf")
    return masked_code_topk(scores, batch["code_labels"], offset, k=k)


def _first_eval(out: Path) -> dict[str, float]:
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "eval":
            return rec
    return {}


# ----------------------------------------------------------------------------- provenance


def run_summary(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The `pretrain_summary.json` of the run that wrote `model_dir` (RUN/model, RUN/text), if any."""
    if model_dir is None:
        return None
    f = Path(model_dir).parent / "pretrain_summary.json"
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def pretraining_note(assets: Any) -> str:
    """Which towers of an experiment were pre-trained, by which recipe, on how many visits: one
    Markdown paragraph for the report (from `Assets` paths and the summaries beside them)."""
    def by(path: Any, recipe: str, what: str, objective: str) -> str:
        s = run_summary(path)
        if s is None or s.get("recipe") != recipe:
            return f"`{path}` (not written by `medmm pretrain {recipe}`: no pre-training record beside it)"
        return (f"{what} pre-trained by `medmm pretrain {recipe}` ({objective}) on {s['train_visits']:,} training "
                f"visits of `{s.get('data', '?')}`, `{path}`")

    if assets.gbert_path is None:
        gbert = ("**not pre-trained**: no G-BERT checkpoint was given (`--gbert`, `medmm pretrain gbert`), so the "
                 "code tower of the G-BERT rows starts from random weights, unlike the paper's G-BERT")
    else:
        gbert = by(assets.gbert_path, "gbert", "code tower", "self- and dual-prediction")
    plm = by(assets.medm_plm_path, "medm-plm", "code tower, cross-modal module and text tower (from its BERT start)",
             "Text-to-Code + Code-to-Code")
    text = ("none given" if assets.text_path is None else
            by(assets.text_path, "text-mlm", "text tower", "masked language modelling of the notes"))
    return (f"Pre-trained towers. G-BERT (alone and in G-BERT+ClinicalBERT): {gbert}. MedM-PLM (and "
            f"MedM-PLM-cross_modal): {plm}. ClinicalBERT (alone and in the +ClinicalBERT rows): {text}.")


# ----------------------------------------------------------------------------- CLI glue


RECIPES = {"text-mlm": (TextMLMRecipe, pretrain_text_mlm), "medm-plm": (MedMPLMRecipe, pretrain_medm_plm),
           "gbert": (GBertRecipe, pretrain_gbert)}


def run(kind: str, data_dir: str, out_dir: str, config: str | None, overrides: list[str],
        resume: bool = False) -> dict[str, Any]:
    if kind not in RECIPES:
        raise KeyError(f"unknown pre-training recipe {kind!r}; choose from {sorted(RECIPES)}")
    cls, fn = RECIPES[kind]
    cfg = load_config(config, overrides, cls)
    # Under torchrun the process group lives for the whole recipe, so that rank 0 alone writes
    # recipe.yaml (here), the exported model and the summary (in `fn`) while the others wait.
    with D.distributed_session(device=cfg.train.device):
        def write_recipe() -> None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            save_config(cfg, Path(out_dir) / "recipe.yaml")

        D.on_main(write_recipe)
        return fn(data_dir, out_dir, cfg, resume=resume)



# Names the plumbing had when it lived here (tests/, benchmarks/ and other recipes import them).
_Column, _MaskingCollate, _EvalMasking, _fixed_eval_batches = Column, MaskingCollate, EvalMasking, fixed_eval_batches
__all__ = ["PretrainDataConfig", "CodeTowerRecipe", "TextMLMRecipe", "MedMPLMRecipe", "GBertRecipe", "RECIPES",
           "pretrain_text_mlm", "pretrain_medm_plm", "pretrain_gbert", "build_medm_plm", "build_gbert", "run",
           "run_summary", "pretraining_note", "MaskedCodeValidation", "code_counts", "topk_unseen",
           # from medmm.tasks.pretraining
           "pretraining_visits", "split_visits", "code_vocabularies", "code_encoder_config", "encode_codes",
           "VisitDataset", "pad", "collate_visits", "sample_generator", "masked_token_count"]
