"""The label space of the multi-label tasks comes from the TRAINING split only: a code seen only in
validation or test patients is never a label (it could not be learned, and choosing labels with
the test patients in view would leak them), and ICD coding's top-k ranks codes by training counts."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from medmm.recipes.finetune import FinetuneConfig, load_records, task_samples
from medmm.tasks.splits import with_split


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> pl.DataFrame:
    from medmm.data.sources import prepare
    from medmm.data.synth import generate

    root = tmp_path_factory.mktemp("labels")
    generate(root / "raw", n_patients=300, seed=4, card=False)
    prepare("mimic3", root / "raw", root / "ds", mappings={"dir": root / "raw" / "mappings"}, progress=False,
            include_labs=False)
    return load_records(root / "ds")


def _plant(records: pl.DataFrame, col: str, train_code: str, heldout_code: str, seed: int) -> pl.DataFrame:
    """Add `train_code` to every visit of a training patient and `heldout_code` to every other visit."""
    split = with_split(records.select("patient_id").unique(), seed=seed).select("patient_id", "split")
    r = records.join(split, on="patient_id", how="left")
    code = pl.when(pl.col("split") == "train").then(pl.lit(train_code)).otherwise(pl.lit(heldout_code))
    return r.with_columns(pl.concat_list(pl.col(col), code).alias(col)).drop("split")


@pytest.mark.parametrize("task,col", [("medication", "med"), ("icd_coding", "dx")])
def test_codes_of_heldout_patients_are_never_labels(records, task, col):
    cfg = FinetuneConfig(icd_label_set="full")
    planted = _plant(records, col, "TRAIN_ONLY", "HELDOUT_ONLY", cfg.split_seed)
    samples, spec = task_samples(task, planted, cfg)
    assert "TRAIN_ONLY" in spec.label_names
    assert "HELDOUT_ONLY" not in spec.label_names
    # ... although the held-out code does occur in the held-out samples' raw codes.
    assert samples.filter(pl.col("split") != "train").height > 0


def test_icd_top_k_ranks_by_training_counts(records):
    cfg = FinetuneConfig(icd_label_set="top50", icd_top_k=5)
    # A code in every held-out visit, absent from training: the most frequent code overall would
    # top a count taken over all splits, but must not enter the top 5.
    planted = _plant(records, "dx", "4019", "HELDOUT_ONLY", cfg.split_seed)
    samples, spec = task_samples("icd_coding", planted, cfg)
    train = with_split(planted.filter(pl.col("text").is_not_null() & (pl.col("dx").list.len() > 0)),
                       seed=cfg.split_seed).filter(pl.col("split") == "train")
    counts = Counter(c for codes in train["dx"].to_list() for c in set(codes))
    expected = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:5]
    assert spec.label_names == expected
    assert "HELDOUT_ONLY" not in spec.label_names
