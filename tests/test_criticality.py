"""ICU criticality labels (`medmm.tasks.criticality`): hand-made timelines, checked stay by stay;
the MIMIC-III ICU event tables; both public demos against an independent Polars query over the raw
csv.gz files."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from medmm.data.schema import SCHEMAS, CanonicalDataset, write_rows
from medmm.data.sources import prepare
from medmm.tasks.criticality import counts_lines, criticality_counts, criticality_labels, icu_stay_records
from medmm.tasks.registry import task_class
from medmm.tasks.icu_items import PEEP_ITEMS, VASOPRESSOR_ITEMS, VENTILATION_ITEMS

T0 = datetime(2150, 1, 1, 0, 0)
VENT, NIV = sorted(VENTILATION_ITEMS)
NOREPI = 221906
PEEP = next(iter(PEEP_ITEMS))


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# ---- a hand-made canonical dataset ----------------------------------------------------------------

def write_dataset(root: Path, source: str, stays: list[dict], events: list[dict] = (),
                  chart: list[dict] = (), visits: list[dict] | None = None,
                  patients: list[dict] | None = None) -> CanonicalDataset:
    """A canonical dataset from row dicts (defaults: one patient and one visit per stay, patient born
    50 years before T0, a 200-hour admission around the stay)."""
    if patients is None:
        patients = [{"patient_id": s["patient_id"], "sex": "F", "birth_time": T0 - timedelta(days=50 * 365.25),
                     "death_time": None} for s in stays]
    if visits is None:
        visits = [{"visit_id": s["visit_id"], "patient_id": s["patient_id"], "admit_time": h(-10),
                   "discharge_time": h(200), "death_time": None, "admission_type": "EMERGENCY",
                   "died_in_hospital": False, "age": 50.0} for s in stays]
    base_stay = {"care_unit": "MICU", "dbsource": "metavision" if source == "mimic3" else None}
    base_event = {"end_time": None, "value": 1.0, "unit": "mg", "rate": None, "rate_unit": None, "value_time": None,
                  "order_id": None, "status": "FinishedRunning"}
    tables = {
        "patients": patients, "visits": visits, "stays": [{**base_stay, **s} for s in stays],
        "events": [{**base_event, **e} for e in events],
        "measurements": [{"visit_id": None, "source": "chart", "unit": "cmH2O", **m} for m in chart],
    }
    return write_rows(root, tables, source)


def stay(i: int, los: float = 100.0, **kw) -> dict:
    return {"stay_id": i, "visit_id": 100 + i, "patient_id": 1000 + i, "in_time": T0, "out_time": h(los), **kw}


def vent(i: int, start: float, item: int = VENT, end: float | None = None) -> dict:
    return {"patient_id": 1000 + i, "visit_id": 100 + i, "stay_id": i, "item_id": item, "source": "procedure",
            "start_time": h(start), "end_time": h(start + 5 if end is None else end), "value": 300.0, "unit": "min"}


def vaso(i: int, start: float, **kw) -> dict:
    return {"patient_id": 1000 + i, "visit_id": 100 + i, "stay_id": i, "item_id": NOREPI, "source": "input",
            "start_time": h(start), "end_time": h(start + 1), "value": 0.5, "unit": "mg", "rate": 0.1,
            "rate_unit": "mcg/kg/min", **kw}


def peep(i: int, t: float) -> dict:
    return {"patient_id": 1000 + i, "stay_id": i, "time": h(t), "item_id": PEEP, "value": 5.0}


@pytest.fixture
def timelines(tmp_path):
    stays = [
        stay(1),                        # ventilation at 30 h: onset before T = 48 -> excluded
        stay(2),                        # ventilation at 60 h -> positive
        stay(3),                        # nothing -> negative
        stay(4),                        # death at 40 h -> excluded from every task
        stay(5, los=30.0),              # left the ICU at 30 h -> excluded
        stay(6),                        # 17 years old -> excluded
        stay(7, dbsource="carevue"),    # CareVue -> excluded (MIMIC-III only)
        stay(8),                        # PEEP at 20 h, ventilation at 70 h -> ARF onset 20 -> excluded
        stay(9),                        # PEEP at 50 h -> positive; NIV at 55 h
        stay(10),                       # onset exactly at T -> positive (FIDDLE keeps onset >= T)
        stay(11),                       # death exactly at T (in hospital, ICU stay 48 h) -> included, dies
        stay(12),                       # vasopressors: Rewritten at 20 h, amount 0 at 25 h, real one at 50 h
        stay(13),                       # vasopressor at 10 h -> shock excluded; readmitted 10 days later
        stay(14),                       # ventilation before in_time (-2 h) -> onset before T
    ]
    events = [vent(1, 30), vent(2, 60), vent(8, 70), vent(9, 55, item=NIV), vent(10, 48), vent(14, -2),
              vaso(12, 20, status="Rewritten"), vaso(12, 25, value=0.0), vaso(12, 50), vaso(13, 10),
              vaso(2, 80, unit="/hour")]          # a wrong-unit row FIDDLE drops: stay 2 has no shock
    chart = [peep(8, 20), peep(9, 50)]
    visits = []
    for s in stays:
        i = s["stay_id"]
        v = {"visit_id": 100 + i, "patient_id": 1000 + i, "admit_time": h(-10), "discharge_time": h(200),
             "death_time": None, "admission_type": "EMERGENCY", "died_in_hospital": False, "age": 50.0}
        if i == 4:
            v.update(death_time=h(40), discharge_time=h(40), died_in_hospital=True)
        if i == 11:
            v.update(death_time=h(48), discharge_time=h(48), died_in_hospital=True)
        visits.append(v)
    # stay 13's patient comes back 10 days after discharge
    visits.append({"visit_id": 999, "patient_id": 1013, "admit_time": h(200 + 240), "discharge_time": h(500),
                   "death_time": None, "admission_type": "EMERGENCY", "died_in_hospital": False, "age": 50.0})
    patients = [{"patient_id": 1000 + s["stay_id"], "sex": "M", "death_time": None,
                 "birth_time": T0 - timedelta(days=(17 if s["stay_id"] == 6 else 50) * 365.25)} for s in stays]
    return {"stays": stays, "events": events, "chart": chart, "visits": visits, "patients": patients,
            "root": tmp_path}


def _ds(timelines, source: str = "mimic3", name: str = "ds") -> CanonicalDataset:
    t = timelines
    return write_dataset(t["root"] / name, source, t["stays"], t["events"], t["chart"], t["visits"], t["patients"])


def _by_stay(labels: pl.DataFrame, task: str) -> dict[int, object]:
    """stay -> label (True / False) or exclusion reason."""
    return {r["stay_id"]: (r[f"{task}_exclusion"] if r[f"{task}_exclusion"] is not None else r[f"{task}_label"])
            for r in labels.iter_rows(named=True)}


COMMON = {4: "died_before_T", 5: "icu_los_under_T", 6: "age_under_18", 7: "not_metavision"}


def test_timelines_arf_at_48h(timelines):
    lab = criticality_labels(_ds(timelines), T=48)
    assert lab.height == 14 and lab["stay_id"].to_list() == list(range(1, 15))
    assert _by_stay(lab, "arf") == {**COMMON, 1: "onset_before_T", 2: True, 3: False, 8: "onset_before_T", 9: True,
                                    10: True, 11: False, 12: False, 13: False, 14: "onset_before_T"}
    on = {r["stay_id"]: (r["peep_onset"], r["ventilation_onset"], r["arf_onset"]) for r in lab.iter_rows(named=True)}
    assert on[8] == (20.0, 70.0, 20.0) and on[9] == (50.0, 55.0, 50.0) and on[14] == (None, -2.0, -2.0)
    assert on[3] == (None, None, None)


def test_timelines_shock_mortality_readmission_at_48h(timelines):
    lab = criticality_labels(_ds(timelines), T=48)
    assert _by_stay(lab, "shock") == {**COMMON, 1: False, 2: False, 3: False, 8: False, 9: False, 10: False,
                                      11: False, 12: True, 13: "onset_before_T", 14: False}
    assert dict(zip(lab["stay_id"], lab["shock_onset"]))[12] == 50.0      # Rewritten and zero-amount rows skipped
    assert _by_stay(lab, "mortality") == {**COMMON, **{i: False for i in (1, 2, 3, 8, 9, 10, 12, 13, 14)}, 11: True}
    assert _by_stay(lab, "readmission") == {**COMMON, **{i: False for i in (1, 2, 3, 8, 9, 10, 12, 14)},
                                            11: "died_in_hospital", 13: True}
    assert dict(zip(lab["stay_id"], lab["readmission_days_to_next"]))[13] == pytest.approx(10.0)


def test_timelines_at_12h_and_mimic4(timelines):
    lab = criticality_labels(_ds(timelines), T=12)
    arf = _by_stay(lab, "arf")
    assert arf[1] is True and arf[2] is True and arf[8] is True      # onsets at 30, 60, 20 h: all >= 12 h
    assert arf[4] is False and _by_stay(lab, "mortality")[4] is True  # alive at 12 h, dies at 40 h
    assert arf[14] == "onset_before_T" and arf[5] is False and arf[6] == "age_under_18"
    assert _by_stay(lab, "shock")[13] == "onset_before_T" and _by_stay(lab, "shock")[12] is True
    # MIMIC-IV has no DBSOURCE (all MetaVision): the CareVue rule is MIMIC-III's only
    lab4 = criticality_labels(_ds(timelines, "mimic4", "ds4"), T=48)
    assert _by_stay(lab4, "arf")[7] is False
    assert criticality_labels(_ds(timelines, "mimic4", "ds4b"), T=48, metavision_only=True)["arf_exclusion"][0] \
        == "dbsource_unknown"


def test_counts_and_tasks(timelines):
    ds = _ds(timelines)
    c = criticality_counts(ds, T=48)
    arf = c["tasks"]["arf"]
    assert (arf["stays"], arf["cohort"], arf["positive"], arf["negative"]) == (14, 7, 3, 4)
    assert arf["excluded"] == {"age_under_18": 1, "died_before_T": 1, "icu_los_under_T": 1, "not_metavision": 1,
                               "onset_before_T": 3}
    assert c["tasks"]["mortality"]["cohort"] == 10 and c["tasks"]["mortality"]["positive"] == 1
    assert c["inputs"]["peep_rows"] == 2 and c["inputs"]["notes"] == []
    assert any("arf" in line for line in counts_lines(c))
    records = icu_stay_records(ds)
    assert records.height == 14 and records["stay_id"].is_sorted()
    for name, outcome in (("arf", "arf"), ("shock", "shock"), ("mortality", "mortality"),
                          ("icu_readmission", "readmission")):
        cls = task_class(name)
        task = cls()
        assert cls.__doc__ and task.outcome == outcome and cls.records == "icu_stays"
        s, spec = task.samples(records)
        assert s.height == c["tasks"][outcome]["cohort"] and int(s["label"].sum()) == c["tasks"][outcome]["positive"]
        assert set(s["split"]) <= {"train", "val", "test"} and s["split"].null_count() == 0
        assert spec.kind == "binary" and spec.num_labels == 1
        assert s.select("stay_id", "label").equals(
            criticality_labels(ds, T=48).filter(pl.col(f"{outcome}_exclusion").is_null())
            .select("stay_id", pl.col(f"{outcome}_label").alias("label")))
    assert task_class("arf")(T=12).label_name == "arf_12h" and task_class("shock")().label_name == "shock_48h"
    twelve, _ = task_class("arf")(T=12).samples(records)
    assert twelve.height == criticality_counts(ds, T=12)["tasks"]["arf"]["cohort"]


def test_peep_absence_is_said(timelines, tmp_path):
    t = timelines
    ds = write_dataset(tmp_path / "nochart", "mimic3", t["stays"], t["events"], [], t["visits"], t["patients"])
    said: list[str] = []
    lab = criticality_labels(ds, log=said.append)
    assert len(said) == 1 and "PEEP absent" in said[0] and "no chart measurements" in said[0]
    assert _by_stay(lab, "arf")[9] is True           # NIV at 55 h still makes an onset
    assert criticality_counts(ds, labels=lab)["inputs"]["peep_rows"] == 0


# ---- MIMIC-III ICU event tables -------------------------------------------------------------------

def test_mimic3_icu_event_tables_tiny(tmp_path):
    from test_mimic3 import raw_tables, write_mappings, write_raw

    t = raw_tables()
    t["ICUSTAYS"] = (t["ICUSTAYS"][0], [[1, 10, 100, 1000, "metavision", "MICU", "MICU", "2150-01-01 11:00:00",
                                         "2150-01-04 11:00:00", 3.0]])
    t["INPUTEVENTS_MV"] = (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTTIME", "ENDTIME", "ITEMID", "AMOUNT", "AMOUNTUOM",
         "RATE", "RATEUOM", "LINKORDERID", "STATUSDESCRIPTION"],
        [[1, 10, 100, 1000, "2150-01-03 12:00:00", "2150-01-03 13:00:00", NOREPI, 0.5, "mg", 0.1, "mcg/kg/min", 7,
          "FinishedRunning"],
         [2, 10, 100, 9999, "2150-01-03 12:00:00", "2150-01-03 13:00:00", NOREPI, 0.5, "mg", 0.1, "mcg/kg/min", 7,
          "FinishedRunning"],                                     # no such stay
         [3, 10, 100, 1000, "2150-01-03 12:00:00", "2150-01-03 11:00:00", NOREPI, 0.5, "mg", None, None, 8,
          "Rewritten"]])                                          # ends before it starts
    t["PROCEDUREEVENTS_MV"] = (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTTIME", "ENDTIME", "ITEMID", "VALUE", "VALUEUOM",
         "LINKORDERID", "STATUSDESCRIPTION"],
        [[1, 10, 100, 1000, "2150-01-02 11:00:00", "2150-01-03 11:00:00", VENT, 1440, "min", 9, "FinishedRunning"]])
    t["OUTPUTEVENTS"] = (["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "CHARTTIME", "ITEMID", "VALUE", "VALUEUOM",
                          "ISERROR"],
                         [[1, 10, 100, 1000, "2150-01-01 12:00:00", 40055, 35, "ml", None],
                          [2, 10, None, None, "2150-01-01 13:00:00", 40055, 30, "ml", None],   # kept, null ids
                          [3, 10, 100, 1000, "2150-01-01 14:00:00", 40055, 30, "ml", 1]])      # error
    t["DATETIMEEVENTS"] = (["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "ITEMID", "CHARTTIME", "VALUE",
                            "VALUEUOM", "ERROR"],
                           [[1, 10, 100, 1000, 225754, "2150-01-01 12:00:00", "2149-12-30 00:00:00", "Date", 0]])
    t["CHARTEVENTS"] = (t["CHARTEVENTS"][0], t["CHARTEVENTS"][1]
                        + [[5, 10, 100, 1000, PEEP, "2150-01-03 09:00:00", None, 1, "5", 5, "cmH2O", 0, 0, None,
                            None]])
    raw = write_raw(tmp_path / "raw", t)
    ds = prepare("mimic3", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"), progress=False)
    acc = {k: v.to_json() for k, v in ds.manifest.accounting.items()}
    assert acc["INPUTEVENTS_MV"] == {"read": 3, "kept": 1, "dropped": {"end_before_start": 1, "unknown_stay": 1}}
    assert acc["PROCEDUREEVENTS_MV"] == {"read": 1, "kept": 1, "dropped": {}}
    assert acc["OUTPUTEVENTS"] == {"read": 3, "kept": 2, "dropped": {"iserror": 1}}
    assert acc["DATETIMEEVENTS"] == {"read": 1, "kept": 1, "dropped": {}}
    ev = ds.table("events")
    assert ev.schema == pl.DataFrame(SCHEMAS["events"].empty_table()).schema
    assert ds.manifest.tables["events"] == ev.height == 5
    assert ev["source"].to_list() == ["input", "procedure", "output", "output", "datetime"]
    i = ev.row(0, named=True)
    assert (i["item_id"], i["stay_id"], i["value"], i["rate"], i["rate_unit"], i["order_id"], i["status"]) == (
        NOREPI, 1000, 0.5, 0.1, "mcg/kg/min", 7, "FinishedRunning")
    assert ev.row(4, named=True)["value_time"] == datetime(2149, 12, 30)
    assert ev.row(3, named=True)["stay_id"] is None
    assert ds.table("stays")["dbsource"].to_list() == ["metavision"]
    assert ds.table("measurements").filter(pl.col("item_id") == PEEP).height == 1
    lab = criticality_labels(ds, T=12).row(0, named=True)
    assert lab["ventilation_onset"] == 24.0 and lab["peep_onset"] == 46.0 and lab["shock_onset"] == 49.0
    assert (lab["arf_label"], lab["shock_label"]) == (True, True)


def test_mimic3_icu_event_tables_absent_are_said(tmp_path):
    from test_mimic3 import raw_tables, write_mappings, write_raw

    raw = write_raw(tmp_path / "raw", raw_tables())
    ds = prepare("mimic3", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"), progress=False)
    notes = " | ".join(ds.manifest.notes)
    for name in ("INPUTEVENTS_MV", "PROCEDUREEVENTS_MV", "OUTPUTEVENTS", "DATETIMEEVENTS"):
        assert f"{name}: not found" in notes and name not in ds.manifest.accounting
    assert ds.manifest.tables["events"] == 0


# ---- the public demos, against an independent query over the raw files ---------------------------

def _csv(path: Path) -> pl.DataFrame:
    """A raw MIMIC csv.gz, every column a string, headers lower-cased."""
    df = pl.read_csv(gzip.open(path).read(), infer_schema_length=0)
    return df.rename({c: c.lower() for c in df.columns})


def _ts(c: str) -> pl.Expr:
    return pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S", strict=True)


def _independent(raw: Path, mimic: int, T: float) -> tuple[pl.DataFrame, dict]:
    """FIDDLE's onsets, cohort and labels written directly over the raw files (plain Polars)."""
    d = (lambda m, n: raw / f"{n.upper()}.csv.gz") if mimic == 3 else (lambda m, n: raw / m / f"{n}.csv.gz")
    stay_col = "icustay_id" if mimic == 3 else "stay_id"
    icu = _csv(d("icu", "icustays")).with_columns(_ts("intime"), _ts("outtime"),
                                                  pl.col(stay_col).cast(pl.Int64).alias("stay"))
    if mimic == 3:
        icu = icu.filter(pl.col("dbsource") == "metavision")
    adm = _csv(d("hosp", "admissions")).with_columns(pl.col("deathtime").str.to_datetime(strict=False),
                                                     _ts("admittime"), _ts("dischtime"))
    pat = _csv(d("hosp", "patients"))
    hours = lambda c: (pl.col(c) - pl.col("intime")).dt.total_seconds() / 3600.0  # noqa: E731

    def first(name: str, items, extra: pl.Expr) -> pl.DataFrame:
        ev = _csv(d("icu", name)).with_columns(_ts("starttime"), _ts("endtime"), pl.col("itemid").cast(pl.Int64))
        ev = ev.filter(pl.col("itemid").is_in(list(items)) & (pl.col("endtime") >= pl.col("starttime")) & extra)
        return ev.group_by(pl.col(stay_col).cast(pl.Int64).alias("stay")).agg(pl.col("starttime").min().alias("t"))

    vent = first("procedureevents_mv" if mimic == 3 else "procedureevents", VENTILATION_ITEMS, pl.lit(True))
    amount = pl.col("amount").cast(pl.Float64)
    vaso = first("inputevents_mv" if mimic == 3 else "inputevents", VASOPRESSOR_ITEMS,
                 (pl.col("statusdescription") != "Rewritten") & (amount > 0) & (pl.col("amountuom") != "/hour")
                 & ~(pl.col("rateuom").is_not_null() & (pl.col("amountuom") == "dose")))
    df = (icu.join(vent.rename({"t": "vent_t"}), on="stay", how="left")
          .join(vaso.rename({"t": "vaso_t"}), on="stay", how="left")
          .join(adm.select("hadm_id", "deathtime", "hospital_expire_flag"), on="hadm_id", how="left")
          .join(pat, on="subject_id", how="left"))
    if mimic == 3:
        age = (pl.col("intime") - _ts("dob")).dt.total_seconds() / (365.25 * 86400)
    else:   # MIMIC's own recipe; medmm's mid-year birth time agrees away from the 18th birthday
        age = pl.col("anchor_age").cast(pl.Int64) + pl.col("intime").dt.year() - pl.col("anchor_year").cast(pl.Int64)
    df = df.with_columns(hours("vent_t").alias("vent"), hours("vaso_t").alias("vaso"),
                         (pl.col("los").cast(pl.Float64) * 24).alias("los_h"), age.alias("age"))
    onsets = df.select("stay", "vent", "vaso")
    # InclusionExclusion.ipynb
    df = df.filter(pl.col("age") >= 18)
    df = df.filter((pl.col("deathtime") >= pl.col("intime") + timedelta(hours=T)) | pl.col("deathtime").is_null())
    cohort = df.filter(pl.col("los_h") >= T)
    out = {}
    for task, col in (("arf", "vent"), ("shock", "vaso")):
        pop = cohort.filter((pl.col(col) >= T) | pl.col(col).is_null())
        out[task] = (pop.height, pop.filter(pl.col(col).is_not_null()).height)
    out["mortality"] = (cohort.height, cohort.filter(pl.col("hospital_expire_flag") == "1").height)
    # readmission: next admission of the patient within 30 days of discharge, survivors only
    nxt = adm.sort("subject_id", "admittime").with_columns(
        pl.col("admittime").shift(-1).over("subject_id").alias("next"))
    nxt = nxt.select("hadm_id", ((pl.col("next") - pl.col("dischtime")) <= timedelta(days=30)).fill_null(False)
                     .alias("readm"))
    surv = cohort.filter(pl.col("hospital_expire_flag") == "0").join(nxt, on="hadm_id", how="left")
    out["readmission"] = (surv.height, int(surv["readm"].sum()))
    return onsets, out


