"""Benchmark of the synthetic generator: patients/s and rows/s at a given size, and whether two
runs with the same seed are byte-identical (at a small size).

    python benchmarks/bench_synth.py [--patients 50000] [--lab-density modest|mimic] [--check-size 300]

Target (DESIGN.md / issues): at least 10,000 patients per minute on 2 cores, card included (the
realism issue raised every table to MIMIC-III's per-admission volumes); same seed, same bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from medmm.data.synth import generate


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=50_000)
    ap.add_argument("--lab-density", default="modest")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-size", type=int, default=300, help="patients for the determinism check")
    ap.add_argument("--no-card", action="store_true", help="skip the data card's complementarity check")
    ap.add_argument("--keep", help="write here and keep the output instead of a temporary directory")
    a = ap.parse_args(argv)
    density = float(a.lab_density) if a.lab_density.replace(".", "", 1).isdigit() else a.lab_density
    work = Path(tempfile.mkdtemp(prefix="bench_synth-"))
    try:
        out = Path(a.keep) if a.keep else work / "big"
        t0 = time.perf_counter()
        generate(out, n_patients=a.patients, seed=a.seed, lab_density=density, overwrite=bool(a.keep),
                 card=not a.no_card, progress=True)
        dt = time.perf_counter() - t0
        meta = json.loads((out / "synth.json").read_text())
        counts = meta["counts"]
        rows = sum(v for k, v in counts.items() if k.isupper())
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"patients={a.patients:,} lab_density={a.lab_density} seconds={dt:.1f} "
              f"patients/s={a.patients / dt:,.0f} rows={rows:,} rows/s={rows / dt:,.0f} bytes={size:,}")
        per_min = a.patients / dt * 60
        print(f"patients per minute: {per_min:,.0f} (target >= 10,000 on 2 cores: {'met' if per_min >= 10_000 else 'NOT met'})")
        print("rows per table: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
        adm = counts["ADMISSIONS"]
        print(f"per admission: LABEVENTS={counts['LABEVENTS'] / adm:.0f} PRESCRIPTIONS={counts['PRESCRIPTIONS'] / adm:.0f} "
              f"CHARTEVENTS={counts['CHARTEVENTS'] / adm:.0f}")
        if "complementarity" in meta:
            print("complementarity: " + json.dumps(meta["complementarity"]))
        a1 = generate(work / "d1", n_patients=a.check_size, seed=a.seed, lab_density=density, card=False)
        a2 = generate(work / "d2", n_patients=a.check_size, seed=a.seed, lab_density=density, card=False)
        same = _digest(a1) == _digest(a2)
        print(f"byte-identical at {a.check_size} patients, same seed: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
