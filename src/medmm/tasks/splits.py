"""The one place that decides which patient belongs to which split.

Every task and the pre-training data read their split from here, so a patient held out for a
downstream test split can never appear in pre-training or in another task's training data.
The assignment is a pure function of (seed, patient_id): it does not depend on which patients
a task happens to include, so the MedM-PLM medication task (multi-visit patients only) and the
readmission task (all patients) agree on every shared patient.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)  # G-BERT / MedM-PLM protocol, 8:1:1 by patient


def _uniform(patient_ids: np.ndarray, seed: int) -> np.ndarray:
    """A stable pseudo-uniform number in [0, 1) per patient id, independent of order."""
    # splitmix64 over (id xor seed-hash): vectorised, portable, no Python loop per patient.
    salt = int.from_bytes(hashlib.sha256(f"medmm-split-{seed}".encode()).digest()[:8], "little")
    x = patient_ids.astype(np.uint64) ^ np.uint64(salt)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(patient_ids, seed: int = 0, ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> pl.DataFrame:
    """Return a frame (patient_id, split) with split in {"train", "val", "test"}."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    ids = np.unique(np.asarray(patient_ids, dtype=np.int64))
    u = _uniform(ids, seed)
    cut1, cut2 = ratios[0], ratios[0] + ratios[1]
    split = np.where(u < cut1, "train", np.where(u < cut2, "val", "test"))
    return pl.DataFrame({"patient_id": ids, "split": split})


def with_split(frame: pl.DataFrame | pl.LazyFrame, seed: int = 0,
               ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> pl.DataFrame:
    """Attach the `split` column to any frame that has a `patient_id` column."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    return df.join(assign_splits(df["patient_id"].unique().to_numpy(), seed, ratios), on="patient_id", how="left")
