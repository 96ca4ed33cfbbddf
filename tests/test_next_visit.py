"""Next-visit diagnosis prediction: labels on a hand-made timeline, no input from the next
admission, recall@k by hand, and the task in `medmm experiment` for LR, G-BERT and MedM-PLM."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from pytest import approx

from medmm.eval.metrics import recall_at_k
from medmm.tasks.next_visit import NextVisitDiagnosis
from medmm.tasks.registry import TASKS, task_class

T0 = datetime(2130, 1, 1)


def timeline(n_patients: int = 40) -> pl.DataFrame:
    """Per patient p: three admissions whose visit ids run AGAINST time (so order must come
    from admit_time), the last one without diagnoses; every 4th patient has one admission only."""
    rows = []
    for p in range(1, n_patients + 1):
        if p % 4 == 0:
            rows.append((p, 10 * p, 0, ["single"], ["M0"]))
            continue
        rows += [(p, 10 * p + 3, 0, ["a1", "a2"], ["M1"]),   # first admission
                 (p, 10 * p + 2, 40, ["b1"], ["M2"]),         # second
                 (p, 10 * p + 1, 90, ["c1", "a1"], []),       # third
                 (p, 10 * p + 5, 120, [], ["M3"])]            # fourth: no diagnosis code
    return pl.DataFrame({
        "patient_id": [r[0] for r in rows], "visit_id": [r[1] for r in rows],
        "admit_time": [T0 + timedelta(days=r[2]) for r in rows],
        "discharge_time": [T0 + timedelta(days=r[2] + 5) for r in rows],
        "dx": [r[3] for r in rows], "med": [r[4] for r in rows],
        "text": [f"note of {r[1]}" for r in rows]})


def test_labels_follow_the_timeline_and_exclude_single_admissions() -> None:
    samples, spec = NextVisitDiagnosis().samples(timeline())
    p1 = samples.filter(pl.col("patient_id") == 1).sort("visit_id", descending=True)
    # admission 13 -> next is 12 (b1); 12 -> 11 (c1, a1); 11 -> 15 has no diagnosis: excluded; 15 is last.
    assert p1["visit_id"].to_list() == [13, 12]
    assert p1["next_visit_id"].to_list() == [12, 11]
    assert p1["next_dx"].to_list() == [["b1"], ["c1", "a1"]]
    assert p1["history_visit_ids"].to_list() == [[13], [13, 12]]  # the current admission included
    assert samples.filter(pl.col("patient_id") % 4 == 0).height == 0  # one admission: no sample
    assert samples.height == 2 * 30
    assert spec.kind == "multilabel" and spec.history and set(spec.label_names) == {"a1", "b1", "c1"}
    assert spec.label_names[0] in {"a1", "b1", "c1"}  # most frequent first (ties by code)
    assert set(samples["split"].unique()) <= {"train", "val", "test"}


def test_no_input_comes_from_the_next_admission() -> None:
    records = timeline()
    task = NextVisitDiagnosis(max_history=1)
    samples, spec = task.samples(records)
    notes = {v: [f"tok{v}"] for v in records["visit_id"].to_list()}

    def encode(dx, med):
        return ["[CLS]"] + list(dx) + list(med)

    feats, labels = task.features(samples, records, spec, encode, notes)
    for i, (v, nxt) in enumerate(zip(samples["visit_id"].to_list(), samples["next_visit_id"].to_list())):
        seen = {t for note in feats["hist_input_ids"][i] for t in note}
        assert f"tok{nxt}" not in seen and seen == {f"tok{v}"}  # max_history=1: the current note only
        codes = set(feats["code_ids"][i]) | {c for h in feats["hist_code_ids"][i] for c in h}
        nxt_dx = records.filter(pl.col("visit_id") == nxt)["dx"].to_list()[0]
        assert not (set(nxt_dx) - set(records.filter(pl.col("visit_id") == v)["dx"].to_list()[0])) & codes
    assert labels.shape == (samples.height, spec.num_labels)
    row = samples["next_dx"].to_list()
    for i, labs in enumerate(row):
        assert {spec.label_names[j] for j in np.flatnonzero(labels[i])} == set(labs) & set(spec.label_names)


def test_recall_at_k_by_hand() -> None:
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    p = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    r = recall_at_k(y, p, ks=(1, 2, 4))
    # row 0: top-1 {0} -> 1/2, top-2 {0, 1} -> 1/2, all -> 1; row 1: code 1 ranks 3rd -> 0, 0, 1; row 2 has none.
    assert r == approx({"recall@1": 0.25, "recall@2": 0.25, "recall@4": 1.0})


def test_registered_as_one_line() -> None:
    assert TASKS["next_visit_dx"] == "medmm.tasks.next_visit:NextVisitDiagnosis"
    assert task_class("next_visit_dx") is NextVisitDiagnosis


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    from medmm.models.assets import Assets

    w = make_tiny_world(tmp_path_factory.mktemp("next_visit"), 150,
                        dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))
    root = w["root"]
    return {**w, "assets": Assets.from_medm_plm(root / "medm-plm" / "model", text_path=root / "text-mlm" / "text")}


def test_runs_in_the_experiment_for_lr_gbert_and_medm_plm(world, tmp_path) -> None:
    from medmm.recipes.experiment import ExperimentConfig, run_medm_plm_experiment
    from medmm.recipes.finetune import FinetuneConfig

    ft = FinetuneConfig(max_text_len=32, max_history=2, num_threads=1)
    ft.train.epochs = 1
    report = run_medm_plm_experiment(world["data"], tmp_path / "exp", world["assets"],
                                     models=["lr", "gbert", "medm-plm"], tasks=["next_visit_dx"], seeds=1,
                                     train_ratios=(1.0,), cfg=ExperimentConfig(finetune=ft), raw_dir=world["raw"])
    md = report.read_text()
    assert "## Next-visit diagnosis: recall@k" in md and "Next-visit diagnosis AUROC" in md
    runs = json.loads((tmp_path / "exp" / "results.json").read_text())["runs"]
    assert sorted(r["model"] for r in runs) == ["gbert", "lr", "medm-plm"]
    for r in runs:
        assert {"auroc", "recall@10", "recall@20", "recall@30"} <= set(r["metrics"])
        assert 0 < r["metrics"]["recall@30"] <= 1
