"""FIDDLE-style time-series features (`medmm.tasks.timeseries`): a hand-made canonical dataset of
40 stays checked value by value (bins, statistics, quintile edges from training stays only, θ1 / θ2,
duplicates, static one-hots), determinism, chunking, memory-mapped reads; the MIMIC-III demo when
MEDMM_SHARED_DATA is set."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medmm.data.schema import CanonicalDataset, empty, write_rows
from medmm.tasks.splits import assign_splits
from medmm.tasks.timeseries import (TimeSeriesConfig, TimeSeriesFeatures, _binned, build_timeseries_features,
                                    long_format, stay_frame, static_long)

T0 = datetime(2150, 1, 1, 0, 0)
N = 40
PIDS = [1000 + i for i in range(N)]
SPLIT = dict(assign_splits(PIDS, seed=0).iter_rows())
TRAIN = [i for i in range(N) if SPLIT[1000 + i] == "train"]
TEST = [i for i in range(N) if SPLIT[1000 + i] == "test"]
A = TRAIN[0]                         # the hand-checked training stay
HR, LAB, RARE, TWIN, TWIN2, VENT, DTE = 220045, 50912, 999, 777, 778, 225792, 224277


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def meas(i: int, t: float, item: int, value: float, source: str = "chart") -> dict:
    return {"patient_id": 1000 + i, "visit_id": 100 + i, "stay_id": None if source == "lab" else i,
            "time": h(t), "item_id": item, "source": source, "value": value, "unit": "x"}


def rows(test_value: float = 90.0) -> dict[str, list[dict]]:
    """Every stay: heart rate (chart) at t = 2, 10 and creatinine (lab, no stay id) at t = 5, values
    rising with the stay; stay A gets the hand-checked timeline; a test stay gets `test_value`."""
    m, ev = [], []
    for i in range(N):
        m += [meas(i, 2.0, HR, 60.0 + i), meas(i, 10.0, HR, 61.0 + i), meas(i, 5.0, LAB, 1.0 + i / 10, "lab"),
              meas(i, 3.0, TWIN, float(i % 3)), meas(i, 3.0, TWIN2, float(i % 3))]
    # stay A, bin 0: 80 then 70 -> last 70, min 70, max 80, mean 75; t = 1.0 goes to bin 1;
    # t = 48 (= T) and t = -1 are outside the window.
    m += [meas(A, 0.5, HR, 80.0), meas(A, 0.9, HR, 70.0), meas(A, 1.0, HR, 100.0),
          meas(A, 48.0, HR, 5000.0), meas(A, -1.0, HR, 5000.0)]
    m += [meas(TRAIN[1], 4.0, RARE, 1.0), meas(TRAIN[2], 4.0, RARE, 2.0)]     # 2 training stays
    m += [meas(TEST[0], 20.0, HR, test_value)]
    ev += [{"patient_id": 1000 + i, "visit_id": 100 + i, "stay_id": i, "item_id": VENT, "source": "procedure",
            "start_time": h(6.5), "end_time": h(9.0), "value": 150.0, "unit": "min"} for i in range(0, N, 2)]
    ev += [{"patient_id": 1000 + i, "visit_id": 100 + i, "stay_id": i, "item_id": DTE, "source": "datetime",
            "start_time": h(7.0), "value": None, "unit": "Date", "value_time": h(1.0)} for i in range(N)]
    return {"measurements": m, "events": ev}


def write_dataset(root: Path, test_value: float = 90.0) -> CanonicalDataset:
    r = rows(test_value)
    tables = {
        "patients": [{"patient_id": 1000 + i, "sex": "F" if i % 2 else "M",
                      "birth_time": T0 - timedelta(days=(40 + i) * 365.25)} for i in range(N)],
        "visits": [{"visit_id": 100 + i, "patient_id": 1000 + i, "admit_time": h(-(i % 5)),
                    "discharge_time": h(200), "admission_type": "EMERGENCY" if i % 4 else "ELECTIVE",
                    "died_in_hospital": False, "age": 40.0 + i} for i in range(N)],
        "stays": [{"stay_id": i, "visit_id": 100 + i, "patient_id": 1000 + i, "in_time": T0, "out_time": h(100),
                   "care_unit": "MICU" if i % 3 else "CCU", "dbsource": "metavision"} for i in range(N)],
        **r,
    }
    return write_rows(root, tables, "mimic3")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    ds = write_dataset(root / "ds")
    return ds, build_timeseries_features(ds, root / "feat"), root


def col(f: TimeSeriesFeatures, name: str) -> np.ndarray:
    return np.asarray(f.features[:, :, f.feature_names.index(name)])   # (stays, bins)


def qcol(f: TimeSeriesFeatures, var: str, stat: str, x: float) -> str:
    """The feature name x falls in, by the edges in config.json (x <= e1 -> q1, ...)."""
    edges = f.meta["edges"][f"{var}:{stat}"]
    return f"{var}:{stat}:q{sum(x > e for e in edges) + 1}"


def test_long_format_window_and_static_rows(built):
    ds, _, _ = built
    stays = stay_frame(ds)
    long = long_format(ds, stays, TimeSeriesConfig()).collect()
    a = long.filter((pl.col("stay_id") == A) & (pl.col("variable") == f"chart:{HR}")).sort("t")
    assert a["t"].to_list() == pytest.approx([0.5, 0.9, 1.0, 2.0, 10.0])         # -1 and 48 left out
    assert a["bin"].to_list() == [0, 0, 1, 2, 10]
    assert long["t"].min() >= 0 and long["t"].max() < 48
    lab = long.filter((pl.col("stay_id") == A) & (pl.col("variable") == f"lab:{LAB}"))
    assert lab["t"].to_list() == [5.0] and lab["value"].to_list() == [1.0 + A / 10]   # given by its admission
    st = static_long(stays).filter(pl.col("stay_id") == 5)
    got = {v: (x, c) for v, x, c in st.select("variable", "value", "category").iter_rows()}
    assert st["t"].is_null().all()
    assert got["sex"] == (None, "F") and got["care_unit"] == (None, "MICU")
    assert got["admission_type"] == (None, "EMERGENCY") and got["admit_to_icu_hours"] == (0.0, None)
    assert abs(got["age"][0] - 45.0) < 1e-9


def test_bins_and_statistics(built):
    ds, f, _ = built
    cfg = TimeSeriesConfig()
    stays = stay_frame(ds).filter(pl.col("stay_id") == A)
    num, _ = _binned(long_format(ds, stays, cfg).collect(), cfg)
    hr = {b: (la, mi, ma, me) for b, la, mi, ma, me in
          num.filter(pl.col("variable") == f"chart:{HR}").select("bin", *cfg.statistics).iter_rows()}
    assert hr == {0: (70.0, 70.0, 80.0, 75.0), 1: (100.0,) * 4, 2: (60.0 + A,) * 4, 10: (61.0 + A,) * 4}
    # the features: mask in bins 0, 1, 2, 10 only; each statistic in its quintile
    i = f.index(A)
    assert np.flatnonzero(col(f, f"chart:{HR}:mask")[i]).tolist() == [0, 1, 2, 10]
    for s, x in zip(cfg.statistics, (70.0, 70.0, 80.0, 75.0)):
        name = qcol(f, f"chart:{HR}", s, x)
        if name in f.feature_names:       # else dropped as rare (θ2) or a duplicate
            assert col(f, name)[i, 0] == 1
    assert col(f, qcol(f, f"chart:{HR}", "max", 80.0))[i, 0] == 1
    row = np.asarray(f.features[i, 0])
    hr_cols = [j for j, n in enumerate(f.feature_names) if n.startswith(f"chart:{HR}:max:")]
    assert row[hr_cols].sum() == 1          # one-hot: exactly one quintile per present statistic
    # events: the procedure's value at t = 6.5 -> bin 6; the datetime event is presence only
    assert np.flatnonzero(col(f, f"procedure:{VENT}:mask")[i]).tolist() == ([6] if A % 2 == 0 else [])
    assert np.flatnonzero(col(f, f"datetime:{DTE}:mask")[i]).tolist() == [7]
    assert not any(n.startswith(f"datetime:{DTE}:") and not n.endswith(":mask") for n in f.feature_names)
    # a bin with no value is all zeros for the variable
    assert f.features[i, 30].sum() == 0


def test_edges_from_training_stays_only(built, tmp_path):
    ds, f, _ = built
    ds2 = write_dataset(tmp_path / "ds2", test_value=1e6)
    f2 = build_timeseries_features(ds2, tmp_path / "feat2")
    assert f2.meta["edges"] == f.meta["edges"] and f2.meta["static_edges"] == f.meta["static_edges"]
    # the test stay's value lands in the top quintile but does not move the edges
    top = f"chart:{HR}:last:q{len(f.meta['edges'][f'chart:{HR}:last']) + 1}"
    assert col(f2, top)[f2.index(TEST[0]), 20] == 1
    # and the edges are the training stays' bin values' quintiles (np.quantile, linear)
    vals = [v for i in TRAIN for v in (60.0 + i, 61.0 + i)] + [70.0, 100.0]
    want = sorted(set(np.quantile(vals, [0.2, 0.4, 0.6, 0.8]).tolist()))
    assert np.allclose(f.meta["edges"][f"chart:{HR}:last"], want)


def test_theta1_theta2_and_duplicates(built, tmp_path):
    ds, f, _ = built
    n_train = f.meta["counts"]["train_stays"]
    assert n_train == len(TRAIN) and 2 <= 0.1 * n_train and 2 > 0.05 * n_train
    # RARE is in 2 training stays: > θ1 = 0.05, kept; at θ1 = 0.1 the variable is gone
    assert f"chart:{RARE}:mask" in f.feature_names
    g = build_timeseries_features(ds, tmp_path / "t1", TimeSeriesConfig(theta1=0.1))
    assert not any(n.startswith(f"chart:{RARE}:") for n in g.feature_names)
    # θ2 = 0.1: features non-zero in <= 10 % of training stays go, the variable's mask included
    g = build_timeseries_features(ds, tmp_path / "t2", TimeSeriesConfig(theta1=0.0, theta2=0.1))
    assert f"chart:{RARE}:mask" not in g.feature_names and f"chart:{HR}:mask" in g.feature_names
    nz = (np.asarray(g.features)[[g.index(i) for i in TRAIN]].max(axis=1) > 0).sum(axis=0)
    assert (nz > 0.1 * n_train).all()
    # exact duplicates: TWIN2 repeats TWIN everywhere, so only TWIN's columns remain; and with one
    # value per bin min == max == mean == last, so only "last" survives
    assert any(n.startswith(f"chart:{TWIN}:") for n in f.feature_names)
    assert not any(n.startswith(f"chart:{TWIN2}:") for n in f.feature_names)
    assert not any(n.startswith(f"chart:{TWIN}:min:") for n in f.feature_names)
    X = np.asarray(f.features).reshape(-1, len(f.feature_names))
    assert len({X[:, j].tobytes() for j in range(X.shape[1])}) == X.shape[1]


def test_static_one_hot(built):
    _, f, _ = built
    names = f.static_names
    for i in (4, 5):
        s = np.asarray(f.static[f.index(i)])
        on = {names[j] for j in np.flatnonzero(s)}
        assert ("sex:F" in on) == bool(i % 2) and ("sex:M" in on) == (not i % 2)
        assert ("care_unit:MICU" if i % 3 else "care_unit:CCU") in on
        age = 40.0 + i
        assert f"age:q{sum(age > e for e in f.meta['static_edges']['age']) + 1}" in on
        assert sum(n.startswith("age:") for n in on) == 1
    train_ages = [40.0 + i for i in TRAIN]
    assert np.allclose(f.meta["static_edges"]["age"], np.quantile(train_ages, [0.2, 0.4, 0.6, 0.8]))
    # sex:F and sex:M are complements, not duplicates: both kept
    assert {"sex:F", "sex:M", "admission_type:ELECTIVE", "admission_type:EMERGENCY"} <= set(names)


def test_deterministic_chunks_and_mmap(built, tmp_path):
    ds, f, root = built
    again = build_timeseries_features(ds, tmp_path / "again")
    small = build_timeseries_features(ds, tmp_path / "small", TimeSeriesConfig(chunk_size=7))
    for name in ("features.npy", "static.npy", "stay_ids.npy", "feature_names.json", "config.json"):
        assert (f.path / name).read_bytes() == (again.path / name).read_bytes(), name
    for name in ("features.npy", "static.npy", "stay_ids.npy", "feature_names.json"):
        assert (f.path / name).read_bytes() == (small.path / name).read_bytes(), name
    a, b = (json.loads((p / "config.json").read_text()) for p in (f.path, small.path))
    assert a["config"].pop("chunk_size") == 2000 and b["config"].pop("chunk_size") == 7 and a == b
    # memory-mapped read, shapes, dtypes, the config round trip
    g = TimeSeriesFeatures(f.path)
    assert isinstance(g.features, np.memmap) and isinstance(g.static, np.memmap)
    assert g.features.shape == (N, 48, len(g.feature_names)) and g.features.dtype == np.uint8
    assert g.static.shape == (N, len(g.static_names)) and g.stay_ids.tolist() == list(range(N))
    assert g.config == TimeSeriesConfig()
    assert g[A]["timeseries"].shape == (48, len(g.feature_names))
    assert not any(p.name.startswith(".") for p in f.path.parent.iterdir())    # no temp dirs left


def test_bad_config_and_existing_output(built, tmp_path):
    ds, f, _ = built
    with pytest.raises(ValueError, match="statistics"):
        TimeSeriesConfig(statistics=("median",))
    with pytest.raises(ValueError, match="T / dt"):
        TimeSeriesConfig(T=48, dt=5)
    with pytest.raises(FileExistsError):
        build_timeseries_features(ds, f.path)
    with pytest.raises(FileNotFoundError, match="no features.npy"):
        TimeSeriesFeatures(tmp_path)


def test_mimic3_demo(shared_data, tmp_path):
    from medmm.data.sources import prepare

    m = shared_data / "mappings"
    maps = {"ndc_rxnorm": m / "ndc2rxnorm_mapping.txt", "drug_atc": m / "mimic_drug_to_atc.csv.gz"}
    ds = prepare("mimic3", shared_data / "mimic3-demo", tmp_path / "m3", mappings=maps, progress=False)
    cfg = TimeSeriesConfig(chunk_size=50)
    f = build_timeseries_features(ds, tmp_path / "feat", cfg)
    n = ds.manifest.tables["stays"]
    assert f.features.shape == (n, 48, len(f.feature_names)) and f.static.shape[0] == n
    assert len(f.feature_names) > 10 and f.meta["counts"]["rows_read"] > 0
    long = long_format(ds, stay_frame(ds), cfg).collect()
    assert long["t"].min() >= 0 and long["t"].max() < 48 and long.height == f.meta["counts"]["rows_read"]
    print(f"\nMIMIC-III demo: {n} stays, {long.height:,} rows in [0, 48) h, {len(f.feature_names)} time "
          f"features, {len(f.static_names)} static features")


def test_categorical_time_values_one_hot(built, tmp_path, monkeypatch):
    """A string-valued variable (none of the canonical tables has one yet) is one-hot per category
    seen in training; a category seen only in a test stay makes no feature."""
    import medmm.tasks.timeseries as ts

    ds, _, _ = built
    original = ts.long_format

    def with_categories(dataset, stays, config, carry=()):
        ids = set(stays["stay_id"].to_list())
        extra = [(i, 3.5, 3, "chart:555", None, "A" if i % 2 else "B") for i in range(N) if i in ids]
        extra += [(TEST[0], 4.0, 4, "chart:555", None, "Z")] if TEST[0] in ids else []
        frame = pl.DataFrame(extra, orient="row", schema={"stay_id": pl.Int64, "t": pl.Float64, "bin": pl.Int32,
                                                          "variable": pl.String, "value": pl.Float64,
                                                          "category": pl.String})
        frame = frame.join(stays.select("stay_id", *carry), on="stay_id", how="left")
        return pl.concat([original(dataset, stays, config, carry), frame.lazy()])

    monkeypatch.setattr(ts, "long_format", with_categories)
    f = build_timeseries_features(ds, tmp_path / "cat", TimeSeriesConfig(chunk_size=9))
    names = [n for n in f.feature_names if n.startswith("chart:555:")]
    assert names == ["chart:555:mask", "chart:555:A", "chart:555:B"]
    for i in (4, 5, TEST[0]):
        got = {n: np.flatnonzero(col(f, n)[f.index(i)]).tolist() for n in names}
        want_bins = [3, 4] if i == TEST[0] else [3]
        assert got == {"chart:555:mask": want_bins, "chart:555:A": [3] if i % 2 else [],
                       "chart:555:B": [] if i % 2 else [3]}


def test_no_time_series_rows(built, tmp_path):
    ds, _, _ = built
    root = tmp_path / "bare"
    shutil.copytree(ds.path, root)
    for table in ("measurements", "events"):
        empty(table).write_parquet(root / f"{table}.parquet")
    f = build_timeseries_features(CanonicalDataset(root), tmp_path / "f", TimeSeriesConfig(chunk_size=3))
    assert f.features.shape == (N, 48, 0) and f.static.shape[0] == N and f.meta["counts"]["rows_read"] == 0


def _delta_by_loop(present_bins: set[int], B: int = 48) -> list[int]:
    """FIDDLE's delta time, written as a loop: bins since the last measured bin, 0 before the first."""
    out, last = [], None
    for b in range(B):
        if b in present_bins:
            last = b
        out.append(0 if last is None else b - last)
    return out


