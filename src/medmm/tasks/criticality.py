"""ICU criticality labels (MedCSP's downstream tasks), as FIDDLE-experiments defines them.

One row per ICU stay of a prepared dataset (`medmm.data.schema`: ``stays``, ``visits``,
``patients``, ``events``, ``measurements``); times are hours from the stay's ``in_time``.

Onsets (FIDDLE ``generate_labels.py``; item ids in `medmm.tasks.icu_items`):

* ARF (acute *respiratory* failure; the MedCSP paper's "renal" is a typo) onset = the earliest of
  the first PEEP-set chart value (``measurements`` source "chart", item 220339) and the first
  start of invasive / non-invasive ventilation (``events`` source "procedure", items 225792 /
  225794). Procedure rows count whatever their status, as in FIDDLE, if they have an end time.
* Shock onset = the first start of a vasopressor (``events`` source "input": norepinephrine
  221906, epinephrine 221289, dopamine 221662, vasopressin 222315, phenylephrine 221749), over the
  input rows FIDDLE keeps (``extract_data.py``): status not "Rewritten", amount > 0, amount unit
  not "/hour", an end time, and not a rate row whose amount unit is "dose".
* Events are attributed to a stay by their stay id (FIDDLE joins on ICUSTAY_ID); an onset is not
  clipped to [in_time, out_time], so an onset before in_time is "before T".

Cohort at prediction time T (FIDDLE ``InclusionExclusion.ipynb``; the first matching reason is
the stay's exclusion, in this order):

1. ``not_metavision``: MIMIC-III stays whose ICUSTAYS.DBSOURCE is not "metavision" (the item
   ids are MetaVision's); ``dbsource_unknown`` when a MIMIC-III dataset has no DBSOURCE. Other
   sources (MIMIC-IV: all MetaVision) are not filtered (`metavision_only`).
2. ``age_under_18``: (in_time - birth_time) / 365.25 days < 18 (``age_unknown`` if no birth).
3. ``died_before_T``: the admission's death time < in_time + T.
4. ``icu_los_under_T``: out_time - in_time < T hours (or no out_time).
5. ARF and shock only: ``onset_before_T``, an onset < T. FIDDLE keeps onset >= T.

Labels, for the stays that remain: ARF / shock = an onset exists (it is then >= T);
mortality = in-hospital death (``visits.died_in_hospital``, HOSPITAL_EXPIRE_FLAG) — the cohort
FIDDLE's notebook writes as ``mortality_48.0h.csv`` (11,695 stays in MIMIC-III at T = 48; its
final mortality experiments used a benchmark subset of it, not reproduced here); readmission
(MedCSP; paper-notes: "define ours as MedM-PLM's 30-day label on the same ICU cohort") = the
patient's next hospital admission starts within 30 days of this admission's discharge
(`medmm.tasks.readmission.ReadmissionTask.label`), among the mortality cohort's stays whose
patient survived the admission (else ``died_in_hospital``; a NEWBORN admission is ``newborn``).

`criticality_labels` returns the per-stay frame; `criticality_counts` the per-task counts and
what the dataset could show (PEEP needs chart events, which neither public demo has); each task
is a small object (`ARFTask`, `ShockTask`, `MortalityTask`, `ICUReadmissionTask`) whose `build`
returns the cohort's samples with a patient split (`medmm.tasks.splits.with_split`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from medmm.data.schema import CanonicalDataset
from medmm.tasks.icu_items import PEEP_ITEMS, VASOPRESSOR_ITEMS, VENTILATION_ITEMS
from medmm.tasks.readmission import ReadmissionTask
from medmm.tasks.splits import with_split

TASKS = ("arf", "shock", "mortality", "readmission")
ONSET_TASKS = ("arf", "shock")
DEFAULT_T = 48.0
MIN_AGE = 18.0
_HOUR_US = 3600e6
_YEAR_US = 365.25 * 86400e6      # FIDDLE's age: seconds / 3600 / 24 / 365.25

# Exclusion reasons, in the order they are tested.
COMMON_EXCLUSIONS = ("dbsource_unknown", "not_metavision", "age_unknown", "age_under_18", "died_before_T",
                     "icu_los_under_T")


def _hours(col: str) -> pl.Expr:
    return (pl.col(col) - pl.col("in_time")).dt.total_microseconds() / _HOUR_US


def _first(lf: pl.LazyFrame, time_col: str, name: str) -> pl.LazyFrame:
    return (lf.filter(pl.col("stay_id").is_not_null() & pl.col(time_col).is_not_null())
            .group_by("stay_id").agg(pl.col(time_col).min().alias(name)))


def ventilation_rows(dataset: CanonicalDataset) -> pl.LazyFrame:
    """Procedure events that start a ventilation (ARF)."""
    return dataset.scan("events").filter(
        (pl.col("source") == "procedure") & pl.col("item_id").is_in(list(VENTILATION_ITEMS))
        & pl.col("end_time").is_not_null() & (pl.col("end_time") >= pl.col("start_time")))


def vasopressor_rows(dataset: CanonicalDataset) -> pl.LazyFrame:
    """Input events that start a vasopressor (shock), after FIDDLE's INPUTEVENTS_MV filters."""
    unit = pl.col("unit").fill_null("")
    return dataset.scan("events").filter(
        (pl.col("source") == "input") & pl.col("item_id").is_in(list(VASOPRESSOR_ITEMS))
        & (pl.col("status").fill_null("") != "Rewritten")
        & (pl.col("value") > 0).fill_null(False)
        & (unit != "/hour")
        & pl.col("end_time").is_not_null() & (pl.col("end_time") >= pl.col("start_time"))
        & ~(pl.col("rate_unit").is_not_null() & (unit == "dose")))


