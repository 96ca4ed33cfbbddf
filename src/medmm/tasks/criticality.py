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

`stay_outcomes` gives each stay's onsets and outcomes whatever T; `labels_at` the cohort and
labels at T; `criticality_labels` both for a dataset; `criticality_counts` the per-task counts and
what the dataset could show (PEEP needs chart events, which neither public demo has). The tasks
of the registry (`medmm.tasks.registry`: ``arf``, ``shock``, ``mortality``, ``icu_readmission``,
one file each) are `ICUTask`s over `icu_stay_records`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl

from medmm.data.schema import CanonicalDataset
from medmm.tasks.base import Task, require_columns
from medmm.tasks.icu_items import PEEP_ITEMS, VASOPRESSOR_ITEMS, VENTILATION_ITEMS
from medmm.tasks.readmission import ReadmissionTask
from medmm.tasks.spec import TaskSpec
from medmm.tasks.splits import with_split

TASKS = ("arf", "shock", "mortality", "readmission")
ONSET_TASKS = ("arf", "shock")
DEFAULT_T = 48.0
MIN_AGE = 18.0
_HOUR_US = 3600e6
_YEAR_US = 365.25 * 86400e6      # FIDDLE's age: seconds / 3600 / 24 / 365.25

# The columns of `stay_outcomes`: what `labels_at` (and so every ICU task) reads.
OUTCOME_COLUMNS = ("stay_id", "patient_id", "visit_id", "in_time", "dbsource", "source", "age", "los_hours",
                   "death_hours", "died_in_hospital", "admission_type", "peep_onset", "ventilation_onset",
                   "arf_onset", "shock_onset", "readmitted", "readmission_days_to_next")

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


def stay_outcomes(dataset: CanonicalDataset, readmission_days: int = 30,
                  log: Callable[[str], None] | None = None) -> pl.DataFrame:
    """One row per ICU stay, whatever the prediction time: ids, in_time, dbsource, the dataset's
    ``source``, age, ICU length of stay and death time (hours), died_in_hospital, admission_type,
    the onsets (hours from in_time), ``readmitted`` (the next admission within
    `readmission_days` of discharge; null for a visit the readmission label leaves out) and
    ``readmission_days_to_next``. `log` is told what is absent."""
    if log is not None:
        for note in onset_inputs(dataset)["notes"]:
            log(f"criticality labels: {note}")
    stays = dataset.table("stays")
    visits = dataset.table("visits")
    patients = dataset.table("patients").select("patient_id", "birth_time")
    readm = ReadmissionTask(window_days=readmission_days).label(visits).select(
        "visit_id", pl.col("label").alias("readmitted"), pl.col("days_to_next").alias("readmission_days_to_next"))
    df = (stays.join(visits.select("visit_id", "death_time", "died_in_hospital", "admission_type"),
                     on="visit_id", how="left")
          .join(patients, on="patient_id", how="left")
          .join(onsets(dataset), on="stay_id", how="left")
          .join(readm, on="visit_id", how="left"))
    return df.with_columns(
        pl.lit(dataset.manifest.source).alias("source"),
        ((pl.col("in_time") - pl.col("birth_time")).dt.total_microseconds() / _YEAR_US).alias("age"),
        _hours("out_time").alias("los_hours"),
        _hours("death_time").alias("death_hours"),
    ).select(OUTCOME_COLUMNS).sort("stay_id")


def labels_at(outcomes: pl.DataFrame, T: float = DEFAULT_T, metavision_only: bool | None = None) -> pl.DataFrame:
    """`stay_outcomes` (or frames with its columns) plus, for each task of `TASKS`,
    ``{task}_label`` (bool; null when excluded) and ``{task}_exclusion`` (the reason; null when in
    the cohort) at prediction time `T`. `metavision_only`: None = when ``source`` is mimic3."""
    if metavision_only is None:
        metavision_only = outcomes.height > 0 and outcomes["source"][0] == "mimic3"
    rules: list[tuple[pl.Expr, str]] = []
    if metavision_only:
        rules += [(pl.col("dbsource").is_null(), "dbsource_unknown"),
                  (pl.col("dbsource") != "metavision", "not_metavision")]
    rules += [(pl.col("age").is_null(), "age_unknown"),
              (pl.col("age") < MIN_AGE, "age_under_18"),
              (pl.col("death_hours") < T, "died_before_T"),
              (pl.col("los_hours").is_null() | (pl.col("los_hours") < T), "icu_los_under_T")]
    df = outcomes.with_columns(_first_reason(rules).alias("__common"))
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
             "mortality": pl.col("died_in_hospital").fill_null(False), "readmission": pl.col("readmitted")}
    return df.with_columns([pl.when(pl.col(f"{t}_exclusion").is_null()).then(label[t]).alias(f"{t}_label")
                            for t in TASKS]).drop("__common")


def criticality_labels(dataset: CanonicalDataset, T: float = DEFAULT_T, metavision_only: bool | None = None,
                       readmission_days: int = 30, log: Callable[[str], None] | None = None) -> pl.DataFrame:
    """One row per ICU stay: ids, in_time, dbsource, age, ICU length of stay and death time (hours),
    the onsets (hours from in_time), and for each task of `TASKS` ``{task}_label`` (bool; null when
    excluded) and ``{task}_exclusion`` (the reason; null when in the cohort). Definitions: module
    docstring. `metavision_only`: None = MIMIC-III datasets only. `log` is told what is absent.
    """
    df = labels_at(stay_outcomes(dataset, readmission_days, log), T, _metavision_only(dataset, metavision_only))
    return df.select(
        "stay_id", "patient_id", "visit_id", "in_time", "dbsource", "age", "los_hours", "death_hours",
        "peep_onset", "ventilation_onset", "arf_onset", "shock_onset",
        *[c for t in TASKS for c in (f"{t}_label", f"{t}_exclusion")],
        "readmission_days_to_next",
    )


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

