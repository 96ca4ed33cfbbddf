"""Benchmark MedM-PLM pre-training steps: samples/s and achieved FLOP/s vs this machine's matmul peak.

Two text towers side by side, each inside the full MedM-PLM pre-training model of
`MedMPLMRecipe` (code tower, cross-modal module, T2C + C2C heads; Adam, grad clip, frozen
text embeddings, as `medmm pretrain medm-plm` trains it):

    demo   the text tower `medmm pretrain text-mlm` builds (TextMLMRecipe): 2 layers, 128 wide,
           2 heads, intermediate 256
    wide   4 layers, 256 wide, 4 heads, intermediate 1024

Self-contained: no dataset, no network. The code vocabularies are real codes (ICD-9-CM v32
diagnosis leaves from `medmm.ontology`, ATC-3 codes of the synthetic drug catalogue), the text
tower is a randomly initialised BERT saved to a temporary directory (what `text.pretrained_path`
needs), and the batches are random visits: full-length notes (every discharge summary fills
`max_text_len`) and ~25 codes per visit.

    python benchmarks/bench_pretrain.py [--steps 6] [--warmup 2] [--batch 32] [--text-len 256]
                                        [--codes 25] [--threads N]

Measured:
  * peak: best of a few float32 2048x2048 `torch.matmul`s (2 n^3 FLOPs each), before and
    after the training runs (the machine may be shared, so both are printed; the higher is used);
  * samples/s: batch x steps / wall time of `--steps` training steps (masking collate +
    forward + backward + grad clip + Adam step) after `--warmup` untimed ones; the two configs
    alternate step by step so that both see the same background load;
  * FLOPs/step: `torch.utils.flop_counter.FlopCounterMode` over one forward + backward (matmuls
    and attention only: the usual "model FLOPs"; Adam, layer norms and the GAT's scatter ops
    are not counted), so achieved FLOP/s = FLOPs/step x steps/s, shown as a fraction of peak.
Prints figures only; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import BertModel
from transformers.utils import logging as hf_logging

from medmm.data.synth.catalog import DRUGS, atc3
from medmm.models.medm_plm import MedMPLMForPretraining
from medmm.models.text import TextEncoderConfig
from medmm.models.tokenizer import SPECIAL_TOKENS
from medmm.ontology.icd9 import load_icd9_dx
from medmm.recipes.pretrain import MedMPLMRecipe, TextMLMRecipe, VisitDataset, _MaskingCollate, build_medm_plm
from medmm.train.loop import build_optimizer

N_DX, N_MED = 120, 45
TEXT_VOCAB = TextMLMRecipe().text.vocab_size  # the demo's WordPiece size (4000)
CLS, SEP = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
aten = torch.ops.aten

# ----------------------------------------------------------------------------- configs


def text_configs() -> dict[str, TextEncoderConfig]:
    demo = TextMLMRecipe().text
    wide = replace(demo, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024)
    return {"demo": demo, "wide": wide}


def vocabularies() -> tuple[list[str], list[str]]:
    """120 ICD-9 leaves spread over the whole tree (every k-th, so the GAT sees many chapters and
    categories, as a real vocabulary does, rather than 120 siblings of 001-009) and 45 ATC-3 codes."""
    leaves = load_icd9_dx().leaves()
    dx = leaves[:: len(leaves) // N_DX][:N_DX]
    med = sorted({atc3(d.atc) for d in DRUGS if d.atc})[:N_MED]
    if len(med) < N_MED:
        raise RuntimeError(f"the drug catalogue has only {len(med)} ATC-3 codes, need {N_MED}")
    return dx, med


def save_bert(cfg: TextEncoderConfig, directory: Path) -> str:
    """A random BERT directory (config.json + model.safetensors): all that build_medm_plm loads."""
    torch.manual_seed(0)
    BertModel(cfg.to_bert_config(), add_pooling_layer=False).save_pretrained(str(directory))
    return str(directory)


# ----------------------------------------------------------------------------- data


def random_visits(model: MedMPLMForPretraining, n: int, text_len: int, mean_codes: int, seed: int) -> VisitDataset:
    """`n` visits: [CLS] random word ids [SEP] of length `text_len`; ~60% dx / 40% med codes."""
    rng = random.Random(seed)
    code_cfg = model.config.code
    text_ids, code_ids = [], []
    for _ in range(n):
        text_ids.append([CLS] + [rng.randrange(len(SPECIAL_TOKENS), TEXT_VOCAB) for _ in range(text_len - 2)] + [SEP])
        n_codes = max(2, mean_codes + rng.randint(-5, 5))
        n_dx = min(len(code_cfg.dx_vocab), max(1, round(0.6 * n_codes)))
        n_med = min(len(code_cfg.med_vocab), max(1, n_codes - n_dx))
        code_ids.append(code_cfg.encode(rng.sample(code_cfg.dx_vocab, n_dx), rng.sample(code_cfg.med_vocab, n_med)))
    return VisitDataset(text_ids, code_ids)


@dataclass
class Bench:
    """One config's model, optimiser and batch stream."""

    name: str
    model: MedMPLMForPretraining
    data: VisitDataset
    batch: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.cfg = MedMPLMRecipe().train
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.collate = _MaskingCollate(self.model)
        self.order: list[int] = []
        self.rng = random.Random(self.seed)
        self.times: list[float] = []
        self.cpu: list[float] = []

    def next_batch(self) -> dict[str, torch.Tensor]:
        if len(self.order) < self.batch:
            self.order += self.rng.sample(range(len(self.data)), len(self.data))
        idx, self.order = self.order[: self.batch], self.order[self.batch:]
        return self.collate([self.data[i] for i in idx])

    def step(self) -> float:
        """One optimizer step as Trainer._train_step does it; returns the loss."""
        batch = self.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model(batch)["loss"]
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=False)
        self.optimizer.step()
        return loss.detach().item()

    def timed_step(self) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.step()
        self.times.append(time.perf_counter() - t)
        self.cpu.append(time.process_time() - c)

    def count_flops(self) -> tuple[int, dict[str, float]]:
        """FLOPs of one forward + backward, and each part's share of the FORWARD FLOPs.

        Shares come from the forward only: FlopCounterMode attributes backward FLOPs to modules
        through backward hooks, which misattribute them here (the frozen text embeddings give
        the text tower's input no gradient), while its total is exact.
        """
        batch = self.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as fc:
            loss = self.model(batch)["loss"]
            fwd = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        root = type(self.model).__name__
        parts = {k: fwd.get(f"{root}.model.{k}", 0) for k in ("text", "code", "cross")}
        parts["heads"] = fwd.get(f"{root}.objective", 0)
        return fc.get_total_flops(), {k: v / max(fwd["Global"], 1) for k, v in parts.items()}


