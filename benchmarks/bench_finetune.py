"""Benchmark the demo's experiment step: fine-tune time per (model, task) and the experiment total.

Runs `medmm.recipes.experiment` with the demo settings (`demo_experiment_config()`, the same as
configs/demo_experiment.yaml: frozen cached text towers, 3 epochs max with early stopping, two
one-thread worker processes) on a dataset and pre-trained models written by `medmm demo`
(2,000 synthetic patients), then prints, from the run's timings.json:

  * per (model, task): runs, wall seconds and CPU seconds (mean per run and total);
  * the stages: tokenise, featurise, frozen text towers over the notes, fine-tuning, total;
  * cores, torch threads per worker, load average before and after (the machine may be shared:
    CPU seconds are the run's own cost, wall seconds include waiting for the cores).

    python benchmarks/bench_finetune.py --data DEMO/dataset --pretrained DEMO/medm-plm \\
        --text DEMO/text-mlm/text --raw DEMO/raw-mimic3 [--seeds 3] [--workers 2] [--out DIR]

Prints figures only; asserts nothing about time. Target: the whole step in ~12 minutes on an idle
2-core machine (the demo's 20-minute budget minus synthesis, preparation and pre-training).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset directory (medmm demo: dataset/)")
    ap.add_argument("--pretrained", required=True, help="MedM-PLM run or model directory")
    ap.add_argument("--text", required=True, help="text-MLM BERT directory (the ClinicalBERT stand-in)")
    ap.add_argument("--raw", default=None, help="synthetic raw directory (ground truth for the oracle)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="override the demo's worker processes")
    ap.add_argument("--out", default=None, help="output directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)

    from medmm.recipes.experiment import (DEFAULT_MODELS, DEMO_RATIOS, demo_experiment_config, resolve_assets,
                                          run_medm_plm_experiment)
    from medmm.tasks.spec import TASK_NAMES

    cfg = demo_experiment_config()
    if args.workers is not None:
        cfg.workers = args.workers
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_finetune_")
    out = Path(args.out or tmp.name)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    assets = resolve_assets(args.pretrained, args.text)
    run_medm_plm_experiment(args.data, out, assets, models=DEFAULT_MODELS, tasks=TASK_NAMES, seeds=args.seeds,
                            train_ratios=DEMO_RATIOS, cfg=cfg, raw_dir=args.raw)
    total = time.perf_counter() - t0
    tm = json.loads((out / "timings.json").read_text())  # clock times stay out of results.json

    print(f"cores {os.cpu_count()}, workers {cfg.workers} x {cfg.finetune.num_threads} thread(s), "
          f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    rows: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in tm["runs"]:
        tag = r["task"] + ("" if r["train_fraction"] == 1.0 else " (Figure 4 ratios)")
        rows[(r["model"], tag)].append((r["wall_time_s"], r.get("cpu_time_s") or float("nan")))
    print(f"\n{'model':24s} {'task':32s} {'runs':>4s} {'wall s/run':>10s} {'CPU s/run':>10s} {'CPU s total':>11s}")
    cpu_total = 0.0
    for (m, t), v in rows.items():
        n = len(v)
        cpu = sum(c for _, c in v)
        cpu_total += cpu
        print(f"{m:24s} {t:32s} {n:4d} {sum(w for w, _ in v) / n:10.1f} {cpu / n:10.1f} {cpu:11.1f}")
    print(f"\nstages: tokenise {tm['tokenise_s']:.1f}s, featurise {tm['featurise_s']:.1f}s, frozen text towers "
          f"{tm.get('text_cache_s', 0):.1f}s, fine-tune {tm['finetune_s']:.1f}s wall ({cpu_total:.0f} CPU s in "
          f"{len(tm['runs'])} runs), experiment total {total:.1f}s (assets included)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
