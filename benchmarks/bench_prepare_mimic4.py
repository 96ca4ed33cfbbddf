"""Benchmark `medmm prepare --source mimic4` with a large icu/chartevents: wall time and peak memory.

The public MIMIC-IV demo has no chartevents, and chartevents is what decides whether the MIMIC-IV
source scales (~314 M rows in v2.2, ~433 M in v3.1). This script builds a release directory from
the demo's hosp/ and icu/ files (symbolic links) plus a synthetic ``icu/chartevents.csv.gz`` of
`--chart-rows` rows in the MIMIC-IV layout (the demo's 140 stays, charttimes inside each stay, the
MetaVision vital-sign and ventilator item ids, ~85% numeric valuenum), then runs the preparation in
a child process and samples its resident memory. Every chart row with a numeric valuenum is kept
(all items), so the measurement sink writes ~0.85 x `--chart-rows` rows.

    MEDMM_SHARED_DATA=../shared/data python benchmarks/bench_prepare_mimic4.py [--chart-rows 20000000] [--work DIR]

The raw directory is cached in --work (keyed by --chart-rows). Peak memory should stay flat as
--chart-rows grows (streaming); time grows linearly, so the full table takes about
314 M / chart-rows times the measured time.
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

import numpy as np
import polars as pl

# MetaVision chart items (heart rate, blood pressures, respiratory rate, SpO2, temperature, PEEP, GCS)
ITEMS = np.array([220045, 220179, 220180, 220181, 220210, 220277, 223761, 220339, 223900, 223901])
UNITS = np.array(["bpm", "mmHg", "mmHg", "mmHg", "insp/min", "%", "°F", "cmH2O", "", ""])
HEADER = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
          "valuenum", "valueuom", "warning"]


def build_raw(demo: Path, out: Path, chart_rows: int, level: int = 1, chunk: int = 2_000_000) -> Path:
    marker = out / f".built-{chart_rows}"
    if marker.exists():
        print(f"raw directory cached: {out}")
        return out
    for module in ("hosp", "icu"):
        (out / module).mkdir(parents=True, exist_ok=True)
        for f in (demo / module).iterdir():
            link = out / module / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    stays = pl.read_csv(demo / "icu" / "icustays.csv.gz", columns=["subject_id", "hadm_id", "stay_id", "intime",
                                                                   "outtime"], try_parse_dates=True)
    start = stays["intime"].dt.epoch("s").to_numpy()
    length = (stays["outtime"].dt.epoch("s").to_numpy() - start).clip(3600, None)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with gzip.open(out / "icu" / "chartevents.csv.gz", "wb", compresslevel=level) as f:
        f.write((",".join(HEADER) + "\n").encode())
        for lo in range(0, chart_rows, chunk):
            n = min(chunk, chart_rows - lo)
            s = rng.integers(0, stays.height, n)
            item = rng.integers(0, len(ITEMS), n)
            t = start[s] + (rng.random(n) * length[s]).astype(np.int64) // 60 * 60
            numeric = rng.random(n) < 0.85
            value = np.round(rng.normal(80, 15, n), 1)
            df = pl.DataFrame({
                "subject_id": stays["subject_id"].to_numpy()[s], "hadm_id": stays["hadm_id"].to_numpy()[s],
                "stay_id": stays["stay_id"].to_numpy()[s], "caregiver_id": rng.integers(1, 99999, n),
                "charttime": pl.Series(t * 1_000_000).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%d %H:%M:%S"),
                "storetime": None, "itemid": ITEMS[item],
                "value": np.where(numeric, value.astype(str), "Other"),
                "valuenum": np.where(numeric, value, np.nan), "valueuom": UNITS[item], "warning": 0,
            }).with_columns(pl.col("valuenum").fill_nan(None))
            buf = io.BytesIO()
            df.select(HEADER).write_csv(buf, include_header=False)
            f.write(buf.getvalue())
    size = (out / "icu" / "chartevents.csv.gz").stat().st_size / 2**20
    print(f"wrote icu/chartevents.csv.gz: {chart_rows:,} rows, {size:,.0f} MiB gz, "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    marker.touch()
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
    """Run `medmm prepare --source mimic4` in a child process; wall, CPU, sampled peak RSS, maxrss."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "medmm.cli", "prepare", "--source", "mimic4", "--raw", str(raw), "--out", str(out),
           "--ndc-rxnorm", str(mappings / "ndc2rxnorm_mapping.txt"),
           "--drug-atc", str(mappings / "mimic_drug_to_atc.csv.gz"), "--overwrite"]
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
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_sampled_mib": peak,
            "maxrss_mib": ru.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=os.environ.get("MEDMM_SHARED_DATA"),
                   help="shared data root holding mimic4-demo/ and mappings/ (default: $MEDMM_SHARED_DATA)")
    p.add_argument("--chart-rows", type=int, default=20_000_000)
    p.add_argument("--work", help="working directory (default: a new temporary directory)")
    p.add_argument("--level", type=int, default=1, help="gzip level of the generated chartevents")
    a = p.parse_args(argv)
    if not a.shared:
        p.error("give --shared or set MEDMM_SHARED_DATA")
    shared = Path(a.shared)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="medmm-bench4-"))
    raw = build_raw(shared / "mimic4-demo", work / f"raw-{a.chart_rows}", a.chart_rows, a.level)
    print(f"prepare {raw} ({a.chart_rows:,} chart rows) ...", flush=True)
    r = run_prepare(raw, work / "prepared", shared / "mappings")
    per_100m = r["wall_s"] / a.chart_rows * 1e8
    print(f"\nMIMIC-IV demo + {a.chart_rows:,} chart rows: wall {r['wall_s']:.1f}s, CPU {r['cpu_s']:.1f}s, "
          f"peak RSS {r['peak_rss_sampled_mib']:,.0f} MiB (sampled), maxrss {r['maxrss_mib']:,.0f} MiB; "
          f"~{per_100m:.0f}s wall per 100 M chart rows at this load; cores {os.cpu_count()}, "
          f"polars threads {pl.thread_pool_size()}, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