# On CPU, F.scaled_dot_product_attention (BERT's default attention) runs the fused
# `_scaled_dot_product_flash_attention_for_cpu` kernels, which FlopCounterMode does not know;
# counted here with torch's own SDPA formulas so that attention is not silently missing.
def _cpu_sdpa_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_SDPA_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_fwd,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_bwd,
}

# ----------------------------------------------------------------------------- measurements


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Best float32 n x n matmul rate (FLOP/s) over `reps` runs after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def text_shape(model: MedMPLMForPretraining) -> str:
    c = model.model.text.config
    return f"{c.num_hidden_layers}L {c.hidden_size}H {c.num_attention_heads}A {c.intermediate_size}I"


def n_params(model: torch.nn.Module, trainable: bool) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def fmt_row(label: str, values: list[str], w0: int = 38, w: int = 18) -> str:
    return f"{label:<{w0}}" + "".join(f"{v:>{w}}" for v in values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6,
                    help="timed training steps per config (6 keeps the run near 2.5 min on 2 cores)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per config before timing")
    ap.add_argument("--batch", type=int, default=32, help="visits per step")
    ap.add_argument("--text-len", type=int, default=256, help="note length in tokens, [CLS] and [SEP] included")
    ap.add_argument("--codes", type=int, default=25, help="mean codes per visit (dx + med)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.batch < 1 or a.text_len < 3:
        ap.error("--steps and --batch must be >= 1 and --text-len >= 3")
    if a.threads:
        torch.set_num_threads(a.threads)
    hf_logging.disable_progress_bar()  # save/load bars of the temporary BERTs
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
          f"load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} (1 / 5 / 15 min)")
    peak0 = matmul_peak()
    print(f"matmul peak (float32 2048x2048, best of 5): {peak0 / 1e9:.1f} GFLOP/s", flush=True)

    torch.manual_seed(0)
    dx, med = vocabularies()
    benches: list[Bench] = []
    with tempfile.TemporaryDirectory(prefix="bench_pretrain-") as tmp:
        for name, text_cfg in text_configs().items():
            recipe = MedMPLMRecipe()
            recipe.text = replace(recipe.text, pretrained_path=save_bert(text_cfg, Path(tmp) / name))
            torch.manual_seed(0)
            model = build_medm_plm(recipe, dx, med).train()
            data = random_visits(model, 4 * a.batch, a.text_len, a.codes, seed=1)
            benches.append(Bench(name, model, data, a.batch))
    flops = {b.name: b.count_flops() for b in benches}
    for _ in range(a.warmup):
        for b in benches:
            b.step()
    print(f"timing {a.steps} steps per config (B={a.batch}, text {a.text_len} tokens, ~{a.codes} codes), "
          "configs alternating ...", flush=True)
    for _ in range(a.steps):
        for b in benches:  # alternate, so a burst of background load hits both configs alike
            b.timed_step()
    peak1 = matmul_peak()
    peak = max(peak0, peak1)
    load1 = os.getloadavg()

    print()
    print(fmt_row("", [b.name for b in benches]))
    rows: list[tuple[str, list[str]]] = []
    rows.append(("text tower (layers/hidden/heads/ffn)", [text_shape(b.model) for b in benches]))
    rows.append(("params total / trainable (M)",
                 [f"{n_params(b.model, False) / 1e6:.2f} / {n_params(b.model, True) / 1e6:.2f}" for b in benches]))
    rows.append(("step ms (median)", [f"{1e3 * statistics.median(b.times):.0f}" for b in benches]))
    rows.append(("step ms (min / max)", [f"{1e3 * min(b.times):.0f} / {1e3 * max(b.times):.0f}" for b in benches]))
    rows.append(("CPU s / step (all threads)", [f"{statistics.mean(b.cpu):.2f}" for b in benches]))
    rows.append(("samples/s", [f"{a.batch * len(b.times) / sum(b.times):.1f}" for b in benches]))
    rows.append(("GFLOP / step (fwd+bwd)", [f"{flops[b.name][0] / 1e9:.1f}" for b in benches]))
    for k in ("text", "code", "cross", "heads"):
        rows.append((f"  {k} share of fwd FLOPs", [f"{flops[b.name][1][k]:.1%}" for b in benches]))
    achieved = {b.name: flops[b.name][0] * len(b.times) / sum(b.times) for b in benches}
    rows.append(("achieved GFLOP/s", [f"{achieved[b.name] / 1e9:.1f}" for b in benches]))
    rows.append(("fraction of matmul peak", [f"{achieved[b.name] / peak:.1%}" for b in benches]))
    for label, vals in rows:
        print(fmt_row(label, vals))
    print(f"\nmatmul peak before / after: {peak0 / 1e9:.1f} / {peak1 / 1e9:.1f} GFLOP/s (fractions use "
          f"{peak / 1e9:.1f}); load average at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}; "
          f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
