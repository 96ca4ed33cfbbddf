"""Benchmark MIMIC-IV-scale chartevents through `medmm prepare --source mimic4` and the 48-hour
FIDDLE features, beside the decompression floor of the same file.

The public MIMIC-IV demo has no chartevents, and chartevents is what decides whether the MIMIC-IV
source scales (~314 M rows in v2.2, ~433 M in v3.1, ~73 k ICU stays). For each size in --rows this
script builds a release directory (cached in --work): the demo's hosp/ and icu/ files linked as
they are, except patients / admissions / icustays, which are replicated --reps times with shifted
ids (500 x 140 = 70,000 stays at the default), and a synthetic ``icu/chartevents.csv.gz`` of that
many rows in the MIMIC-IV layout (all eleven columns; charttimes inside each stay; MetaVision
vital-sign, GCS and ventilator item ids; ~85% numeric valuenum). Then, one size after the other:

1. the floor: ``gzip -dc chartevents.csv.gz > /dev/null``, the time no reader of a ``.csv.gz``
   can beat (decompression is one thread);
2. ``medmm prepare --source mimic4`` in a child process (every numeric chart row is kept, so the
   measurements sink writes ~0.85 x rows);
3. the 48-hour FIDDLE features of every stay (`medmm.tasks.timeseries`, T = 48, dt = 1) in a
   child process.

Each child's resident memory is sampled every 0.1 s. Printed per size: rows, gz size, floor,
prepare and features wall / CPU seconds, rows/s, peak RSS, and (prepare + features) / floor; then
the trend between sizes and the projection to 314 M rows.

    MEDMM_SHARED_DATA=../shared/data python benchmarks/bench_prepare_mimic4.py \
        [--rows 30000000 60000000] [--reps 500] [--work DIR] [--keep-features]

Goal (issue "MedCSP sources"): peak memory flat in the row count and <= 6 GB; prepare + features
within 3x the floor.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench_prepare import _rss_mib  # benchmarks run as scripts: their folder is on sys.path

SRC = Path(__file__).resolve().parents[1] / "src"
# MetaVision chart items: heart rate, blood pressures, respiratory rate, SpO2, temperature, PEEP set,
# GCS eye / verbal / motor, FiO2, tidal volume.
ITEMS = np.array([220045, 220179, 220180, 220181, 220210, 220277, 223761, 220339, 220739, 223900, 223901,
                  223835, 224685])
UNITS = np.array(["bpm", "mmHg", "mmHg", "mmHg", "insp/min", "%", "°F", "cmH2O", "", "", "", "", "mL"])
HEADER = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
          "valuenum", "valueuom", "warning"]
ID_SHIFT = 100_000_000          # rep k adds k x this to subject_id / hadm_id / stay_id (MIMIC-IV ids: 8 digits)
REPLICATED = {"hosp/patients": ("subject_id",), "hosp/admissions": ("subject_id", "hadm_id"),
              "icu/icustays": ("subject_id", "hadm_id", "stay_id")}


def _write_gz(df: pl.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.write_csv(buf)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(buf.getvalue())


def build_hosp_icu(demo: Path, out: Path, reps: int) -> pl.DataFrame:
    """Link the demo's files, replicate the three REPLICATED tables; return the replicated stays."""
    for module in ("hosp", "icu"):
        (out / module).mkdir(parents=True, exist_ok=True)
        for f in sorted((demo / module).iterdir()):
            stem = f"{module}/{f.name.split('.')[0]}"
            target = out / module / f.name
            if stem in REPLICATED:
                if not target.exists():
                    df = pl.read_csv(f, infer_schema=False)
                    ids = REPLICATED[stem]
                    reps_df = [df.with_columns([(pl.col(c).cast(pl.Int64) + k * ID_SHIFT).cast(pl.String)
                                                for c in ids]) for k in range(reps)]
                    _write_gz(pl.concat(reps_df), target)
            elif not target.exists() and stem != "icu/chartevents":
                target.symlink_to(f.resolve())
    return pl.read_csv(out / "icu" / "icustays.csv.gz", columns=["subject_id", "hadm_id", "stay_id", "intime",
                                                                 "outtime"], try_parse_dates=True)


def build_chartevents(stays: pl.DataFrame, path: Path, n_rows: int, chunk: int = 2_000_000) -> float:
    """A synthetic chartevents of `n_rows` rows over `stays`; returns the seconds it took."""
    start = stays["intime"].dt.epoch("s").to_numpy()
    length = (stays["outtime"].dt.epoch("s").to_numpy() - start).clip(3600, None)
    ids = {c: stays[c].to_numpy() for c in ("subject_id", "hadm_id", "stay_id")}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".part")
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write((",".join(HEADER) + "\n").encode())
        for lo in range(0, n_rows, chunk):
            n = min(chunk, n_rows - lo)
            s = rng.integers(0, stays.height, n)
            item = rng.integers(0, len(ITEMS), n)
            t = start[s] + (rng.random(n) * length[s]).astype(np.int64) // 60 * 60
            numeric = rng.random(n) < 0.85
            value = np.round(rng.normal(80, 15, n), 1)
            df = pl.DataFrame({
                "subject_id": ids["subject_id"][s], "hadm_id": ids["hadm_id"][s], "stay_id": ids["stay_id"][s],
                "caregiver_id": rng.integers(1, 99999, n),
                "charttime": pl.Series(t * 1_000_000).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%d %H:%M:%S"),
                "storetime": None, "itemid": ITEMS[item],
                "value": np.where(numeric, value.astype(str), "Other"),
                "valuenum": np.where(numeric, value, np.nan), "valueuom": UNITS[item], "warning": 0,
            }).with_columns(pl.col("valuenum").fill_nan(None))
            buf = io.BytesIO()
            df.select(HEADER).write_csv(buf, include_header=False)
            f.write(buf.getvalue())
    tmp.rename(path)
    return time.perf_counter() - t0


