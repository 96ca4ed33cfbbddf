"""The end-to-end demo on synthetic data (`make demo` / `medmm demo`).

synth -> prepare -> summary. Each step prints what it did and how long it took; the closing
line names where everything was written.
"""

from __future__ import annotations

import time
from pathlib import Path


def _step(n: int, total: int, title: str) -> float:
    print(f"\n[{n}/{total}] {title}", flush=True)
    return time.perf_counter()


def run_demo(out: str | Path, n_patients: int = 2000, seed: int = 0) -> Path:
    from medmm.data.schema import load_dataset
    from medmm.data.sources import prepare
    from medmm.data.summary import print_summary
    from medmm.data.synth import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw, data = out / "raw-mimic3", out / "dataset"
    total = 3
    t0 = t = _step(1, total, f"synthesise {n_patients} patients in the MIMIC-III layout (seed {seed})")
    generate(raw, n_patients=n_patients, seed=seed, overwrite=True)
    print(f"    wrote {raw} in {time.perf_counter() - t:.1f}s; data card: {raw / 'data_card.md'}")

    t = _step(2, total, "prepare the canonical dataset")
    prepare("mimic3", raw, data, mappings={"dir": raw / "mappings"}, overwrite=True, progress=True)
    print(f"    wrote {data} in {time.perf_counter() - t:.1f}s")

    _step(3, total, "dataset summary")
    print_summary(load_dataset(data))
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f}s; outputs under {out}/ "
          f"(data card: {raw / 'data_card.md'}, manifest: {data / 'manifest.json'})")
    return out