def peep_rows(dataset: CanonicalDataset) -> pl.LazyFrame:
    """Chart measurements of PEEP set with a value (ARF)."""
    return dataset.scan("measurements").filter(
        (pl.col("source") == "chart") & pl.col("item_id").is_in(list(PEEP_ITEMS)) & pl.col("value").is_not_null())


def onsets(dataset: CanonicalDataset) -> pl.DataFrame:
    """Per stay: the first PEEP, ventilation, ARF (the earlier of the two) and shock onsets, in hours
    from in_time (null = none)."""
    stays = dataset.scan("stays").select("stay_id", "in_time")
    firsts = [
        _first(peep_rows(dataset).rename({"time": "t"}), "t", "peep_time"),
        _first(ventilation_rows(dataset), "start_time", "ventilation_time"),
        _first(vasopressor_rows(dataset), "start_time", "shock_time"),
    ]
    lf = stays
    for f in firsts:
        lf = lf.join(f, on="stay_id", how="left")
    return lf.select(
        "stay_id",
        _hours("peep_time").alias("peep_onset"),
        _hours("ventilation_time").alias("ventilation_onset"),
        pl.min_horizontal(_hours("peep_time"), _hours("ventilation_time")).alias("arf_onset"),
        _hours("shock_time").alias("shock_onset"),
    ).collect().sort("stay_id")


def onset_inputs(dataset: CanonicalDataset) -> dict[str, Any]:
    """What the dataset holds for the onsets: row counts, and plain notes on what is absent."""
    ev = dataset.scan("events")
    n = lambda lf: lf.select(pl.len()).collect().item()  # noqa: E731
    chart = n(dataset.scan("measurements").filter(pl.col("source") == "chart"))
    out: dict[str, Any] = {
        "chart_rows": chart, "peep_rows": n(peep_rows(dataset)),
        "procedure_rows": n(ev.filter(pl.col("source") == "procedure")),
        "ventilation_rows": n(ventilation_rows(dataset)),
        "input_rows": n(ev.filter(pl.col("source") == "input")),
        "vasopressor_rows": n(vasopressor_rows(dataset)),
        "vasopressor_rows_before_filters": n(ev.filter((pl.col("source") == "input")
                                                       & pl.col("item_id").is_in(list(VASOPRESSOR_ITEMS)))),
    }
    notes = []
    if chart == 0:
        notes.append("PEEP absent: the dataset has no chart measurements (CHARTEVENTS / icu/chartevents not "
                     "read), so ARF onsets come from ventilation alone")
    elif out["peep_rows"] == 0:
        notes.append(f"PEEP absent: {chart:,} chart measurements but none of item {', '.join(map(str, PEEP_ITEMS))}")
    if out["procedure_rows"] == 0:
        notes.append("ventilation absent: no procedure events (PROCEDUREEVENTS_MV / icu/procedureevents not read)")
    if out["input_rows"] == 0:
        notes.append("vasopressors absent: no input events (INPUTEVENTS_MV / icu/inputevents not read)")
    out["notes"] = notes
    return out


def _metavision_only(dataset: CanonicalDataset, metavision_only: bool | None) -> bool:
    return dataset.manifest.source == "mimic3" if metavision_only is None else metavision_only


