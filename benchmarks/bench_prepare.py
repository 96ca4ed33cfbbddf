"""Benchmark `medmm prepare --source mimic3` at MIMIC-III scale: wall time and peak memory.

Builds a MIMIC-III-sized raw directory by replicating the public MIMIC-III demo (100 patients)
`--reps` times with fresh ids (460x ~ 46 k patients, 59 k admissions, 0.8 M diagnoses, 4.8 M
prescriptions, 35 M lab rows), written as ``.csv.gz`` with Polars, then runs the preparation
(with lab events) in a child process and samples its resident memory.

    MEDMM_SHARED_DATA=../shared/data python benchmarks/bench_prepare.py [--reps 460] [--work DIR]
    python benchmarks/bench_prepare.py --synth 46000 [--work DIR]   # synthetic, lab_density="mimic"

With --synth N the raw directory comes from the synthetic generator instead (N patients at
MIMIC-III lab/prescription density, CHARTEVENTS included, its own drug mapping files).
The raw directory is cached in --work (keyed by --reps / --synth) so that re-runs only time
`prepare`.
Target (DESIGN.md "Scale"): <= 60 s and <= 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

# table -> {column: id stride}: each replica adds rep * stride, so ids never collide
# (MIMIC-III ids: SUBJECT_ID < 100 k, HADM_ID 100 k-200 k, ICUSTAY_ID 200 k-300 k).
TABLES: dict[str, dict[str, int]] = {
    "PATIENTS": {"SUBJECT_ID": 100_000},
    "ADMISSIONS": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000},
    "ICUSTAYS": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000, "ICUSTAY_ID": 1_000_000},
    "DIAGNOSES_ICD": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000},
    "PROCEDURES_ICD": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000},
    "PRESCRIPTIONS": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000, "ICUSTAY_ID": 1_000_000},
    "LABEVENTS": {"SUBJECT_ID": 100_000, "HADM_ID": 1_000_000},
    "NOTEEVENTS": {},   # the demo's is header-only; copied as is
}


def build_raw(demo: Path, out: Path, reps: int, level: int = 1) -> Path:
    """Write `reps` id-shifted copies of each demo table into out/X.csv.gz (cached)."""
    marker = out / f".built-{reps}"
    if marker.exists():
        print(f"raw directory cached: {out}")
        return out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, strides in TABLES.items():
        src = demo / f"{name}.csv.gz"
        if not strides:
            (out / src.name).write_bytes(src.read_bytes())
            continue
        # Everything as strings: values are written back exactly as released.
        base = pl.read_csv(src, infer_schema=False)
        n_row = int(base["ROW_ID"].cast(pl.Int64).max()) + 1
        with gzip.open(out / src.name, "wb", compresslevel=level) as f:
            for rep in range(reps):
                shifted = base.with_columns(
                    (pl.col("ROW_ID").cast(pl.Int64) + rep * n_row).cast(pl.String),
                    *[(pl.col(c).cast(pl.Int64) + rep * s).cast(pl.String) for c, s in strides.items()],
                )
                buf = io.BytesIO()
                shifted.write_csv(buf, include_header=rep == 0)
                f.write(buf.getvalue())
        print(f"  wrote {name:<15} {base.height * reps:>12,} rows "
              f"({(out / src.name).stat().st_size / 2**20:,.0f} MiB gz)", flush=True)
    marker.touch()
    print(f"built raw directory in {time.perf_counter() - t0:.0f}s")
    return out


def build_synth(out: Path, n_patients: int) -> Path:
    """Synthetic MIMIC-III raw files at MIMIC density (cached)."""
    if (out / "synth.json").exists():
        print(f"raw directory cached: {out}")
        return out
    from medmm.data.synth import generate

    t0 = time.perf_counter()
    generate(out, n_patients=n_patients, seed=0, lab_density="mimic", card=False, progress=True)
    print(f"generated {n_patients:,} synthetic patients in {time.perf_counter() - t0:.0f}s")
    return out


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_prepare(raw: Path, out: Path, mappings: Path) -> dict[str, float]:
    """Run `medmm prepare` in a child process; wall time, sampled peak RSS, kernel maxrss."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "medmm.cli", "prepare", "--source", "mimic3", "--raw", str(raw),
           "--out", str(out), "--mappings", str(mappings), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mib(proc.pid))
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if rc != 0:
        raise SystemExit(f"prepare failed with exit code {rc}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (all threads) as well as wall time: on a shared machine the wall time depends
    # on the other load; cpu / n_cores is what the run would take with the cores to itself.
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_sampled_mib": peak,
            "maxrss_mib": ru.ru_maxrss / 1024}  # ru_maxrss is KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=os.environ.get("MEDMM_SHARED_DATA"),
                   help="shared data root holding mimic3-demo/ and mappings/ (default: $MEDMM_SHARED_DATA)")
    p.add_argument("--reps", type=int, default=460)
    p.add_argument("--work", help="working directory (default: a new temporary directory)")
    p.add_argument("--level", type=int, default=1, help="gzip level of the generated files")
    p.add_argument("--synth", type=int, metavar="N", help="use N synthetic patients instead of the demo")
    a = p.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="medmm-bench-"))
    if a.synth:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        raw = build_synth(work / f"synth-{a.synth}", a.synth)
        mappings, label = raw / "mappings", f"synthetic {a.synth:,} patients"
    else:
        if not a.shared:
            p.error("give --shared or set MEDMM_SHARED_DATA (or use --synth N)")
        shared = Path(a.shared)
        raw = build_raw(shared / "mimic3-demo", work / f"raw-{a.reps}", a.reps, a.level)
        mappings, label = shared / "mappings", f"demo x{a.reps}"
    gz_mib = sum(f.stat().st_size for f in raw.glob("*.csv.gz")) / 2**20
    print(f"prepare {raw} ({gz_mib:,.0f} MiB gz) with lab events ...", flush=True)
    r = run_prepare(raw, work / "prepared", mappings)
    print(f"\n{label}: wall {r['wall_s']:.1f}s, CPU {r['cpu_s']:.1f}s, peak RSS {r['peak_rss_sampled_mib']:,.0f} MiB "
          f"(sampled), maxrss {r['maxrss_mib']:,.0f} MiB; cores {os.cpu_count()}, "
          f"polars threads {pl.thread_pool_size()}, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
