"""Benchmark one MedM-PLM fine-tuning step per task, with and without the two speed-ups of the
downstream path, side by side in one run:

  * `CodeEncoder.bucket_rows`: the code tower runs on length buckets instead of one padded pass;
  * `CrossModal.attend_text`: Eq. 6 maps the code query into the text width and projects only
    the attended sum, instead of projecting every text token (the "reference" below does the
    latter, as the equation is written).

For each task (readmission, medication, ICD coding) the same 10 training batches of the demo's
fine-tuning (frozen cached text tower, batch 32) are run forward + backward + AdamW under four
settings, alternating so all see the same background load; prints the median seconds per step
and the ratios to the reference. Needs the outputs of `make demo` (or `medmm demo`):

    python benchmarks/bench_finetune_step.py --demo runs/demo [--steps 10] [--reps 3] [--threads 1]

Prints figures only; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", required=True, help="a `medmm demo` output directory")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo's workers use 1)")
    args = ap.parse_args(argv)

    import torch

    from medmm.models import downstream
    from medmm.models.code_encoder import CodeEncoder
    from medmm.models.cross_modal import CrossModal, visit_attention
    from medmm.recipes.experiment import demo_experiment_config, resolve_assets, warm_text_caches
    from medmm.recipes.finetune import load_records, prepare_task
    from medmm.tasks.featurize import Collator, NoteTokens

    torch.set_num_threads(args.threads)
    demo = Path(args.demo)
    cfg = demo_experiment_config().finetune
    assets = resolve_assets(demo / "medm-plm", demo / "text-mlm" / "text")
    records = load_records(demo / "dataset")
    notes = NoteTokens.build(records, assets.tokenizer, cfg.max_text_len)
    fast_attend = CrossModal.attend_text

    def reference_attend(self, query, z_text, text_mask):  # Eq. 6 as written: every token projected
        return visit_attention(query, self.text_proj(z_text), text_mask)

    settings = {"reference": (0, reference_attend), "buckets": (CodeEncoder.bucket_rows, reference_attend),
                "projection": (0, fast_attend), "both (default)": (CodeEncoder.bucket_rows, fast_attend)}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; {args.steps} steps x {args.reps} reps per setting")
    try:
        for task in ("readmission", "medication", "icd_coding"):
            td = prepare_task(task, records, assets, cfg, notes)
            warm_text_caches(["medm-plm"], {task: td}, assets, cfg)
            model = downstream.build_model("medm-plm", td.spec, assets, **cfg.model_overrides.get("medm-plm", {}))
            collate = Collator(td.spec, text=True, codes=True)
            ds = td.splits["train"]
            batches = [collate([ds[i] for i in range(j, min(j + 32, len(ds)))])
                       for j in range(0, min(len(ds), 32 * args.steps), 32)]
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
            times: dict[str, list[float]] = {k: [] for k in settings}
            for _ in range(args.reps):
                for name, (rows, attend) in settings.items():
                    CodeEncoder.bucket_rows, CrossModal.attend_text = rows, attend
                    for b in batches:
                        t = time.perf_counter()
                        model(b)["loss"].backward()
                        opt.step()
                        opt.zero_grad()
                        times[name].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            ref = med["reference"]
            print(f"{task:12s} " + "  ".join(f"{k} {1000 * v:6.1f} ms ({ref / v:4.2f}x)" for k, v in med.items()))
    finally:
        CodeEncoder.bucket_rows, CrossModal.attend_text = settings["both (default)"]
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