def criticality_labels(dataset: CanonicalDataset, T: float = DEFAULT_T, metavision_only: bool | None = None,
                       readmission_days: int = 30, log: Callable[[str], None] | None = None) -> pl.DataFrame:
    """One row per ICU stay: ids, in_time, dbsource, age, ICU length of stay and death time (hours),
    the onsets (hours from in_time), and for each task of `TASKS` ``{task}_label`` (bool; null when
    excluded) and ``{task}_exclusion`` (the reason; null when in the cohort). Definitions: module
    docstring. `metavision_only`: None = MIMIC-III datasets only. `log` is told what is absent.
    """
    if log is not None:
        for note in onset_inputs(dataset)["notes"]:
            log(f"criticality labels: {note}")
    stays = dataset.table("stays")
    visits = dataset.table("visits")
    patients = dataset.table("patients").select("patient_id", "birth_time")
    df = (stays.join(visits.select("visit_id", "death_time", "died_in_hospital", "admission_type"),
                     on="visit_id", how="left")
          .join(patients, on="patient_id", how="left")
          .join(onsets(dataset), on="stay_id", how="left"))
    df = df.with_columns(
        ((pl.col("in_time") - pl.col("birth_time")).dt.total_microseconds() / _YEAR_US).alias("age"),
        _hours("out_time").alias("los_hours"),
        _hours("death_time").alias("death_hours"),
    )
    mv = _metavision_only(dataset, metavision_only)
    rules: list[tuple[pl.Expr, str]] = []
    if mv:
        rules += [(pl.col("dbsource").is_null(), "dbsource_unknown"),
                  (pl.col("dbsource") != "metavision", "not_metavision")]
    rules += [(pl.col("age").is_null(), "age_unknown"),
              (pl.col("age") < MIN_AGE, "age_under_18"),
              (pl.col("death_hours") < T, "died_before_T"),
              (pl.col("los_hours").is_null() | (pl.col("los_hours") < T), "icu_los_under_T")]
    common = _first_reason(rules)
    df = df.with_columns(common.alias("__common"))

    readm = ReadmissionTask(window_days=readmission_days).label(visits).select(
        "visit_id", pl.col("label").alias("__readm"), pl.col("days_to_next").alias("readmission_days_to_next"))
    df = df.join(readm, on="visit_id", how="left")

    cols = []
    for task in ONSET_TASKS:
        excl = pl.coalesce(pl.col("__common"),
                           pl.when(pl.col(f"{task}_onset") < T).then(pl.lit("onset_before_T")))
        cols += [excl.alias(f"{task}_exclusion")]
    readm_excl = pl.coalesce(pl.col("__common"),
                             pl.when(pl.col("died_in_hospital").fill_null(False)).then(pl.lit("died_in_hospital")),
                             pl.when(pl.col("admission_type").fill_null("") == "NEWBORN").then(pl.lit("newborn")))
    cols += [pl.col("__common").alias("mortality_exclusion"), readm_excl.alias("readmission_exclusion")]
    df = df.with_columns(cols)
    label = {"arf": pl.col("arf_onset").is_not_null(), "shock": pl.col("shock_onset").is_not_null(),
             "mortality": pl.col("died_in_hospital").fill_null(False), "readmission": pl.col("__readm")}
    df = df.with_columns([pl.when(pl.col(f"{t}_exclusion").is_null()).then(label[t]).alias(f"{t}_label")
                          for t in TASKS])
    return df.select(
        "stay_id", "patient_id", "visit_id", "in_time", "dbsource", "age", "los_hours", "death_hours",
        "peep_onset", "ventilation_onset", "arf_onset", "shock_onset",
        *[c for t in TASKS for c in (f"{t}_label", f"{t}_exclusion")],
        "readmission_days_to_next",
    ).sort("stay_id")


def _first_reason(rules: Sequence[tuple[pl.Expr, str]]) -> pl.Expr:
    """The first matching rule's reason, else null. Null conditions count as false."""
    expr = None
    for cond, why in rules:
        expr = (pl.when(cond.fill_null(False)).then(pl.lit(why)) if expr is None
                else expr.when(cond.fill_null(False)).then(pl.lit(why)))
    return expr.otherwise(pl.lit(None, dtype=pl.String))


def criticality_counts(dataset: CanonicalDataset, T: float = DEFAULT_T, labels: pl.DataFrame | None = None,
                       **kwargs: Any) -> dict[str, Any]:
    """Per task: stays, cohort size, positives, negatives, exclusions by reason; plus `onset_inputs`
    (what the dataset holds for the onsets, and notes on what is absent, e.g. PEEP)."""
    labels = criticality_labels(dataset, T=T, **kwargs) if labels is None else labels
    tasks = {}
    for t in TASKS:
        lab = labels[f"{t}_label"]
        excl = labels.filter(pl.col(f"{t}_exclusion").is_not_null())[f"{t}_exclusion"].value_counts()
        tasks[t] = {"stays": labels.height, "cohort": int(lab.is_not_null().sum()),
                    "positive": int(lab.fill_null(False).sum()),
                    "negative": int((~lab.fill_null(True)).sum()),
                    "excluded": dict(sorted((k, int(v)) for k, v in excl.iter_rows()))}
    return {"source": dataset.manifest.source, "T": T, "tasks": tasks, "inputs": onset_inputs(dataset)}