@pytest.fixture(scope="module")
def demos(shared_data, tmp_path_factory):
    m = shared_data / "mappings"
    maps = {"ndc_rxnorm": m / "ndc2rxnorm_mapping.txt", "drug_atc": m / "mimic_drug_to_atc.csv.gz"}
    root = tmp_path_factory.mktemp("demos")
    return {3: (shared_data / "mimic3-demo", prepare("mimic3", shared_data / "mimic3-demo", root / "m3",
                                                     mappings=maps, progress=False)),
            4: (shared_data / "mimic4-demo", prepare("mimic4", shared_data / "mimic4-demo", root / "m4",
                                                     mappings=maps, progress=False))}


@pytest.mark.parametrize("mimic", [3, 4])
def test_demo_matches_independent_query(demos, mimic):
    raw, ds = demos[mimic]
    acc = ds.manifest.accounting
    assert all(a.balanced for a in acc.values())
    lab = criticality_labels(ds, T=48)
    c = criticality_counts(ds, labels=lab)
    print(f"\nMIMIC-{'III' if mimic == 3 else 'IV'} demo")
    print("\n".join(counts_lines(c)))
    assert c["inputs"]["peep_rows"] == 0 and any("PEEP absent" in n for n in c["inputs"]["notes"])
    onsets, want = _independent(raw, mimic, 48.0)
    assert {t: (v["cohort"], v["positive"]) for t, v in c["tasks"].items()} == want
    # onsets stay by stay (the MetaVision stays, for MIMIC-III)
    got = lab.filter(pl.col("stay_id").is_in(onsets["stay"].implode())).select(
        pl.col("stay_id").alias("stay"), "ventilation_onset", "shock_onset")
    both = onsets.join(got, on="stay", how="full", coalesce=True)
    assert both.height == onsets.height == got.height
    for a, b in (("vent", "ventilation_onset"), ("vaso", "shock_onset")):
        assert (both[a].is_null() == both[b].is_null()).all(), a
        assert ((both[a] - both[b]).abs().fill_null(0) < 1e-6).all(), a
    print(f"  onsets: ventilation {both['vent'].is_not_null().sum()} stays, vasopressor "
          f"{both['vaso'].is_not_null().sum()} stays (agree with the raw-file query)")
    for T in (4.0, 12.0):       # FIDDLE's own ARF / shock prediction times
        ct = criticality_counts(ds, T=T)
        _, want_t = _independent(raw, mimic, T)
        assert {t: (ct["tasks"][t]["cohort"], ct["tasks"][t]["positive"]) for t in ("arf", "shock")} == \
            {t: want_t[t] for t in ("arf", "shock")}


def test_mimic3_demo_icu_events_accounted(demos):
    _, ds = demos[3]
    acc = ds.manifest.accounting
    for name, n in (("INPUTEVENTS_MV", 13224), ("PROCEDUREEVENTS_MV", 753), ("OUTPUTEVENTS", 11320),
                    ("DATETIMEEVENTS", 15551)):
        assert acc[name].read == n and acc[name].balanced, name
    ev = ds.table("events")
    assert ev.height == ds.manifest.tables["events"] == sum(acc[n].kept for n in (
        "INPUTEVENTS_MV", "PROCEDUREEVENTS_MV", "OUTPUTEVENTS", "DATETIMEEVENTS"))
    assert dict(ds.table("stays")["dbsource"].value_counts().iter_rows()) == {"metavision": 77, "carevue": 59}
