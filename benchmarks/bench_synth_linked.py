"""Benchmark of the linked synthetic world: `medmm synth --format linked`, then `medmm prepare` of both
sources (MIMIC-IV, then MIMIC-CXR-JPG linked to it), each timed in the same run; and whether two
runs with the same seed write byte-identical files, images included.

    python benchmarks/bench_synth_linked.py [--patients 2000] [--image-size 128] [--seeds 0 1 2]
        [--openi ../shared/data/text/NLMCXR_reports.tgz] [--keep DIR]

Target (issue "linked synthetic EHR + X-ray world"): synth + prepare of both at 2,000 patients in
under 4 minutes on 2 cores; same seed, same bytes, for any seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from medmm.data.io import sha256_tree
from medmm.data.sources import prepare
from medmm.data.synth import generate


def run(out: Path, n: int, seed: int, size: int, openi: str | None) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    generate(out / "raw", n_patients=n, seed=seed, fmt="linked", image_size=size, openi=openi, progress=True)
    t["synth"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare("mimic4", out / "raw" / "mimic4", out / "ds_mimic4", mappings={"dir": out / "raw" / "mimic4" / "mappings"},
            progress=False)
    t["prepare mimic4"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare("mimic-cxr", out / "raw" / "mimic-cxr", out / "ds_cxr", progress=False, link_ehr=out / "ds_mimic4")
    t["prepare mimic-cxr (linked)"] = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--openi")
    ap.add_argument("--check-size", type=int, default=200, help="patients of the two same-seed determinism runs")
    ap.add_argument("--keep", help="write here (must not exist) and keep the output")
    a = ap.parse_args(argv)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_linked-"))
    try:
        for seed in a.seeds:
            t = run(work / f"seed{seed}", a.patients, seed, a.image_size, a.openi)
            total = sum(t.values())
            meta = json.loads((work / f"seed{seed}" / "raw" / "synth.json").read_text())
            n = meta["linked_counts"]
            print(f"seed {seed}: {a.patients:,} patients, {n['studies']:,} studies, {n['images']:,} images "
                  f"of {a.image_size} px; " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
                  + f"; total {total:.1f} s (target < 240 s: {'met' if total < 240 else 'NOT met'})")
            for task, rows in meta.get("card", {}).get("criticality", {}).items():
                e = rows["with a study in the first 48 h"]
                fmt = lambda x: "n/a" if x is None else f"{100 * x[0]:.1f}"  # noqa: E731
                print(f"  {task}: {e['stays']} stays ({e['positive']} positive): EHR {fmt(e.get('EHR'))}, "
                      f"image {fmt(e.get('image'))}, EHR + image {fmt(e.get('EHR + image'))}, "
                      f"oracle {100 * e['oracle']:.1f}" if e["oracle"] is not None else f"  {task}: no positives")
        same = []
        for seed in a.seeds:
            d1 = work / f"det{seed}a"
            d2 = work / f"det{seed}b"
            generate(d1, n_patients=a.check_size, seed=seed, fmt="linked", image_size=a.image_size)
            generate(d2, n_patients=a.check_size, seed=seed, fmt="linked", image_size=a.image_size)
            same.append(sha256_tree(d1) == sha256_tree(d2))
        print(f"byte-identical at {a.check_size} patients, same seed, seeds {a.seeds}: {same}")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
