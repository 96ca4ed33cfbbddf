from datetime import datetime, timedelta

import polars as pl

from medmm.tasks.readmission import ReadmissionTask


def _timeline():
    d = datetime(2150, 1, 1)
    rows = [
        # patient 1: readmitted exactly 30 days after discharge (positive), then 31 days (negative), last visit
        (1, 10, d, d + timedelta(days=5), False),
        (1, 11, d + timedelta(days=35), d + timedelta(days=40), False),
        (1, 12, d + timedelta(days=71), d + timedelta(days=75), False),
        # patient 2: a single visit -> negative
        (2, 20, d, d + timedelta(days=3), False),
        # patient 3: dies in hospital at the first visit -> excluded even though a row follows
        (3, 30, d, d + timedelta(days=2), True),
        (3, 31, d + timedelta(days=10), d + timedelta(days=12), False),
    ]
    return pl.DataFrame(rows, schema=["patient_id", "visit_id", "admit_time", "discharge_time", "died_in_hospital"],
                        orient="row")


def test_readmission_30_day_boundary_single_visits_and_deaths():
    out = ReadmissionTask().label(_timeline())
    got = dict(zip(out["visit_id"], out["label"]))
    assert got == {10: True, 11: False, 12: False, 20: False, 31: False}
    assert out.filter(pl.col("visit_id") == 10)["days_to_next"].item() == 30.0


def test_readmission_window_is_configurable():
    out = ReadmissionTask(window_days=31).label(_timeline())
    assert dict(zip(out["visit_id"], out["label"]))[11] is True


def test_undersampling_balances_each_split():
    import numpy as np
    rng = np.random.default_rng(0)
    rows, vid = [], 0
    d = datetime(2150, 1, 1)
    for pid in range(400):
        t = d
        for _ in range(3):
            vid += 1
            rows.append((pid, vid, t, t + timedelta(days=2), False))
            t = t + timedelta(days=2 + int(rng.integers(5, 90)))
    df = pl.DataFrame(rows, schema=["patient_id", "visit_id", "admit_time", "discharge_time", "died_in_hospital"],
                      orient="row")
    out = ReadmissionTask(balance="undersample").build(df)
    for split in ("train", "val", "test"):
        s = out.filter(pl.col("split") == split)
        assert s["label"].sum() == (~s["label"]).sum() > 0


def _records():
    d = datetime(2150, 1, 1)
    rows = [
        (1, 10, d, d + timedelta(days=2), "a", ["4019"], ["C07A"]),
        (1, 11, d + timedelta(days=40), d + timedelta(days=42), "b", ["4280", "4019"], ["C03C", "C07A"]),
        (1, 12, d + timedelta(days=90), d + timedelta(days=92), None, ["4280"], []),
        (2, 20, d, d + timedelta(days=1), "c", ["486"], ["J01D"]),
    ]
    return pl.DataFrame(rows, schema=["patient_id", "visit_id", "admit_time", "discharge_time", "text", "dx", "med"],
                        orient="row")


def test_medication_samples_use_only_earlier_visits():
    from medmm.tasks.medication import MedicationTask
    out = MedicationTask().build(_records())
    # patient 2 has one visit (excluded); visit 12 has no medication target (excluded)
    assert out["visit_id"].to_list() == [11]
    row = out.row(0, named=True)
    assert row["history_visit_ids"] == [10]
    assert row["dx"] == ["4280", "4019"] and row["target_med"] == ["C03C", "C07A"]


def test_icd_coding_label_sets():
    from medmm.tasks.icd_coding import ICDCodingTask
    recs = _records().with_columns(pl.lit("train").alias("forced"))
    samples, labels = ICDCodingTask(label_set="full", split_seed=0).build(recs)
    # visit 12 has no note -> excluded; labels are training-split codes only
    assert 12 not in samples["visit_id"].to_list()
    assert set(labels) <= {"4019", "4280", "486"}
    s2, top1 = ICDCodingTask(top_k=1).build(recs)
    assert len(top1) == 1 and all(lab == top1 for lab in s2["labels"].to_list())