def icu_stay_records(ds: CanonicalDataset) -> pl.DataFrame:
    """The records the ICU tasks start from: `stay_outcomes` (30-day readmission) with the stay's
    admission's `medmm.tasks.visits.visit_records` columns (discharge summary ``text``, ``dx`` /
    ``proc`` / ``med`` codes, admit / discharge times), one row per ICU stay, by stay_id."""
    from medmm.tasks.visits import visit_records

    visits = visit_records(ds).select("visit_id", "admit_time", "discharge_time", "text", "dx", "proc", "med")
    return stay_outcomes(ds).join(visits, on="visit_id", how="left").sort("stay_id")


class ICUTask(Task):
    """An ICU task at prediction time T (`FinetuneConfig.icu_prediction_hours`, 48 by default):
    the cohort and label of `labels_at` for `outcome`, one sample per ICU stay, split by patient.

    Inputs: the stay's first T hours as FIDDLE features (`medmm.tasks.timeseries`, the directory
    `FinetuneConfig.timeseries` names, built with the same T and split seed) -- ``timeseries`` (T/dt
    x F one-hots) and ``demographics`` (its static features: age, sex, admission type, care unit,
    hours from admission to ICU). Not the admission's codes or discharge summary: both are written
    at discharge, after T, and a code such as 518.81 (acute respiratory failure) states the label.
    """

    kind = "binary"
    records = "icu_stays"
    provides = frozenset({"timeseries", "demographics"})
    options = ("split_seed", "icu_prediction_hours", "timeseries")
    outcome: ClassVar[str] = ""
    metric_definitions = {
        "auroc": "area under the ROC curve (ties count 1/2); the default model-selection metric (MedCSP Table 2).",
        "auprc": "average precision, the step-wise area under the precision-recall curve (MedCSP Table 2's AUPRC).",
        "f1": "F1 of the positive class at p >= 0.5.",
        "accuracy": "fraction of stays classified correctly at p >= 0.5.",
    }

    def __init__(self, T: float = DEFAULT_T, split_seed: int = 0, timeseries: str | None = None,
                 metavision_only: bool | None = None):
        self.T, self.split_seed, self.timeseries = float(T), split_seed, timeseries
        self.metavision_only = metavision_only
        self._features: Any = None

    @classmethod
    def from_config(cls, cfg: Any) -> ICUTask:
        return cls(T=cfg.icu_prediction_hours, split_seed=cfg.split_seed, timeseries=cfg.timeseries)

    @property
    def label_name(self) -> str:
        return f"{self.outcome}_{self.T:g}h"

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        require_columns(records, OUTCOME_COLUMNS, f"{self.name} records (expected icu_stay_records)")
        lab = labels_at(records, self.T, self.metavision_only)
        df = (lab.filter(pl.col(f"{self.outcome}_exclusion").is_null())
              .with_columns(pl.col(f"{self.outcome}_label").alias("label")))
        return with_split(df, seed=self.split_seed).sort("stay_id"), self.spec([self.label_name])

    def describe_samples(self) -> str:
        return (f"{self.title} samples: ICU stays alive and in the ICU at {self.T:g} h (FIDDLE's cohort; "
                "MetaVision stays for MIMIC-III), one per stay.")

    def time_series(self) -> Any:
        """The FIDDLE feature directory, opened once and checked against this task's T and split."""
        if self._features is None:
            from medmm.tasks.timeseries import TimeSeriesFeatures

            if not self.timeseries:
                raise ValueError(f"task {self.name!r} reads the first {self.T:g} h of each stay: set "
                                 "finetune.timeseries to a directory of medmm.tasks.timeseries features")
            f = TimeSeriesFeatures(self.timeseries)
            if f.config.T != self.T:
                raise ValueError(f"{f.path}: features of the first {f.config.T:g} h, but task {self.name!r} "
                                 f"predicts at {self.T:g} h (finetune.icu_prediction_hours); they must agree")
            if f.config.split_seed != self.split_seed:
                raise ValueError(f"{f.path}: features fitted on the training stays of split seed "
                                 f"{f.config.split_seed}, but the task splits with seed {self.split_seed}")
            self._features = f
        return self._features

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        f = self.time_series()
        missing = samples.filter(~pl.col("stay_id").is_in(f.stay_ids.tolist()))
        if missing.height:
            raise ValueError(f"{f.path}: no features for stay {missing['stay_id'][0]} ({missing.height} of the "
                             f"{self.name} samples); build them from the same prepared dataset")
        rows = [f.index(s) for s in samples["stay_id"].to_list()]
        feats = {"timeseries": [f.features[i] for i in rows], "demographics": [f.static[i] for i in rows]}
        return feats, samples["label"].cast(pl.Float32).to_numpy().astype(np.float32)


__all__ = ["TASKS", "COMMON_EXCLUSIONS", "onsets", "onset_inputs", "stay_outcomes", "labels_at",
           "criticality_labels", "criticality_counts", "counts_lines", "icu_stay_records", "ICUTask"]