def test_time_since_last_measurement(built, tmp_path):
    """Frequent variables (>= theta_freq rows per bin per training stay) get FIDDLE's delta time:
    bins since the last measurement, 0 where measured and before the first; quintile edges over
    every training stay's bins; one quintile one-hot per bin. Infrequent variables get none."""
    ds, _, _ = built
    cfg = TimeSeriesConfig(theta_freq=0.04, theta2=0.0)         # HR: ~2 rows per stay >= 0.04 x 48
    f = build_timeseries_features(ds, tmp_path / "delta", cfg)
    assert f.meta["frequent_variables"] == [f"chart:{HR}"]
    assert not any(n.startswith((f"chart:{TWIN}:delta", f"lab:{LAB}:delta")) for n in f.feature_names)
    present = {i: {2, 10} for i in range(N)}
    present[A] |= {0, 1}
    present[TEST[0]] |= {20}
    deltas = {i: _delta_by_loop(p) for i, p in present.items()}
    want = sorted(set(np.quantile([d for i in TRAIN for d in deltas[i]], [0.2, 0.4, 0.6, 0.8]).tolist()))
    edges = f.meta["edges"][f"chart:{HR}:delta_time"]
    assert np.allclose(edges, want)
    names = [n for n in f.feature_names if n.startswith(f"chart:{HR}:delta_time:")]
    assert names, "the delta-time quintiles were dropped"
    for i in (A, TRAIN[3], TEST[0]):
        x = np.asarray(f.features[f.index(i)])[:, [f.feature_names.index(n) for n in names]]
        for b in range(48):
            q = sum(deltas[i][b] > e for e in edges) + 1
            name = f"chart:{HR}:delta_time:q{q}"
            if name in names:                       # else an exact duplicate of an earlier feature
                assert x[b, names.index(name)] == 1, (i, b, deltas[i][b])
            assert x[b].sum() <= 1                  # one-hot
    off = build_timeseries_features(ds, tmp_path / "off", TimeSeriesConfig(theta_freq=0.04, time_since_last=False))
    assert off.meta["frequent_variables"] == [] and not any("delta_time" in n for n in off.feature_names)


def test_a_chunk_read_in_pieces_gives_the_same_features(built, tmp_path):
    """chunk_rows bounds the rows held at once: a chunk with more is read in stay ranges; the
    features are byte-identical whatever the piece size."""
    ds, f, _ = built
    small = build_timeseries_features(ds, tmp_path / "pieces", TimeSeriesConfig(chunk_rows=9, edge_batch_values=5))
    for name in ("features.npy", "static.npy", "stay_ids.npy", "feature_names.json"):
        assert (small.path / name).read_bytes() == (f.path / name).read_bytes(), name
    assert small.meta["edges"] == f.meta["edges"]


@pytest.mark.parametrize("seed", range(5))
def test_histogram_quantiles_equal_np_quantile(seed):
    from medmm.tasks.timeseries import _histogram_quantiles

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, 48) * (rng.random(48) < 0.6)
    counts[rng.integers(0, 48)] += 1
    values = np.repeat(np.arange(48), counts)
    assert np.allclose(_histogram_quantiles(counts), np.quantile(values, [0.2, 0.4, 0.6, 0.8]))