def counts_lines(counts: dict[str, Any]) -> list[str]:
    """Plain-language lines of `criticality_counts`, for a log."""
    lines = [f"criticality labels ({counts['source']}, T = {counts['T']:g} h):"]
    for t, c in counts["tasks"].items():
        ex = ", ".join(f"{k} {v}" for k, v in c["excluded"].items()) or "none"
        lines.append(f"  {t:<12} cohort {c['cohort']:>6}  positive {c['positive']:>6}  negative {c['negative']:>6}"
                     f"  excluded: {ex}")
    i = counts["inputs"]
    lines.append(f"  onset rows: PEEP {i['peep_rows']}, ventilation {i['ventilation_rows']}, vasopressor "
                 f"{i['vasopressor_rows']} (of {i['vasopressor_rows_before_filters']} before FIDDLE's filters)")
    lines += [f"  note: {n}" for n in i["notes"]]
    return lines


# ---- tasks ----------------------------------------------------------------------------------------

@dataclass
class CriticalityTask:
    """A criticality task at prediction time `T`: `build(dataset)` -> the cohort's samples
    (stay_id, patient_id, visit_id, in_time, label, onset / days_to_next, split)."""

    T: float = DEFAULT_T
    split_seed: int = 0
    metavision_only: bool | None = None
    task: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return f"{self.task}_{self.T:g}h"

    def _labels(self, dataset: CanonicalDataset) -> pl.DataFrame:
        return criticality_labels(dataset, T=self.T, metavision_only=self.metavision_only)

    def build(self, dataset: CanonicalDataset) -> pl.DataFrame:
        lab = self._labels(dataset)
        extra = [f"{self.task}_onset"] if self.task in ONSET_TASKS else (
            ["readmission_days_to_next"] if self.task == "readmission" else [])
        df = lab.filter(pl.col(f"{self.task}_exclusion").is_null()).select(
            "stay_id", "patient_id", "visit_id", "in_time", pl.col(f"{self.task}_label").alias("label"), *extra)
        return with_split(df, seed=self.split_seed)


@dataclass
class ARFTask(CriticalityTask):
    """Acute respiratory failure after T hours in the ICU (FIDDLE "ARF"; MedCSP, T = 48).

    Onset = the first PEEP set (chart 220339) or ventilation start (procedure 225792 / 225794).
    Cohort: adult (MetaVision, for MIMIC-III) stays alive and in the ICU at T, without an onset
    before T. Label 1 = an onset at or after T.
    """

    task: ClassVar[str] = "arf"


@dataclass
class ShockTask(CriticalityTask):
    """Shock after T hours in the ICU (FIDDLE "Shock"; MedCSP, T = 48).

    Onset = the first start of a vasopressor (input 221906, 221289, 221662, 222315, 221749; not
    "Rewritten", amount > 0). Cohort as ARF. Label 1 = an onset at or after T.
    """

    task: ClassVar[str] = "shock"


@dataclass
class MortalityTask(CriticalityTask):
    """In-hospital mortality, predicted at T hours (FIDDLE; MedCSP, T = 48).

    Cohort: adult (MetaVision, for MIMIC-III) stays alive and in the ICU at T. Label 1 = the
    patient died in that hospital admission (HOSPITAL_EXPIRE_FLAG).
    """

    task: ClassVar[str] = "mortality"


@dataclass
class ICUReadmissionTask(CriticalityTask):
    """30-day readmission on the ICU cohort (MedCSP's readmission; MedM-PLM's label).

    Cohort: the mortality cohort at T, less stays whose patient died in the admission. Label 1 =
    the patient's next hospital admission starts within 30 days of this admission's discharge.
    """

    task: ClassVar[str] = "readmission"
    window_days: int = 30

    @property
    def name(self) -> str:
        return f"readmission_{self.window_days}d_icu_{self.T:g}h"

    def _labels(self, dataset: CanonicalDataset) -> pl.DataFrame:
        return criticality_labels(dataset, T=self.T, metavision_only=self.metavision_only,
                                  readmission_days=self.window_days)


# name -> task class
CRITICALITY_TASKS: dict[str, type[CriticalityTask]] = {
    "arf": ARFTask, "shock": ShockTask, "mortality": MortalityTask, "readmission": ICUReadmissionTask,
}

__all__ = ["TASKS", "COMMON_EXCLUSIONS", "onsets", "onset_inputs", "criticality_labels", "criticality_counts",
           "counts_lines", "CriticalityTask", "ARFTask", "ShockTask", "MortalityTask", "ICUReadmissionTask",
           "CRITICALITY_TASKS"]
