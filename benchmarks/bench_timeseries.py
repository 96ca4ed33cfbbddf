"""Benchmark the FIDDLE time-series features (`medmm.tasks.timeseries`): wall time, CPU time, peak memory.

Generates N synthetic patients at MIMIC-III lab / chart density (``lab_density="mimic"``), prepares
them (cached in --work), then builds the features of every ICU stay in a child process whose
resident memory is sampled.

    python benchmarks/bench_timeseries.py [--patients 2000] [--chunk-size 2000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_prepare import _rss_mib  # benchmarks run as scripts: their folder is on sys.path

SRC = Path(__file__).resolve().parents[1] / "src"


def build_dataset(work: Path, n_patients: int) -> Path:
    """Synthetic raw files at MIMIC density, prepared (both cached)."""
    sys.path.insert(0, str(SRC))
    from medmm.data.sources import prepare
    from medmm.data.synth import generate

    raw, data = work / f"synth-{n_patients}", work / f"prepared-{n_patients}"
    if not (raw / "synth.json").exists():
        t0 = time.perf_counter()
        generate(raw, n_patients=n_patients, seed=0, lab_density="mimic", card=False, progress=False)
        print(f"generated {n_patients:,} synthetic patients in {time.perf_counter() - t0:.0f}s", flush=True)
    if not (data / "manifest.json").exists():
        t0 = time.perf_counter()
        prepare("mimic3", raw, data, mappings={"dir": raw / "mappings"}, progress=False, overwrite=True)
        print(f"prepared in {time.perf_counter() - t0:.0f}s", flush=True)
    return data


def child(data: str, out: str, chunk_size: int) -> int:
    sys.path.insert(0, str(SRC))
    from medmm.data.schema import load_dataset
    from medmm.tasks.timeseries import TimeSeriesConfig, build_timeseries_features

    f = build_timeseries_features(load_dataset(data), out, TimeSeriesConfig(chunk_size=chunk_size), overwrite=True)
    print(json.dumps({**f.meta["counts"], "shape": list(f.features.shape)}))
    return 0


def run(data: Path, out: Path, chunk_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(data), str(out), str(chunk_size)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, stop = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mib(proc.pid))
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"feature build failed with exit code {proc.returncode}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_sampled_mib": peak, "maxrss_mib": ru.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child(argv[1], argv[2], int(argv[3]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--chunk-size", type=int, default=2000)
    p.add_argument("--work", help="working directory (default: a new temporary directory)")
    a = p.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="medmm-bench-ts-"))
    work.mkdir(parents=True, exist_ok=True)
    data = build_dataset(work, a.patients)
    r = run(data, work / "features", a.chunk_size)
    print(f"\n{a.patients:,} synthetic patients: {r['stays']:,} stays, {r['rows_read']:,} rows read (in [0, T)), "
          f"features {tuple(r['shape'])}, {r['static_features']} static; wall {r['wall_s']:.1f}s, "
          f"CPU {r['cpu_s']:.1f}s, peak RSS {r['peak_rss_sampled_mib']:,.0f} MiB (sampled), maxrss "
          f"{r['maxrss_mib']:,.0f} MiB; chunk {a.chunk_size}, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
