"""Realism of the synthetic data: the MIMIC-III demo statistics (medmm.data.synth.realism) for
several seeds and sizes, beside the real demo's, and which land outside the targets.

    python benchmarks/bench_realism.py [--patients 2000] [--seeds 0 1 2 3 4 5 6 7 8 9]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from medmm.data.synth import generate
from medmm.data.synth.realism import TARGETS, mimic3_stats, out_of_range, render_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_realism-"))
    failures = 0
    try:
        for seed in a.seeds:
            t0 = time.perf_counter()
            out = generate(work / f"s{seed}", n_patients=a.patients, seed=seed, card=False)
            stats = mimic3_stats(out)
            bad = out_of_range(stats)
            failures += bool(bad)
            print(f"seed {seed}: {time.perf_counter() - t0:.1f} s, out of range: {', '.join(bad) or 'none'}")
            if seed == a.seeds[0]:
                print(render_table(stats, targets=TARGETS))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(a.seeds) - failures} of {len(a.seeds)} seeds in range at {a.patients:,} patients")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
