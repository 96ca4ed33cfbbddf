"""FIDDLE-style time-series features for the first T hours of each ICU stay (MedCSP's time series).

Long format (paper-notes, MedCSP "Time series (FIDDLE)"): one row per (stay_id, t, variable,
value / category), t in hours from the stay's ``in_time``, kept for 0 <= t < T; time-invariant
rows have t = null (age, sex, admission type, care unit, hours from admission to ICU).

Variables: ``{source}:{item_id}`` for ``measurements`` (source "lab" / "chart") and ``events``
(source "input" / "procedure" / "output" / "datetime"; t = start_time). Measurements without a
stay id (lab events carry only the admission) are given to the stays of their admission whose
window holds them, as FIDDLE does. A row without a value (datetime events) only marks presence.

Featurisation (FIDDLE ``FIDDLE_steps_2.py``), everything fitted on the TRAINING stays only
(`medmm.tasks.splits.with_split`, by patient, `TimeSeriesConfig.split_seed`):

1. θ1: drop variables present in <= θ1 of the training stays.
2. Per bin of width dt (T / dt bins): for each variable a presence mask; for numeric variables
   the `statistics` of its values in the bin (last / min / max / mean); for the frequent numeric
   variables (>= `theta_freq` rows per bin per training stay, on average; FIDDLE's
   ``theta_freq``) the time since the last measurement, in bins (FIDDLE's ``delta_time``: 0 in a
   bin with a measurement and before the first one). Each of these numbers is cut into quintiles
   with edges from the training stays' bins (linear quantiles at 0.2 .. 0.8, duplicate edges
   dropped as pandas ``qcut(duplicates="drop")``; x <= e1 is q1, e1 < x <= e2 is q2, ...) and
   one-hot encoded (missing = all zeros). Categorical values (strings) are one-hot per category
   seen in training. Static variables likewise (numeric: quintiles).
3. θ2: drop features non-zero in <= θ2 of the training stays, then exact duplicate columns (equal
   over all training stays and bins; the first in candidate order is kept: variables by name, then
   mask, delta time, statistics in config order, categories), detected with two 64-bit
   fingerprints per column.

Not (yet) FIDDLE's: microbiology events (no canonical table holds them); FIDDLE fits on every
stay, this on the training stays. The canonical measurements / events hold numbers only, so
time-dependent categorical values arise only if `long_format` is given string rows (``category``).

Out of core, in passes: (0) one streaming pass over measurements and events keeps the rows in
[0, T) of every stay and writes them to scratch Parquet partitioned by chunk of `chunk_size`
stays; (1) per chunk, read in stay ranges of at most `chunk_rows` rows, the binned aggregates
(variables as integer codes) go to scratch Parquet, with the training counts and delta-time
histograms; the quintile edges are linear quantiles (Polars; numpy's "linear" method up to the
last bit) of the training bins, a batch of variables at a time (at most `edge_batch_values`
aggregates held); (2) per chunk, the non-zero entries and the θ2 / duplicate counts; (3) the
dense tensor, a chunk at a time, appended to ``features.npy``. Peak memory is bounded by
`chunk_rows`, `edge_batch_values` and one chunk's dense block (chunk_size x T/dt x F bytes), not
by the table's size (`benchmarks/bench_prepare_mimic4.py` measures it at MIMIC-IV scale). Every
stay of ``stays`` is featurised; a task selects its cohort's rows by ``stay_ids``.

Output directory (`build_timeseries_features`, written atomically): ``features.npy`` (stays x
T/dt x F, uint8), ``static.npy`` (stays x F_s, uint8), ``stay_ids.npy`` (int64, sorted),
``feature_names.json`` ({"time": [...], "static": [...]}), ``config.json`` (the config, the
quintile edges, counts). `TimeSeriesFeatures` reads it back memory-mapped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmm.data.io import atomic_dir
from medmm.data.schema import CanonicalDataset
from medmm.tasks.splits import with_split

STATISTICS = ("last", "min", "max", "mean")
DELTA = "delta_time"                       # FIDDLE's time since last measurement, in bins
QUANTILES = (0.2, 0.4, 0.6, 0.8)           # quintiles
_HOUR_US = 3600e6
_YEAR_US = 365.25 * 86400e6
STATIC_NUMERIC = ("age", "admit_to_icu_hours")
STATIC_CATEGORICAL = ("sex", "admission_type", "care_unit")


@dataclass
class TimeSeriesConfig:
    """What `build_timeseries_features` computes. Round-trips through ``config.json``."""

    T: float = 48.0
    dt: float = 1.0
    theta1: float = 0.05
    theta2: float = 0.001
    statistics: tuple[str, ...] = STATISTICS
    chunk_size: int = 2000
    split_seed: int = 0
    use_events: bool = True          # events table (inputs, procedures, outputs, datetimes) too
    time_since_last: bool = True     # FIDDLE's delta time for the frequent numeric variables
    theta_freq: float = 1.0          # frequent: >= theta_freq measurements per bin per stay, on average
    chunk_rows: int = 2_000_000      # rows read at once: a chunk with more is read in pieces
    edge_batch_values: int = 8_000_000   # training aggregates held at once for the quintile edges

    def __post_init__(self) -> None:
        self.statistics = tuple(self.statistics)
        bad = [s for s in self.statistics if s not in STATISTICS]
        if bad:
            raise ValueError(f"unknown statistics {bad}; choose from {list(STATISTICS)}")
        if self.T <= 0 or self.dt <= 0 or abs(self.T / self.dt - round(self.T / self.dt)) > 1e-9:
            raise ValueError(f"T / dt must be a positive whole number, got T={self.T}, dt={self.dt}")
        for name in ("chunk_size", "chunk_rows", "edge_batch_values"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n_bins(self) -> int:
        return int(round(self.T / self.dt))


# ---- the long format ------------------------------------------------------------------------------

def stay_frame(dataset: CanonicalDataset, split_seed: int = 0) -> pl.DataFrame:
    """One row per ICU stay (sorted by stay_id): ids, in_time, split, and the static variables."""
    stays = dataset.scan("stays").select("stay_id", "visit_id", "patient_id", "in_time", "care_unit")
    visits = dataset.scan("visits").select("visit_id", "admit_time", "admission_type")
    patients = dataset.scan("patients").select("patient_id", "sex", "birth_time")
    df = (stays.join(visits, on="visit_id", how="left").join(patients, on="patient_id", how="left")
          .with_columns(((pl.col("in_time") - pl.col("birth_time")).dt.total_microseconds() / _YEAR_US).alias("age"),
                        ((pl.col("in_time") - pl.col("admit_time")).dt.total_microseconds() / _HOUR_US)
                        .alias("admit_to_icu_hours"))
          .sort("stay_id").collect())
    return with_split(df, seed=split_seed).sort("stay_id")


def static_long(stays: pl.DataFrame) -> pl.DataFrame:
    """The time-invariant rows of the long format (t = null)."""
    parts = [stays.select("stay_id", pl.lit(None, pl.Float64).alias("t"), pl.lit(v).alias("variable"),
                          pl.col(v).cast(pl.Float64).alias("value"), pl.lit(None, pl.String).alias("category"))
             for v in STATIC_NUMERIC]
    parts += [stays.select("stay_id", pl.lit(None, pl.Float64).alias("t"), pl.lit(v).alias("variable"),
                           pl.lit(None, pl.Float64).alias("value"), pl.col(v).cast(pl.String).alias("category"))
              for v in STATIC_CATEGORICAL]
    return pl.concat(parts).filter(pl.col("value").is_not_null() | pl.col("category").is_not_null())


def long_format(dataset: CanonicalDataset, stays: pl.DataFrame, config: TimeSeriesConfig,
                carry: tuple[str, ...] = ()) -> pl.LazyFrame:
    """The time-dependent rows (0 <= t < T) of the given stays, lazily: stay_id, t (hours), bin
    (t // dt), variable, value, category, then the `carry` columns of `stays`. `stays` needs
    stay_id, visit_id, in_time."""
    ids = stays["stay_id"].implode()
    keys = stays.lazy().select("stay_id", "visit_id", "in_time", *carry)
    on_stay = keys.select("stay_id", "in_time", *carry)
    m = dataset.scan("measurements").select("stay_id", "visit_id", "time", "item_id", "source", "value")
    # Rows with a stay id go to that stay; lab rows (no stay id) to their admission's stays.
    cols = ("stay_id", "in_time", "time", "item_id", "source", "value", *carry)
    with_stay = m.filter(pl.col("stay_id").is_in(ids)).join(on_stay, on="stay_id", how="inner")
    no_stay = (m.filter(pl.col("stay_id").is_null() & pl.col("visit_id").is_in(stays["visit_id"].implode()))
               .drop("stay_id").join(keys, on="visit_id", how="inner"))
    parts = [with_stay.select(cols), no_stay.select(cols)]
    if config.use_events:
        ev = (dataset.scan("events").filter(pl.col("stay_id").is_in(ids))
              .select("stay_id", pl.col("start_time").alias("time"), "item_id", "source", "value")
              .join(on_stay, on="stay_id", how="inner"))
        parts.append(ev.select(cols))
    # The window and the bins in whole microseconds, so that a row at exactly k * dt is in bin k.
    us = (pl.col("time") - pl.col("in_time")).dt.total_microseconds()
    bin_us, T_us = int(round(config.dt * _HOUR_US)), int(round(config.T * _HOUR_US))
    return (pl.concat(parts).with_columns(us.alias("us"))
            .filter((pl.col("us") >= 0) & (pl.col("us") < T_us))
            .select("stay_id", (pl.col("us") / _HOUR_US).alias("t"),
                    (pl.col("us") // bin_us).cast(pl.Int32).alias("bin"),
                    (pl.col("source") + ":" + pl.col("item_id").cast(pl.String)).alias("variable"),
                    "value", pl.lit(None, pl.String).alias("category"), *carry))


def _binned(long: pl.DataFrame, config: TimeSeriesConfig, key: str = "variable"
            ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (stay, bin, variable): the numeric statistics (null when no value) and the number of
    rows ``n``; separately, the categories present. `key`: the variable column (names, or the
    builder's integer codes)."""
    # Sorted by time (then value, for ties) so that "last" is the latest value, deterministically
    # (where the nulls sort does not matter: "last" drops them, and nulls last sorts 3x slower).
    df = long.sort("stay_id", key, "t", "value")
    v = pl.col("value")
    stat = {"last": v.drop_nulls().last(),
            "min": v.min(), "max": v.max(), "mean": v.mean()}
    num = (df.group_by("stay_id", "bin", key, maintain_order=True)
           .agg(*[stat[s].alias(s) for s in config.statistics], pl.len().cast(pl.Int32).alias("n")))
    cat = (df.filter(pl.col("category").is_not_null()).select("stay_id", "bin", key, "category").unique()
           .sort("stay_id", "bin", key, "category"))
    return num, cat


# ---- fitting on the training stays ---------------------------------------------------------------

def _quantile_edges(x: np.ndarray) -> list[float]:
    """Quintile edges of x, pandas qcut(duplicates="drop") style: linear quantiles at 0.2 .. 0.8
    (`QUANTILES`), repeated edges once."""
    return sorted(set(pl.Series(x, dtype=pl.Float64).quantile(p, "linear") for p in QUANTILES))


def _fingerprint_weights(rows: np.ndarray, salt: int) -> np.ndarray:
    """A pseudo-random uint64 per global row index (splitmix64), for the duplicate-column test."""
    x = rows.astype(np.uint64) + np.uint64(salt)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class _Selector:
    """Counts training stays with a non-zero feature and fingerprints each feature's training
    column, to apply θ2 and drop duplicates."""

    def __init__(self, n_features: int):
        self.nonzero = np.zeros(n_features, dtype=np.int64)
        self.fp = np.zeros((2, n_features), dtype=np.uint64)

    def add(self, nz: np.ndarray, train_mask: np.ndarray, train_pos: np.ndarray, n_bins: int) -> None:
        """Count the training entries of `nz` ((3, n) pos / bin / feat, each entry once):
        `train_mask` / `train_pos` say which stay positions are training stays and where."""
        is_tr = train_mask[nz[0]]
        if not is_tr.any():
            return
        stay_pos, feat = train_pos[nz[0][is_tr]], nz[2][is_tr].astype(np.int64)
        row = stay_pos * n_bins + nz[1][is_tr]                 # global training row: stay x bins + bin
        lo = int(stay_pos.min())
        seen = np.zeros((int(stay_pos.max()) - lo + 1, self.nonzero.size), dtype=bool)     # (stay, feature)
        seen[stay_pos - lo, feat] = True
        self.nonzero += seen.sum(axis=0)
        # Per feature, the wrapping uint64 sum of its entries' weights, as exact float64 bincounts of
        # the 32-bit halves over pieces of < 2^21 entries (so that every partial sum is < 2^53).
        step = 1 << 20
        with np.errstate(over="ignore"):
            for k, salt in enumerate((0x5EED, 0xC0FFEE)):
                w = _fingerprint_weights(row, salt)
                for a in range(0, w.size, step):
                    halves = [np.bincount(feat[a:a + step], weights=(h & np.uint64(0xFFFFFFFF)).astype(np.float64),
                                          minlength=self.fp.shape[1]).astype(np.uint64)
                              for h in (w[a:a + step], w[a:a + step] >> np.uint64(32))]
                    self.fp[k] += halves[0] + (halves[1] << np.uint64(32))

    def keep(self, n_train: int, theta2: float) -> np.ndarray:
        """Indices kept: non-zero in > θ2 of training stays, first of each duplicate group."""
        ok = self.nonzero > theta2 * n_train
        seen: set[tuple[int, int]] = set()
        kept = []
        for j in np.flatnonzero(ok):
            key = (int(self.fp[0, j]), int(self.fp[1, j]))
            if key not in seen:
                seen.add(key)
                kept.append(int(j))
        return np.asarray(kept, dtype=np.int64)


@dataclass
class _Candidates:
    """The candidate time-dependent features before θ2: names and, per variable code, where its
    features start (arrays indexed by the builder's variable codes; -1 = none)."""

    names: list[str]
    mask: np.ndarray             # code -> feat of its mask
    base: np.ndarray             # (code, statistic) -> feat of its q1
    edges: np.ndarray            # (code, statistic, 4) inner quintile edges, padded with +inf
    delta_base: np.ndarray       # code -> feat of its delta_time q1
    delta_edges: np.ndarray      # (code, 4)
    cats: pl.DataFrame           # (var, category) -> feat


def _candidates(variables: list[str], code_of: dict[str, int], n_codes: int, stat_edges: dict[tuple, list[float]],
                cats_of: dict[str, list[str]], statistics: tuple[str, ...]) -> _Candidates:
    """Per variable (by name): mask, its delta time's quintiles (frequent variables), each
    statistic's quintiles, then its categories."""
    names: list[str] = []
    mask = np.full(n_codes, -1, dtype=np.int64)
    base = np.full((n_codes, len(statistics)), -1, dtype=np.int64)
    edges = np.full((n_codes, len(statistics), len(QUANTILES)), np.inf)
    delta_base = np.full(n_codes, -1, dtype=np.int64)
    delta_edges = np.full((n_codes, len(QUANTILES)), np.inf)
    cats: dict[tuple[int, str], int] = {}
    for var in variables:
        c = code_of[var]
        mask[c] = len(names)
        names.append(f"{var}:mask")
        for j, s in [(-1, DELTA)] + list(enumerate(statistics)):
            e = stat_edges.get((var, s))
            if e is None:                # no value of this statistic in training (or not frequent)
                continue
            if j < 0:
                delta_base[c], delta_edges[c, :len(e)] = len(names), e
            else:
                base[c, j], edges[c, j, :len(e)] = len(names), e
            names += [f"{var}:{s}:q{q + 1}" for q in range(len(e) + 1)]
        for cat in cats_of.get(var, []):
            cats[(c, cat)] = len(names)
            names.append(f"{var}:{cat}")
    return _Candidates(names=names, mask=mask, base=base, edges=edges, delta_base=delta_base,
                       delta_edges=delta_edges, cats=pl.DataFrame(
        {"var": [k[0] for k in cats], "category": [k[1] for k in cats], "feat": list(cats.values())},
        schema={"var": pl.Int32, "category": pl.String, "feat": pl.Int64}))


def _delta_entries(seen: np.ndarray, cand: _Candidates, codes: np.ndarray, first: int) -> np.ndarray:
    """The delta-time entries of one chunk: `seen` (stays, len(codes), B) presence of the frequent
    variables `codes` -> (3, n) int32 pos / bin / feat, one quintile per stay, variable and bin."""
    n, k, B = seen.shape
    d = _bins_since_last(seen)
    q = (d[..., None] > cand.delta_edges[codes][None, :, None, :]).sum(axis=-1)        # (n, k, B)
    feat = cand.delta_base[codes][None, :, None] + q
    pos = np.broadcast_to((first + np.arange(n))[:, None, None], feat.shape)
    b = np.broadcast_to(np.arange(B)[None, None, :], feat.shape)
    return np.stack([pos.ravel(), b.ravel(), feat.ravel()]).astype(np.int32)


def _nonzero(num: pl.DataFrame, cat: pl.DataFrame, cand: _Candidates, chunk_ids: np.ndarray, first: int,
             statistics: tuple[str, ...]) -> np.ndarray:
    """The non-zero entries of one chunk's binned aggregates: (3, n) int32 rows pos / bin / feat,
    each entry once, in no particular order. `chunk_ids`: the chunk's sorted stay ids, the first
    at position `first`."""
    pos = first + np.searchsorted(chunk_ids, num["stay_id"].to_numpy())
    b, var = num["bin"].to_numpy(), num["var"].to_numpy().astype(np.int64)
    parts = []
    m = cand.mask[var]
    ok = m >= 0
    parts.append(np.stack([pos[ok], b[ok], m[ok]]))
    for j, s in enumerate(statistics):
        x = num[s].to_numpy(allow_copy=True).astype(np.float64)         # null -> NaN
        base = cand.base[var, j]
        ok = ~np.isnan(x) & (base >= 0)
        q = (x[ok, None] > cand.edges[var[ok], j]).sum(axis=1)
        parts.append(np.stack([pos[ok], b[ok], base[ok] + q]))
    c = cat.join(cand.cats, on=["var", "category"])
    parts.append(np.stack([first + np.searchsorted(chunk_ids, c["stay_id"].to_numpy()), c["bin"].to_numpy(),
                           c["feat"].to_numpy()]))
    return np.concatenate([p.astype(np.int32) for p in parts], axis=1)


def _edge_batches(counts: dict[int, int], budget: int) -> list[list[int]]:
    """Variable codes in batches whose training values number <= `budget` (a variable with more
    is a batch of its own): the quintile edges are computed one batch at a time."""
    batches: list[list[int]] = [[]]
    total = 0
    for code, k in sorted(counts.items()):
        if batches[-1] and total + k > budget:
            batches.append([])
            total = 0
        batches[-1].append(code)
        total += k
    return [b for b in batches if b]


def _sub_ranges(stay_ids: pl.Series, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive stay-id ranges [lo, hi] of one chunk's rows, each <= max_rows rows (a stay
    with more is a range of its own), so that a chunk is read in pieces of bounded size."""
    counts = stay_ids.value_counts(name="n").sort(stay_ids.name)
    ids, n = counts[stay_ids.name].to_numpy(), counts["n"].to_numpy()
    ranges, start, total = [], 0, 0
    for k in range(len(ids)):
        if k > start and total + n[k] > max_rows:
            ranges.append((int(ids[start]), int(ids[k - 1])))
            start, total = k, 0
        total += int(n[k])
    if len(ids):
        ranges.append((int(ids[start]), int(ids[-1])))
    return ranges


def _bins_since_last(present: np.ndarray) -> np.ndarray:
    """FIDDLE's delta time per bin from a (..., B) presence mask: bins since the last bin with a
    measurement (0 in a bin with one, and 0 before the first), as int16."""
    B = present.shape[-1]
    idx = np.where(present, np.arange(B, dtype=np.int16), np.int16(-1))
    last = np.maximum.accumulate(idx, axis=-1)
    return np.where(last >= 0, np.arange(B, dtype=np.int16) - last, 0).astype(np.int16)


def _histogram_quantiles(counts: np.ndarray) -> list[float]:
    """Linear quantiles at `QUANTILES` of the multiset {value d with multiplicity counts[d]}, as
    np.quantile of the expanded values (integers 0 .. len(counts) - 1) gives them."""
    cum = np.cumsum(counts)
    N = int(cum[-1])
    out = []
    for q in QUANTILES:
        h = (N - 1) * q
        lo, hi = int(np.floor(h)), int(np.ceil(h))
        v_lo, v_hi = np.searchsorted(cum, lo, "right"), np.searchsorted(cum, hi, "right")
        out.append(float(v_lo + (h - lo) * (v_hi - v_lo)))
    return out


@dataclass
class _Unit:
    """A piece of one chunk: its stays with ids in [lo, hi]."""

    chunk: int
    index: int
    lo: int
    hi: int

    @property
    def tag(self) -> str:
        return f"{self.chunk:05d}-{self.index:03d}"


# ---- building ---------------------------------------------------------------------------------------

def build_timeseries_features(dataset: CanonicalDataset, out: str | Path, config: TimeSeriesConfig | None = None,
                              overwrite: bool = False, log: Callable[[str], None] | None = None
                              ) -> "TimeSeriesFeatures":
    """Build the FIDDLE features of every ICU stay of `dataset` into directory `out` (module
    docstring) and return them memory-mapped."""
    cfg = config or TimeSeriesConfig()
    say = log or (lambda s: None)
    stays = stay_frame(dataset, cfg.split_seed)
    n, B = stays.height, cfg.n_bins
    train = stays["split"] == "train"
    n_train = int(train.sum())
    if n_train == 0:
        raise ValueError(f"{dataset.path}: no training stays (split seed {cfg.split_seed}); cannot fit features")
    train_mask = train.to_numpy()
    train_pos = np.cumsum(train_mask) - 1                  # position among training stays
    chunks = [stays.slice(i, cfg.chunk_size) for i in range(0, n, cfg.chunk_size)]
    rows_read = 0
    clock = time.perf_counter()

    def took() -> str:
        return f"{time.perf_counter() - clock:.1f}s"

    with atomic_dir(out, overwrite=overwrite) as tmp:
        scratch = tmp / "_scratch"
        scratch.mkdir()
        # Pass 0: one streaming pass over measurements and events: the rows in [0, T), partitioned
        # by chunk of stays (so that no chunk rescans the tables).
        by_chunk = stays.select("stay_id", "visit_id", "in_time",
                                (pl.int_range(pl.len()) // cfg.chunk_size).cast(pl.Int32).alias("chunk"))
        lf = long_format(dataset, by_chunk, cfg, carry=("chunk",))
        empty = pl.DataFrame(schema=lf.drop("chunk").collect_schema())
        lf.sink_parquet(pl.PartitionBy(scratch / "long", key="chunk", include_key=False), engine="streaming",
                        mkdir=True)
        say(f"timeseries: rows in [0, {cfg.T:g} h) of {n:,} stays partitioned into {len(chunks)} chunks ({took()})")

        # Pass 1: per unit (a chunk, or a piece of one with <= chunk_rows rows), the binned
        # aggregates with the variables as integer codes (in order of first appearance; names
        # are sorted later), and on the training stays: stays and rows per variable, and the
        # histogram of bins since the last measurement.
        code_of: dict[str, int] = {}
        present: dict[int, int] = {}        # code -> training stays with the variable
        n_rows: dict[int, int] = {}         # code -> training rows
        n_values: dict[int, int] = {}       # code -> training (stay, bin) aggregates
        delta_hist = np.zeros((0, B), dtype=np.int64)      # code -> histogram over 0 .. B - 1
        units: list[list[_Unit]] = []
        for i, ch in enumerate(chunks):
            part = scratch / "long" / f"chunk={i}"
            if not part.is_dir():
                units.append([])
                continue
            ranges = _sub_ranges(pl.read_parquet(part, columns=["stay_id"])["stay_id"], cfg.chunk_rows)
            units.append([_Unit(i, j, lo, hi) for j, (lo, hi) in enumerate(ranges)])
            train_ids = ch.filter(pl.col("split") == "train").select("stay_id")
            for u in units[-1]:
                long = pl.scan_parquet(part).filter(pl.col("stay_id").is_between(u.lo, u.hi)).collect()
                rows_read += long.height
                for name in sorted(set(long["variable"].unique().to_list()) - set(code_of)):
                    code_of[name] = len(code_of)
                var = pl.col("variable").replace_strict(code_of, return_dtype=pl.Int32) if code_of else pl.lit(0)
                long = long.with_columns(var.cast(pl.Int32).alias("var")).drop("variable")
                num, cat = _binned(long, cfg, key="var")
                num.write_parquet(scratch / f"num-{u.tag}.parquet")
                cat.write_parquet(scratch / f"cat-{u.tag}.parquet")
                tr = num.join(train_ids, on="stay_id", how="semi")
                per_var = tr.group_by("var").agg(pl.col("stay_id").n_unique(), pl.len(), pl.col("n").sum())
                for code, k, m, r in per_var.iter_rows():
                    present[code] = present.get(code, 0) + int(k)
                    n_values[code] = n_values.get(code, 0) + int(m)
                    n_rows[code] = n_rows.get(code, 0) + int(r)
                if cfg.time_since_last and tr.height:
                    if delta_hist.shape[0] < len(code_of):
                        delta_hist = np.vstack([delta_hist, np.zeros((len(code_of) - delta_hist.shape[0], B),
                                                                     dtype=np.int64)])
                    g, inv = np.unique(tr["stay_id"].to_numpy().astype(np.int64) * len(code_of)
                                       + tr["var"].to_numpy(), return_inverse=True)
                    mask = np.zeros((g.size, B), dtype=bool)
                    mask[inv, tr["bin"].to_numpy()] = True
                    flat = ((g % len(code_of))[:, None] * B + _bins_since_last(mask)).ravel()
                    delta_hist += np.bincount(flat, minlength=delta_hist.size).reshape(delta_hist.shape)
            say(f"timeseries: pass 1, chunk {i + 1}/{len(chunks)} ({len(units[-1])} unit(s))")
        shutil.rmtree(scratch / "long", ignore_errors=True)     # absent when no stay has a row
        say(f"timeseries: pass 1 done ({took()})")
        name_of = {c: v for v, c in code_of.items()}
        variables = sorted(name_of[c] for c, k in present.items() if k > cfg.theta1 * n_train)
        kept_codes = [code_of[v] for v in variables]

        # Quintile edges per (variable, statistic) over the training bins, a batch of variables at
        # a time so that memory is bounded by `edge_batch_values`, not by the table.
        train_ids = stays.filter(pl.col("split") == "train").select("stay_id").lazy()
        num_train = pl.scan_parquet(scratch / "num-*.parquet").join(train_ids, on="stay_id", how="semi")
        stat_edges: dict[tuple[str, str], list[float]] = {}
        for batch in _edge_batches({c: n_values[c] for c in kept_codes}, cfg.edge_batch_values):
            q = (num_train.filter(pl.col("var").is_in(batch)).group_by("var")
                 .agg([pl.col(s).filter(pl.col(s).is_not_nan()).quantile(p, "linear").alias(f"{s}@{p}")
                       for s in cfg.statistics for p in QUANTILES]).collect(engine="streaming"))
            for row in q.iter_rows(named=True):
                for s in cfg.statistics:
                    e = [row[f"{s}@{p}"] for p in QUANTILES]
                    if e[0] is not None:             # no value of this statistic in training: no edges
                        stat_edges[(name_of[row["var"]], s)] = sorted(set(e))
        # Time since last measurement (FIDDLE): for the frequent numeric variables, >= theta_freq
        # measurements per bin per training stay on average; its edges from the histogram, where
        # each training stay without the variable adds B bins of 0.
        frequent = [v for v in variables if cfg.time_since_last and any((v, s) in stat_edges for s in cfg.statistics)
                    and n_rows.get(code_of[v], 0) >= cfg.theta_freq * B * n_train]
        for v in frequent:
            h = delta_hist[code_of[v]].copy()
            h[0] += (n_train - present[code_of[v]]) * B
            stat_edges[(v, DELTA)] = sorted(set(_histogram_quantiles(h)))
        cats = (pl.scan_parquet(scratch / "cat-*.parquet").filter(pl.col("var").is_in(kept_codes))
                .join(train_ids, on="stay_id", how="semi").select("var", "category").unique().collect()
                if kept_codes else pl.DataFrame(schema={"var": pl.Int32, "category": pl.String}))
        cats_of: dict[str, list[str]] = {}
        for c, cat in cats.iter_rows():
            cats_of.setdefault(name_of[c], []).append(cat)
        cats_of = {v: sorted(cs) for v, cs in cats_of.items()}

        cand = _candidates(variables, code_of, len(code_of), stat_edges, cats_of, cfg.statistics)
        names = cand.names
        say(f"timeseries: quintile edges of {len(stat_edges)} statistics, {len(frequent)} frequent variables "
            f"({took()})")

        # Pass 2: non-zero entries (stay, bin, feature) per unit, and per chunk the time since
        # last measurement of the frequent variables; θ2 counts on training stays.
        sel = _Selector(len(names))
        freq_codes = np.asarray([code_of[v] for v in frequent], dtype=np.int64)
        slot_of = np.full(len(code_of), -1, dtype=np.int64)             # code -> its slot in freq_codes
        slot_of[freq_codes] = np.arange(freq_codes.size)
        for i, ch in enumerate(chunks):
            ids, first = ch["stay_id"].to_numpy(), i * cfg.chunk_size
            seen = np.zeros((ch.height, len(frequent), B), dtype=bool)
            for u in units[i]:
                num = pl.read_parquet(scratch / f"num-{u.tag}.parquet")
                cat = pl.read_parquet(scratch / f"cat-{u.tag}.parquet")
                nz = _nonzero(num, cat, cand, ids, first, cfg.statistics)
                np.save(scratch / f"nz-{u.tag}.npy", nz)
                sel.add(nz, train_mask, train_pos, B)
                if freq_codes.size:
                    slot = slot_of[num["var"].to_numpy()]
                    ok = slot >= 0
                    stay = np.searchsorted(ids, num["stay_id"].to_numpy()[ok])
                    seen[stay, slot[ok], num["bin"].to_numpy()[ok]] = True
            if freq_codes.size:
                nz = _delta_entries(seen, cand, freq_codes, first)
                np.save(scratch / f"nz-{i:05d}-delta.npy", nz)
                sel.add(nz, train_mask, train_pos, B)
        keep = sel.keep(n_train, cfg.theta2)
        say(f"timeseries: pass 2, {keep.size} of {len(names)} features kept ({took()})")
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        time_names = [names[j] for j in keep]

        # Pass 3: the dense tensor, a chunk at a time, appended to the .npy (read back memory-mapped).
        with open(tmp / "features.npy", "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(np.uint8).str, "fortran_order": False,
                                                      "shape": (n, B, int(keep.size))})
            for i, ch in enumerate(chunks):
                block = np.zeros((ch.height, B, keep.size), dtype=np.uint8)
                files = [scratch / f"nz-{u.tag}.npy" for u in units[i]]
                files += [scratch / f"nz-{i:05d}-delta.npy"] if freq_codes.size else []
                for path in files:
                    pos, b, f = np.load(path)
                    f = remap[f]
                    ok = f >= 0
                    block[pos[ok] - i * cfg.chunk_size, b[ok], f[ok]] = 1
                block.tofile(fh)
        shutil.rmtree(scratch)

        static, static_names, static_edges = _static_features(stays, cfg, n_train)
        np.save(tmp / "static.npy", static)
        np.save(tmp / "stay_ids.npy", stays["stay_id"].to_numpy().astype(np.int64))
        (tmp / "feature_names.json").write_text(json.dumps({"time": time_names, "static": static_names}, indent=1))
        meta = {"config": {**asdict(cfg), "statistics": list(cfg.statistics)},
                "quantiles": list(QUANTILES),
                "edges": {f"{v}:{s}": e for (v, s), e in sorted(stat_edges.items())},
                "static_edges": static_edges,
                "frequent_variables": frequent,
                "counts": {"stays": n, "train_stays": n_train, "rows_read": rows_read,
                           "variables_seen": len(present), "variables_kept": len(variables),
                           "frequent_variables": len(frequent),
                           "time_features_candidates": len(names), "time_features": len(time_names),
                           "static_features": len(static_names)}}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        say(f"timeseries: {n} stays, {rows_read:,} rows, {len(variables)}/{len(present)} variables kept "
            f"({len(frequent)} frequent), {len(time_names)} time features, {len(static_names)} static features "
            f"({took()})")
    return TimeSeriesFeatures(out)


def _static_features(stays: pl.DataFrame, cfg: TimeSeriesConfig, n_train: int
                     ) -> tuple[np.ndarray, list[str], dict[str, list[float]]]:
    """One-hot static features (stays x F_s), their names and the numeric variables' edges."""
    tr = stays.filter(pl.col("split") == "train")
    cols: list[np.ndarray] = []
    names: list[str] = []
    edges_out: dict[str, list[float]] = {}
    for var in sorted(STATIC_NUMERIC + STATIC_CATEGORICAL):
        if tr[var].is_not_null().sum() <= cfg.theta1 * n_train:        # θ1
            continue
        if var in STATIC_NUMERIC:
            x_tr = tr[var].cast(pl.Float64).drop_nulls().to_numpy()
            edges_out[var] = _quantile_edges(x_tr) if x_tr.size else []
            x = stays[var].cast(pl.Float64).to_numpy()
            valid = ~np.isnan(x)
            q = (x[:, None] > np.asarray(edges_out[var] or [np.inf])[None, :]).sum(1)
            for j in range(len(edges_out[var]) + 1):
                cols.append(valid & (q == j))
                names.append(f"{var}:q{j + 1}")
        else:
            vals = stays[var].cast(pl.String)
            for c in sorted(tr[var].drop_nulls().unique().to_list()):
                cols.append((vals == c).fill_null(False).to_numpy())
                names.append(f"{var}:{c}")
    mat = np.stack(cols, axis=1).astype(np.uint8) if cols else np.zeros((stays.height, 0), np.uint8)
    is_tr = (stays["split"] == "train").to_numpy()
    keep, seen = [], set()
    for j in range(mat.shape[1]):                                       # θ2, then duplicates
        col = mat[is_tr, j]
        if col.sum() <= cfg.theta2 * n_train:
            continue
        key = col.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(j)
    return np.ascontiguousarray(mat[:, keep]), [names[j] for j in keep], edges_out


# ---- reading ---------------------------------------------------------------------------------------

@dataclass
class TimeSeriesFeatures:
    """A feature directory, memory-mapped: features (stays, T/dt, F), static (stays, F_s)."""

    path: Path
    features: np.ndarray = field(init=False, repr=False)
    static: np.ndarray = field(init=False, repr=False)
    stay_ids: np.ndarray = field(init=False, repr=False)
    feature_names: list[str] = field(init=False, repr=False)
    static_names: list[str] = field(init=False, repr=False)
    meta: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        for f in ("features.npy", "static.npy", "stay_ids.npy", "feature_names.json", "config.json"):
            if not (self.path / f).is_file():
                raise FileNotFoundError(f"{self.path}: not a time-series feature directory (no {f})")
        self.features = np.load(self.path / "features.npy", mmap_mode="r")
        self.static = np.load(self.path / "static.npy", mmap_mode="r")
        self.stay_ids = np.load(self.path / "stay_ids.npy", mmap_mode="r")
        names = json.loads((self.path / "feature_names.json").read_text())
        self.feature_names, self.static_names = names["time"], names["static"]
        self.meta = json.loads((self.path / "config.json").read_text())

    @property
    def config(self) -> TimeSeriesConfig:
        return TimeSeriesConfig(**self.meta["config"])

    def __len__(self) -> int:
        return int(self.stay_ids.shape[0])

    def index(self, stay_id: int) -> int:
        i = int(np.searchsorted(self.stay_ids, stay_id))
        if i >= len(self) or int(self.stay_ids[i]) != stay_id:
            raise KeyError(f"stay {stay_id} not in {self.path}")
        return i

    def __getitem__(self, stay_id: int) -> dict[str, np.ndarray]:
        i = self.index(stay_id)
        return {"timeseries": self.features[i], "static": self.static[i]}


__all__ = ["TimeSeriesConfig", "TimeSeriesFeatures", "build_timeseries_features", "long_format", "static_long",
           "stay_frame", "STATISTICS"]
