"""One row per hospital visit with everything the MedM-PLM tasks read from it.

This is the join every MedM-PLM task starts from: a visit's discharge summary text and its
ordered diagnosis, procedure and medication codes, with the visit's times for the label
definitions. Built lazily from the canonical tables; nothing here knows about models.
"""

from __future__ import annotations

import polars as pl

from medmm.data.schema import ATC3, ICD9_DX, ICD9_PROC, CanonicalDataset

DISCHARGE_SUMMARY = "discharge summary"


def visit_records(ds: CanonicalDataset, note_category: str = DISCHARGE_SUMMARY) -> pl.DataFrame:
    """Columns: patient_id, visit_id, admit_time, discharge_time, admission_type, died_in_hospital,
    text (str or null), dx / proc / med (list[str], in recorded order; empty list if none).

    Several discharge summaries of one visit (MIMIC-III keeps addenda as separate rows) are
    joined in note_id order, as ClinicalBERT did.
    """
    codes = ds.scan("codes")

    def code_list(system: str, name: str) -> pl.LazyFrame:
        return (codes.filter(pl.col("system") == system)
                .sort(["visit_id", "seq"])
                .group_by("visit_id", maintain_order=True)
                .agg(pl.col("code").alias(name)))

    notes = (ds.scan("notes").filter(pl.col("category") == note_category)
             .sort(["visit_id", "note_id"])
             .group_by("visit_id", maintain_order=True)
             .agg(pl.col("text").str.join(" ").alias("text")))
    visits = ds.scan("visits").select("patient_id", "visit_id", "admit_time", "discharge_time",
                                        "admission_type", "died_in_hospital")
    out = visits
    for sys_, name in ((ICD9_DX, "dx"), (ICD9_PROC, "proc"), (ATC3, "med")):
        out = out.join(code_list(sys_, name), on="visit_id", how="left")
    out = out.join(notes, on="visit_id", how="left").with_columns(
        [pl.col(c).fill_null(pl.lit([], dtype=pl.List(pl.String))) for c in ("dx", "proc", "med")])
    return out.sort(["patient_id", "admit_time", "visit_id"]).collect()