def build_raw(demo: Path, out: Path, n_rows: int, reps: int) -> Path:
    stays = build_hosp_icu(demo, out, reps)
    chart = out / "icu" / "chartevents.csv.gz"
    if chart.exists():
        print(f"raw directory cached: {out}", flush=True)
    else:
        s = build_chartevents(stays, chart, n_rows)
        print(f"wrote {chart}: {n_rows:,} rows over {stays.height:,} stays, "
              f"{chart.stat().st_size / 2**20:,.0f} MiB gz, {s:.0f}s", flush=True)
    return out


def run_child(cmd: list[str]) -> dict[str, float]:
    """Run `cmd`; wall, CPU (this child only), sampled peak RSS; its last stdout line if JSON."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    peak, stop = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mib(proc.pid))
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed with exit code {proc.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    extra = json.loads(last) if last.startswith("{") else {}
    return {"wall_s": wall, "cpu_s": cpu, "peak_mib": peak, **extra}


def floor(path: Path) -> float:
    """Seconds of `gzip -dc path > /dev/null`."""
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["gzip", "-dc", str(path)], stdout=null, check=True)
    return time.perf_counter() - t0


def features_child(data: str, out: str) -> int:
    from medmm.data.schema import load_dataset
    from medmm.tasks.timeseries import build_timeseries_features

    f = build_timeseries_features(load_dataset(data), out, overwrite=True)
    print(json.dumps({**f.meta["counts"], "shape": list(f.features.shape)}))
    return 0


def measure(raw: Path, work: Path, mappings: Path, n_rows: int, keep: bool) -> dict:
    chart = raw / "icu" / "chartevents.csv.gz"
    r: dict = {"rows": n_rows, "gz_mib": chart.stat().st_size / 2**20, "load_before": os.getloadavg()[0]}
    r["floor_s"] = floor(chart)
    data, feats = work / f"prepared-{n_rows}", work / f"features-{n_rows}"
    r["prepare"] = run_child([sys.executable, "-m", "medmm.cli", "prepare", "--source", "mimic4", "--raw", str(raw),
                              "--out", str(data), "--ndc-rxnorm", str(mappings / "ndc2rxnorm_mapping.txt"),
                              "--drug-atc", str(mappings / "mimic_drug_to_atc.csv.gz"), "--overwrite",
                              "--quiet"])
    r["measurements"] = pl.scan_parquet(data / "measurements.parquet").select(pl.len()).collect().item()
    r["features"] = run_child([sys.executable, __file__, "--features-child", str(data), str(feats)])
    r["load_after"] = os.getloadavg()[0]
    if not keep:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(feats, ignore_errors=True)
    return r


def report(r: dict) -> str:
    p, f = r["prepare"], r["features"]
    total = p["wall_s"] + f["wall_s"]
    return (f"{r['rows']:>12,} rows ({r['gz_mib']:,.0f} MiB gz): floor {r['floor_s']:.1f}s | prepare "
            f"{p['wall_s']:.1f}s wall / {p['cpu_s']:.1f}s CPU, {r['rows'] / p['wall_s'] / 1e6:.2f} M rows/s, peak "
            f"{p['peak_mib']:,.0f} MiB | features {f['wall_s']:.1f}s / {f['cpu_s']:.1f}s CPU "
            f"({f['stays']:,} stays, {f['rows_read']:,} rows in [0, 48 h), shape {tuple(f['shape'])}), peak "
            f"{f['peak_mib']:,.0f} MiB | prepare + features {total:.1f}s = {total / r['floor_s']:.2f}x floor "
            f"| load {r['load_before']:.1f} -> {r['load_after']:.1f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--features-child":
        return features_child(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=os.environ.get("MEDMM_SHARED_DATA"),
                   help="shared data root holding mimic4-demo/ and mappings/ (default: $MEDMM_SHARED_DATA)")
    p.add_argument("--rows", type=int, nargs="+", default=[30_000_000, 60_000_000])
    p.add_argument("--reps", type=int, default=500, help="copies of the demo's patients, admissions and stays")
    p.add_argument("--work", help="working directory (default: a new temporary directory)")
    p.add_argument("--keep-features", action="store_true", help="keep each size's prepared data and features")
    a = p.parse_args(argv)
    if not a.shared:
        p.error("give --shared or set MEDMM_SHARED_DATA")
    shared = Path(a.shared)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="medmm-bench4-"))
    results = []
    for n in sorted(a.rows):
        raw = build_raw(shared / "mimic4-demo", work / f"raw-{n}-x{a.reps}", n, a.reps)
        print(f"measuring {n:,} rows ...", flush=True)
        results.append(measure(raw, work, shared / "mappings", n, a.keep_features))
        print(report(results[-1]), flush=True)
    print(f"\ncores {os.cpu_count()}, polars threads {pl.thread_pool_size()}")
    for r in results:
        print(report(r))
    if len(results) > 1:
        a0, a1 = results[0], results[-1]
        scale = a1["rows"] / a0["rows"]
        for step in ("prepare", "features"):
            print(f"{step}: x{scale:.1f} rows -> wall x{a1[step]['wall_s'] / a0[step]['wall_s']:.2f}, "
                  f"peak memory x{a1[step]['peak_mib'] / a0[step]['peak_mib']:.2f}")
    last = results[-1]
    per_row = (last["prepare"]["wall_s"] + last["features"]["wall_s"]) / last["rows"]
    print(f"projected at 314 M rows (linear from {last['rows']:,}): {per_row * 314e6 / 60:.1f} min prepare + "
          f"features; floor {last['floor_s'] / last['rows'] * 314e6 / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
