"""MedCSP's ICU tasks in the task registry (`arf`, `shock`, `mortality`, `icu_readmission`): samples
from `icu_stay_records` equal the criticality labels, features are the stays' FIDDLE rows (checked
against the feature directory), batches carry `timeseries` / `demographics`, and a feature
directory of another T, split seed or dataset is refused. Synthetic data (300 patients)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from medmm.modalities import MODALITIES
from medmm.recipes.finetune import FinetuneConfig, load_records
from medmm.tasks.criticality import criticality_counts, icu_stay_records
from medmm.tasks.featurize import Collator
from medmm.tasks.registry import build_task, task_class
from medmm.tasks.timeseries import TimeSeriesConfig, build_timeseries_features

ICU_TASKS = {"arf": "arf", "shock": "shock", "mortality": "mortality", "icu_readmission": "readmission"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from medmm.data.schema import load_dataset
    from medmm.data.sources import prepare
    from medmm.data.synth import generate

    root = tmp_path_factory.mktemp("icu")
    generate(root / "raw", n_patients=300, seed=0, card=False)
    prepare("mimic3", root / "raw", root / "data", mappings={"dir": root / "raw" / "mappings"}, progress=False)
    ds = load_dataset(root / "data")
    feats = build_timeseries_features(ds, root / "ts")
    return {"root": root, "ds": ds, "feats": feats, "records": icu_stay_records(ds)}


def test_icu_stay_records_are_the_records_of_the_icu_tasks(world):
    records = load_records(world["root"] / "data", task_class("arf").records)
    assert records.equals(world["records"])
    assert records["stay_id"].n_unique() == records.height == world["ds"].table("stays").height
    for col in ("text", "dx", "med", "arf_onset", "shock_onset", "readmitted", "source"):
        assert col in records.columns


@pytest.mark.parametrize("name", list(ICU_TASKS))
def test_samples_features_and_batches(world, name):
    cfg = FinetuneConfig(timeseries=str(world["feats"].path))
    task = build_task(name, cfg)
    samples, spec = task.samples(world["records"])
    counts = criticality_counts(world["ds"], T=48)["tasks"][ICU_TASKS[name]]
    assert samples.height == counts["cohort"] > 0 and int(samples["label"].sum()) == counts["positive"]
    assert spec.kind == "binary" and spec.num_labels == 1
    # the code tower's ids are not under test here
    encode = lambda dx, med: [1] + [2] * len(dx) + [3] * len(med)  # noqa: E731
    notes = {v: [1, 5, 2] for v in world["records"]["visit_id"].to_list()}
    feats, labels = task.features(samples, world["records"], spec, encode, notes)
    f = world["feats"]
    assert labels.tolist() == samples["label"].cast(pl.Float32).to_list()
    for k in (0, samples.height - 1):
        i = f.index(samples["stay_id"][k])
        assert np.array_equal(feats["timeseries"][k], f.features[i]) and np.array_equal(feats["demographics"][k],
                                                                                       f.static[i])
    assert ("input_ids" in feats) == ("note" in task.provides) == (name == "icu_readmission")
    reads = task.provides
    batch = Collator(spec, reads=reads)([{**{key: v[j] for key, v in feats.items()}, "labels": labels[j]}
                                         for j in range(3)])
    assert batch["timeseries"].shape == (3, 48, len(f.feature_names)) and batch["timeseries"].dtype.is_floating_point
    assert batch["demographics"].shape == (3, len(f.static_names)) and batch["timeseries_mask"].all()
    assert batch["labels"].shape == (3,)
    assert ("code_ids" in batch) == (name == "icu_readmission")


def test_a_feature_directory_that_does_not_match_is_refused(world, tmp_path):
    records, ds = world["records"], world["ds"]
    samples, spec = build_task("arf", FinetuneConfig()).samples(records)
    with pytest.raises(ValueError, match="set finetune.timeseries"):
        build_task("arf", FinetuneConfig()).features(samples, records, spec, None, None)
    t24 = build_timeseries_features(ds, tmp_path / "t24", TimeSeriesConfig(T=24))
    with pytest.raises(ValueError, match="first 24 h, but task 'arf' predicts at 48 h"):
        build_task("arf", FinetuneConfig(timeseries=str(t24.path))).features(samples, records, spec, None, None)
    s1 = build_timeseries_features(ds, tmp_path / "s1", TimeSeriesConfig(split_seed=1))
    with pytest.raises(ValueError, match="split seed 1, but the task splits with seed 0"):
        build_task("arf", FinetuneConfig(timeseries=str(s1.path))).features(samples, records, spec, None, None)
    other = samples.with_columns(pl.col("stay_id") + 10**9)
    with pytest.raises(ValueError, match=r"no features for stay \d+"):
        build_task("arf", FinetuneConfig(timeseries=str(world["feats"].path))).features(other, records, spec, None,
                                                                                        None)


def test_prediction_time_is_a_config_option(world):
    twelve = build_task("mortality", FinetuneConfig(icu_prediction_hours=12.0))
    samples, spec = twelve.samples(world["records"])
    assert spec.label_names == ["mortality_12h"]
    assert samples.height == criticality_counts(world["ds"], T=12)["tasks"]["mortality"]["cohort"]
    assert "icu_prediction_hours" in task_class("mortality").options


def test_the_modalities_are_built():
    assert MODALITIES["timeseries"].built and MODALITIES["demographics"].built


def test_cli_features(world, tmp_path, capsys):
    from medmm.cli import main

    assert main(["features", "--data", str(world["root"] / "data"), "--out", str(tmp_path / "f"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "time-series features:" in out and "criticality labels (mimic3, T = 48 h):" in out
    assert (tmp_path / "f" / "features.npy").read_bytes() == (world["feats"].path / "features.npy").read_bytes()
