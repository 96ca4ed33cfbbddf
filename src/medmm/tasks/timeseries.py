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
   the `statistics` of its values in the bin (last / min / max / mean); each statistic is cut into
   quintiles with edges from the training stays' bins (``np.quantile``-style linear quantiles at
   0.2 .. 0.8, duplicate edges dropped as pandas ``qcut(duplicates="drop")``; x <= e1 is q1,
   e1 < x <= e2 is q2, ...) and one-hot encoded (missing = all zeros). Categorical values (strings)
   are one-hot per category seen in training. Static variables likewise (numeric: quintiles).
3. θ2: drop features non-zero in <= θ2 of the training stays, then exact duplicate columns (equal
   over all training stays and bins; the first in candidate order is kept: variables by name, then
   mask, statistics in config order, categories), detected with two 64-bit fingerprints per column.

Not (yet) FIDDLE's: the "time since last measurement" feature; microbiology events (no canonical
table holds them). The canonical measurements / events hold numbers only, so time-dependent
categorical values arise only if `long_format` is given string rows (``category``).

Out of core: stays are processed `chunk_size` at a time (the measurements and events are scanned
lazily, filtered by the chunk's stay / visit ids), binned aggregates go to a scratch Parquet file,
the quantile edges are a lazy group-by over it, and the final tensor is written into a
memory-mapped ``.npy``. Peak memory is about one chunk's rows and binned aggregates, plus the
quantile group-by over the training bins' statistic values (8 bytes a value). Every stay of
``stays`` is featurised; a task selects its cohort's rows by ``stay_ids``.

Output directory (`build_timeseries_features`, written atomically): ``features.npy`` (stays x
T/dt x F, uint8), ``static.npy`` (stays x F_s, uint8), ``stay_ids.npy`` (int64, sorted),
``feature_names.json`` ({"time": [...], "static": [...]}), ``config.json`` (the config, the
quintile edges, counts). `TimeSeriesFeatures` reads it back memory-mapped.
"""

from __future__ import annotations

import json
import shutil
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

    def __post_init__(self) -> None:
        self.statistics = tuple(self.statistics)
        bad = [s for s in self.statistics if s not in STATISTICS]
        if bad:
            raise ValueError(f"unknown statistics {bad}; choose from {list(STATISTICS)}")
        if self.T <= 0 or self.dt <= 0 or abs(self.T / self.dt - round(self.T / self.dt)) > 1e-9:
            raise ValueError(f"T / dt must be a positive whole number, got T={self.T}, dt={self.dt}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

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


def long_format(dataset: CanonicalDataset, stays: pl.DataFrame, config: TimeSeriesConfig) -> pl.LazyFrame:
    """The time-dependent rows (0 <= t < T) of the given stays, lazily: stay_id, t (hours), bin
    (t // dt), variable, value, category. `stays` needs stay_id, visit_id, in_time."""
    ids = stays["stay_id"].implode()
    keys = stays.lazy().select("stay_id", "visit_id", "in_time")
    m = dataset.scan("measurements").select("stay_id", "visit_id", "time", "item_id", "source", "value")
    # Rows with a stay id go to that stay; lab rows (no stay id) to their admission's stays.
    with_stay = (m.filter(pl.col("stay_id").is_in(ids))
                 .join(keys.select("stay_id", "in_time"), on="stay_id", how="inner"))
    no_stay = (m.filter(pl.col("stay_id").is_null() & pl.col("visit_id").is_in(stays["visit_id"].implode()))
               .drop("stay_id").join(keys, on="visit_id", how="inner"))
    parts = [with_stay.select("stay_id", "in_time", "time", "item_id", "source", "value"),
             no_stay.select("stay_id", "in_time", "time", "item_id", "source", "value")]
    if config.use_events:
        ev = (dataset.scan("events").filter(pl.col("stay_id").is_in(ids))
              .select("stay_id", pl.col("start_time").alias("time"), "item_id", "source", "value")
              .join(keys.select("stay_id", "in_time"), on="stay_id", how="inner"))
        parts.append(ev.select("stay_id", "in_time", "time", "item_id", "source", "value"))
    # The window and the bins in whole microseconds, so that a row at exactly k * dt is in bin k.
    us = (pl.col("time") - pl.col("in_time")).dt.total_microseconds()
    bin_us, T_us = int(round(config.dt * _HOUR_US)), int(round(config.T * _HOUR_US))
    return (pl.concat(parts).with_columns(us.alias("us"))
            .filter((pl.col("us") >= 0) & (pl.col("us") < T_us))
            .select("stay_id", (pl.col("us") / _HOUR_US).alias("t"),
                    (pl.col("us") // bin_us).cast(pl.Int32).alias("bin"),
                    (pl.col("source") + ":" + pl.col("item_id").cast(pl.String)).alias("variable"),
                    "value", pl.lit(None, pl.String).alias("category")))


def _binned(long: pl.DataFrame, config: TimeSeriesConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (stay, bin, variable): the numeric statistics (null when no value) and, separately,
    the categories present."""
    # Sorted by time (then value, for ties) so that "last" is the latest value, deterministically.
    df = (long.sort("stay_id", "variable", "t", "value", nulls_last=True))
    v = pl.col("value")
    stat = {"last": v.drop_nulls().last(),
            "min": v.min(), "max": v.max(), "mean": v.mean()}
    num = (df.group_by("stay_id", "bin", "variable")
           .agg(*[stat[s].alias(s) for s in config.statistics])
           .sort("stay_id", "bin", "variable"))
    cat = (df.filter(pl.col("category").is_not_null()).select("stay_id", "bin", "variable", "category").unique()
           .sort("stay_id", "bin", "variable", "category"))
    return num, cat


# ---- fitting on the training stays ---------------------------------------------------------------

def _quantile_edges(code: np.ndarray, x: np.ndarray, n_groups: int) -> list[list[float] | None]:
    """Quintile edges of x per group code 0..n_groups-1 (None for a group with no value), pandas
    qcut(duplicates="drop") style: np.quantile (linear) at 0.2 .. 0.8, repeated edges once."""
    ok = ~np.isnan(x)
    code, x = code[ok], x[ok]
    order = np.lexsort((x, code))
    code, x = code[order], x[order]
    groups = np.arange(n_groups)
    starts, ends = np.searchsorted(code, groups, "left"), np.searchsorted(code, groups, "right")
    return [sorted(set(np.quantile(x[a:b], QUANTILES).tolist())) if b > a else None for a, b in zip(starts, ends)]


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

    def add(self, stay_pos: np.ndarray, row: np.ndarray, feat: np.ndarray) -> None:
        """stay_pos: training-stay position per non-zero entry; row: its global training row
        (stay position x bins + bin); feat: its feature index. Entries are unique."""
        if feat.size == 0:
            return
        span = int(stay_pos.max()) + 1
        pairs = np.unique(feat.astype(np.int64) * span + stay_pos.astype(np.int64))      # (feature, stay)
        self.nonzero += np.bincount(pairs // span, minlength=self.nonzero.size)
        with np.errstate(over="ignore"):
            for k, salt in enumerate((0x5EED, 0xC0FFEE)):
                np.add.at(self.fp[k], feat, _fingerprint_weights(row, salt))

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


def _quantile_index(x: np.ndarray, key: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """q (0-based) of each x under its key's edges (rows of `edges`, padded with +inf)."""
    return (x[:, None] > edges[key]).sum(axis=1)


def _pad(edge_lists: list[list[float]]) -> np.ndarray:
    w = max([len(e) for e in edge_lists] + [1])
    out = np.full((max(len(edge_lists), 1), w), np.inf)
    for i, e in enumerate(edge_lists):
        out[i, :len(e)] = e
    return out


@dataclass
class _Candidates:
    """The candidate time-dependent features before θ2: names and the lookup tables to them."""

    names: list[str]
    mask: pl.DataFrame           # variable -> feat (its mask)
    keys: pl.DataFrame           # (variable, stat) -> key
    base: np.ndarray             # key -> feat of its q1
    edges: np.ndarray            # key -> inner quintile edges, padded with +inf
    cats: pl.DataFrame           # (variable, category) -> feat


def _candidates(variables: list[str], stat_edges: dict[tuple, list[float]], cats_of: dict[str, list[str]],
                statistics: tuple[str, ...]) -> _Candidates:
    """Per variable (by name): mask, then each statistic's quintiles, then its categories."""
    names: list[str] = []
    mask: dict[str, int] = {}
    keys: list[tuple[str, str]] = []
    base: list[int] = []
    cats: dict[tuple[str, str], int] = {}
    for var in variables:
        mask[var] = len(names)
        names.append(f"{var}:mask")
        for s in statistics:
            e = stat_edges.get((var, s))
            if e is None:                # no value of this statistic in training
                continue
            keys.append((var, s))
            base.append(len(names))
            names += [f"{var}:{s}:q{q + 1}" for q in range(len(e) + 1)]
        for c in cats_of.get(var, []):
            cats[(var, c)] = len(names)
            names.append(f"{var}:{c}")
    return _Candidates(
        names=names,
        mask=pl.DataFrame({"variable": list(mask), "feat": list(mask.values())},
                          schema={"variable": pl.String, "feat": pl.Int64}),
        keys=pl.DataFrame({"variable": [k[0] for k in keys], "stat": [k[1] for k in keys],
                           "key": np.arange(len(keys), dtype=np.int32)},
                          schema={"variable": pl.String, "stat": pl.String, "key": pl.Int32}),
        base=np.asarray(base, dtype=np.int64), edges=_pad([stat_edges[k] for k in keys]),
        cats=pl.DataFrame({"variable": [k[0] for k in cats], "category": [k[1] for k in cats],
                           "feat": list(cats.values())},
                          schema={"variable": pl.String, "category": pl.String, "feat": pl.Int64}))


def _nonzero(num: pl.DataFrame, cat: pl.DataFrame, cand: _Candidates, chunk_ids: np.ndarray, first: int,
             statistics: tuple[str, ...]) -> np.ndarray:
    """The non-zero entries of one chunk's binned aggregates: (3, n) int32 rows pos / bin / feat,
    sorted. `chunk_ids`: the chunk's sorted stay ids, the first at position `first`."""
    parts = []

    def add(frame: pl.DataFrame, feat: np.ndarray) -> None:
        pos = first + np.searchsorted(chunk_ids, frame["stay_id"].to_numpy())
        parts.append(np.stack([pos, frame["bin"].to_numpy(), feat]).astype(np.int32))

    m = num.select("stay_id", "bin", "variable").join(cand.mask, on="variable")
    add(m, m["feat"].to_numpy())
    for s in statistics:                 # one statistic at a time keeps the frames small
        keys = cand.keys.filter(pl.col("stat") == s).select("variable", "key")
        st = (num.select("stay_id", "bin", "variable", pl.col(s).alias("x"))
              .filter(pl.col("x").is_not_null() & pl.col("x").is_not_nan()).join(keys, on="variable"))
        x, k = st["x"].to_numpy(), st["key"].to_numpy()
        add(st, cand.base[k] + _quantile_index(x, k, cand.edges) if x.size else np.zeros(0, np.int64))
    c = cat.join(cand.cats, on=["variable", "category"])
    add(c, c["feat"].to_numpy())
    nz = np.concatenate(parts, axis=1)
    return nz[:, np.lexsort((nz[2], nz[1], nz[0]))]


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
    with atomic_dir(out, overwrite=overwrite) as tmp:
        scratch = tmp / "_scratch"
        scratch.mkdir()
        # Pass 1: long rows -> binned aggregates (scratch), training presence per variable.
        present: dict[str, int] = {}
        for i, ch in enumerate(chunks):
            long = long_format(dataset, ch, cfg).collect(engine="streaming")
            rows_read += long.height
            num, cat = _binned(long, cfg)
            num.write_parquet(scratch / f"num-{i:05d}.parquet")
            cat.write_parquet(scratch / f"cat-{i:05d}.parquet")
            tr = long.join(ch.filter(pl.col("split") == "train").select("stay_id"), on="stay_id", how="semi")
            for var, k in tr.group_by("variable").agg(pl.col("stay_id").n_unique()).iter_rows():
                present[var] = present.get(var, 0) + int(k)
            say(f"timeseries: pass 1, chunk {i + 1}/{len(chunks)} ({long.height:,} rows)")
        variables = sorted(v for v, k in present.items() if k > cfg.theta1 * n_train)
        train_ids = stays.filter(pl.col("split") == "train").select("stay_id").lazy()
        num_all = pl.scan_parquet(scratch / "num-*.parquet").filter(pl.col("variable").is_in(variables))
        num_train = num_all.join(train_ids, on="stay_id", how="semi")
        # Edges per (variable, statistic): the values as (variable code, x), one statistic at a time.
        codes = pl.DataFrame({"variable": variables, "code": np.arange(len(variables), dtype=np.int32)},
                             schema={"variable": pl.String, "code": pl.Int32}).lazy()
        stat_edges: dict[tuple[str, str], list[float]] = {}
        for s in cfg.statistics:
            d = (num_train.select("variable", pl.col(s).alias("x")).drop_nulls("x").join(codes, on="variable")
                 .select("code", "x").collect(engine="streaming"))
            for g, e in enumerate(_quantile_edges(d["code"].to_numpy(), d["x"].to_numpy(), len(variables))):
                if e is not None:
                    stat_edges[(variables[g], s)] = e
        cats = (pl.scan_parquet(scratch / "cat-*.parquet").filter(pl.col("variable").is_in(variables))
                .join(train_ids, on="stay_id", how="semi").select("variable", "category").unique()
                .sort("variable", "category").collect())
        cats_of: dict[str, list[str]] = {}
        for var, c in cats.iter_rows():
            cats_of.setdefault(var, []).append(c)

        cand = _candidates(variables, stat_edges, cats_of, cfg.statistics)
        names = cand.names

        # Pass 2: non-zero entries (stay, bin, feature) per chunk; θ2 counts on training stays.
        sel = _Selector(len(names))
        for i, ch in enumerate(chunks):
            num = pl.read_parquet(scratch / f"num-{i:05d}.parquet").filter(pl.col("variable").is_in(variables))
            cat = pl.read_parquet(scratch / f"cat-{i:05d}.parquet")
            nz = _nonzero(num, cat, cand, ch["stay_id"].to_numpy(), i * cfg.chunk_size, cfg.statistics)
            np.save(scratch / f"nz-{i:05d}.npy", nz)
            is_tr = train_mask[nz[0]]
            tp = train_pos[nz[0][is_tr]]
            sel.add(tp, tp * B + nz[1][is_tr], nz[2][is_tr])
        keep = sel.keep(n_train, cfg.theta2)
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        time_names = [names[j] for j in keep]

        # Pass 3: the dense tensor, written chunk by chunk into a memory-mapped .npy.
        feats = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.uint8, shape=(n, B, keep.size))
        for i, _ in enumerate(chunks):
            pos, b, f = np.load(scratch / f"nz-{i:05d}.npy")
            f = remap[f]
            ok = f >= 0
            feats[pos[ok], b[ok], f[ok]] = 1
        feats.flush()
        del feats
        shutil.rmtree(scratch)

        static, static_names, static_edges = _static_features(stays, cfg, n_train)
        np.save(tmp / "static.npy", static)
        np.save(tmp / "stay_ids.npy", stays["stay_id"].to_numpy().astype(np.int64))
        (tmp / "feature_names.json").write_text(json.dumps({"time": time_names, "static": static_names}, indent=1))
        meta = {"config": {**asdict(cfg), "statistics": list(cfg.statistics)},
                "quantiles": list(QUANTILES),
                "edges": {f"{v}:{s}": e for (v, s), e in sorted(stat_edges.items()) if v in set(variables)},
                "static_edges": static_edges,
                "counts": {"stays": n, "train_stays": n_train, "rows_read": rows_read,
                           "variables_seen": len(present), "variables_kept": len(variables),
                           "time_features_candidates": len(names), "time_features": len(time_names),
                           "static_features": len(static_names)}}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        say(f"timeseries: {n} stays, {rows_read:,} rows, {len(variables)}/{len(present)} variables kept, "
            f"{len(time_names)} time features, {len(static_names)} static features")
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
            edges_out[var] = _quantile_edges(np.zeros(x_tr.size, np.int32), x_tr, 1)[0] or []
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
