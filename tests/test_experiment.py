"""Featurizer (contract batch layout), fine-tune recipe and the MedM-PLM experiment end to end.

Data: 150 synthetic patients (`medmm synth` + `prepare`, ~3 s). Assets: a WordPiece tokenizer
trained on those notes and a randomly initialised tiny MedM-PLM (hidden 16 / 32) saved with
`save_pretrained`, so the real registry's "lr" and "medm-plm" run in a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from medmm.eval.aggregate import format_mean_std
from medmm.eval.report import ORACLE_ROW, parse_markdown_table
from medmm.recipes.finetune import FinetuneConfig, load_records, prepare_task, train_subset
from medmm.tasks.featurize import Collator, NoteTokens


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    from medmm.models.assets import Assets

    w = make_tiny_world(tmp_path_factory.mktemp("exp"), 150,
                   dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    root = w["root"]
    assets = Assets.from_medm_plm(root / "medm-plm" / "model", text_path=root / "text-mlm" / "text")
    return {**w, "assets": assets, "pretrained": root}


def small_cfg() -> FinetuneConfig:
    cfg = FinetuneConfig(max_text_len=48, max_history=2, num_threads=1)
    cfg.train.epochs = 2
    return cfg


# ---------------------------------------------------------------------------------------------
# Featurizer


def test_notes_are_tokenised_once_truncated_and_cls_first(world):
    notes = NoteTokens.build(world["records"], world["assets"].tokenizer, max_text_len=48)
    tok = world["assets"].tokenizer
    with_text = world["records"].filter(pl.col("text").is_not_null())["visit_id"].to_list()
    without = world["records"].filter(pl.col("text").is_null())["visit_id"].to_list()
    assert all(1 < len(notes[v]) <= 48 and notes[v][0] == tok.cls_token_id for v in with_text)
    assert all(notes[v] == [] for v in without)  # no fake note for a visit without one
    with pytest.raises(KeyError, match="visit_id -1"):
        notes[-1]


@pytest.mark.parametrize("task", ["readmission", "icd_coding"])
def test_single_visit_batches(world, task):
    td = prepare_task(task, world["records"], world["assets"], small_cfg())
    spec, ds = td.spec, td.splits["train"]
    batch = Collator(spec)([ds[i] for i in range(5)])
    K = spec.num_labels
    expected = {"input_ids", "attention_mask", "code_ids", "code_mask", "labels"}
    assert set(batch) == expected
    B, L_T = batch["input_ids"].shape
    assert B == 5 and L_T <= 48 and batch["code_ids"].shape[0] == 5
    assert batch["labels"].shape == ((5,) if spec.kind == "binary" else (5, K))
    assert batch["labels"].dtype == torch.float32
    # padding id 0 exactly where the masks are off; [CLS] first
    assert torch.equal(batch["attention_mask"], batch["input_ids"] != 0)
    assert torch.equal(batch["code_mask"], batch["code_ids"] != 0)
    assert (batch["code_ids"][:, 0] == 1).all()  # code [CLS]
    cc = world["assets"].code_config
    dx0, dx1 = cc.dx_range
    has_dx = ((batch["code_ids"] >= dx0) & (batch["code_ids"] < dx1)).any()
    assert bool(has_dx) == (task == "readmission")  # ICD coding reads medications only
    # labels: the sample's own label set
    s0 = td.samples.filter(pl.col("split") == "train").row(0, named=True)
    if task == "icd_coding":
        assert sorted(spec.label_names[j] for j in np.flatnonzero(ds.labels[0])) == sorted(s0["labels"])
    # a model reading one modality gets only its keys
    assert set(Collator(spec, reads={"dx_codes", "med_codes"})([ds[0]])) == {"code_ids", "code_mask", "labels"}
    assert set(Collator(spec, reads={"note"})([ds[0]])) == {"input_ids", "attention_mask", "labels"}


def test_medication_history_is_strictly_earlier_and_capped(world):
    recs = world["records"]
    td = prepare_task("medication", recs, world["assets"], small_cfg())
    ds = td.splits["train"]
    batch = Collator(td.spec)([ds[i] for i in range(len(ds))])
    assert set(batch) == {"code_ids", "code_mask", "hist_input_ids", "hist_attention_mask", "hist_code_ids",
                          "hist_code_mask", "hist_visit_mask", "labels"}
    B, V, L_C = batch["hist_code_ids"].shape
    assert batch["hist_input_ids"].shape[:2] == (B, V) and batch["hist_visit_mask"].shape == (B, V)
    assert V <= 2  # max_history
    assert batch["labels"].shape == (B, td.spec.num_labels)
    assert torch.equal(batch["hist_code_mask"], batch["hist_code_ids"] != 0)
    assert torch.equal(batch["hist_attention_mask"], batch["hist_input_ids"] != 0)
    # padded history visits are all padding
    assert (batch["hist_code_ids"][~batch["hist_visit_mask"]] == 0).all()
    # the current visit carries diagnoses only
    m0 = world["assets"].code_config.med_range[0]
    assert (batch["code_ids"] < m0).all()
    # every history visit is one of the patient's visits admitted BEFORE the current one
    cc, admit = world["assets"].code_config, dict(zip(recs["visit_id"].to_list(), recs["admit_time"].to_list()))
    patient = dict(zip(recs["visit_id"].to_list(), recs["patient_id"].to_list()))
    enc = {v: cc.encode(dx, med) for v, dx, med in zip(recs["visit_id"].to_list(), recs["dx"].to_list(),
                                                        recs["med"].to_list())}
    checked = 0
    for i in range(len(ds)):
        v = ds.meta["visit_id"][i]
        earlier = sorted((admit[u], u) for u in admit if patient[u] == patient[v] and admit[u] < admit[v])
        want = [enc[u] for _, u in earlier][-2:]
        assert ds[i]["hist_code_ids"] == want
        checked += len(want) > 1
    assert checked > 0  # some samples had their history capped / ordered


def test_train_subset_is_stratified_and_seeded(world):
    td = prepare_task("readmission", world["records"], world["assets"], small_cfg())
    full = td.splits["train"]
    a, b = train_subset(full, 0.25, seed=0), train_subset(full, 0.25, seed=0)
    assert len(a) == len(b) and a.meta.equals(b.meta)
    assert 0 < a.labels.sum() < len(a)  # both classes
    assert abs(len(a) - 0.25 * len(full)) <= 2
    with pytest.raises(ValueError, match="train_fraction"):
        train_subset(full, 0.0, seed=0)


# ---------------------------------------------------------------------------------------------
# The experiment end to end


def test_experiment_end_to_end_report_matches_json(world, tmp_path):
    from medmm.recipes.experiment import main_experiment

    out = tmp_path / "exp"
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("finetune:\n  max_text_len: 48\n  max_history: 2\n  num_threads: 1\n"
                        "  train:\n    epochs: 2\n")
    report = main_experiment({"data": str(world["data"]), "pretrained": str(world["pretrained"]), "out": str(out),
                              "seeds": 1, "models": ["lr", "medm-plm"], "config": str(cfg_file),
                              "ratios": [0.5, 1.0]})
    assert report == out / "report.md"
    for f in ("report.md", "results.csv", "results.json", "figures/training_ratio.png", "figures/attention.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    # 2 models x 3 tasks x 1 seed + 2 Figure 4 models x 1 extra ratio
    assert len(res["runs"]) == 6 + 2
    assert res["ground_truth"] and 0.5 < res["oracle"]["readmission"]["auroc"] <= 1.0

    # Every number in the Markdown table equals the JSON's mean (std).
    md = (out / "report.md").read_text()
    table_md = md.split("## Table III", 1)[1].split("\n\n", 2)[1]
    cells = parse_markdown_table(table_md)
    data = res["table"]
    names = data["row_names"]  # the papers' names of the models
    assert names["lr"] == "LR" and names["medm-plm"] == "MedM-PLM"
    assert set(cells) == {"LR", "MedM-PLM", ORACLE_ROW}
    n_checked = 0
    for model, metrics in data["rows"].items():
        for col, st in metrics.items():
            mean = math.nan if st["mean"] is None else st["mean"]
            std = math.nan if st["std"] is None else st["std"]
            assert cells[names[model]][data["headers"][col]] == format_mean_std(mean, std), (model, col)
            n_checked += 1
    assert n_checked >= 2 * 10  # 9 metric columns + the oracle-fraction column per model
    # ...and equals the run's own test metrics (one seed: mean = the value)
    lr_read = next(r for r in res["runs"] if r["model"] == "lr" and r["task"] == "readmission")
    assert data["rows"]["lr"]["readmission:auroc"]["mean"] == pytest.approx(lr_read["metrics"]["auroc"])
    o = res["oracle"]["readmission"]["auroc"]
    frac = data["rows"]["lr"]["readmission:oracle_frac"]["mean"]
    assert frac == pytest.approx((lr_read["metrics"]["auroc"] - 0.5) / (o - 0.5))
    # the honest-comparison sentences come from the numbers
    m_plm = data["rows"]["medm-plm"]["medication:auroc"]["mean"]
    m_lr = data["rows"]["lr"]["medication:auroc"]["mean"]
    assert ("On Medication, MedM-PLM" in md) and (("does NOT beat: LR" in md) == (m_plm <= m_lr))
    assert "Readmission samples: positives and negatives undersampled 1:1" in md  # the protocol is stated
    # CSV: one row per model + the oracle
    csv_rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 3 and csv_rows[0].startswith("model,readmission:f1_mean")
    # per-run outputs: predictions of the test split
    pred = pl.read_parquet(Path(lr_read["out_dir"]) / "predictions.parquet")
    assert pred.height == lr_read["n_test"] and set(pred.columns) == {"patient_id", "visit_id", "label", "prob"}
    assert res["attention"]["words"][0] == "[CLS]"
    assert len(res["attention"]["words"]) == len(res["attention"]["word_weights"])
    # how long each run trained: in the header, the training table, runs.csv and results.json
    k = sum(r["peaked_at_cap"] for r in res["runs"])
    assert res["training"]["peaked_at_cap"] == k and len(res["training"]["at_cap"]) == k
    assert (f"**Training: {k} of 8 runs peaked at their epoch cap**" if k else "Training: none of the 8 runs") in md
    assert "## Training: epochs per run" in md
    runs_csv = (out / "runs.csv").read_text().strip().splitlines()
    assert len(runs_csv) == 1 + 8 and runs_csv[0].startswith("task,model,seed,train_fraction,lr,")
    assert all(r["epoch_cap"] == 2 and 1 <= r["best_epoch"] <= r["epochs_run"] <= 2 for r in res["runs"])


def test_patience_stops_before_the_cap(world, tmp_path):
    """Patience 1 and an improvement no epoch after the first can make (min_delta 1 on AUROC):
    the run stops after epoch 2 of its 30 and keeps epoch 1's weights."""
    from medmm.recipes.finetune import finetune

    cfg = small_cfg()
    cfg.train.epochs, cfg.train.early_stopping_patience, cfg.train.early_stopping_min_delta = 30, 1, 1.0
    res = finetune("lr", "readmission", world["data"], world["assets"], cfg, tmp_path / "early", seed=0)
    assert res["stopped_early"] and not res["peaked_at_cap"]
    assert (res["best_epoch"], res["epochs_run"], res["epoch_cap"], res["patience"]) == (1, 2, 30, 1)
    assert res["best_epoch"] < res["epochs_run"] < res["epoch_cap"]
    evals = [json.loads(x) for x in (tmp_path / "early" / "train" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["type"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2] and res["best_step"] == evals[0]["step"]
    assert res["best_val"]["auroc"] == evals[0]["auroc"]  # the restored weights are epoch 1's


def test_a_run_capped_at_one_epoch_is_flagged_in_the_report(world, tmp_path):
    import csv

    from medmm.recipes.experiment import ExperimentConfig, run_medm_plm_experiment

    cfg = small_cfg()
    cfg.train.epochs = 1
    out = tmp_path / "capped"
    run_medm_plm_experiment(world["data"], out, world["assets"], models=["lr"], tasks=["readmission", "icd_coding"],
                            seeds=1, train_ratios=(1.0,), raw_dir=world["raw"],
                            cfg=ExperimentConfig(finetune=cfg, budget_note="Test budget: one epoch."))
    md = (out / "report.md").read_text()
    head = md.split("## Table III", 1)[0]
    assert "**Training: 2 of 2 runs peaked at their epoch cap** (epoch cap 1, early-stopping patience 5)" in head
    assert "stopped at cap, may be under-trained" in head and "Test budget: one epoch." in head
    assert "| Readmission | lr | 1 | 0.001 | 1 / 5 | 1/1* | **1 of 1** |" in md
    assert "| ICD coding | lr | 1 | 0.001 | 1 / 5 | 1/1* | **1 of 1** |" in md
    res = json.loads((out / "results.json").read_text())
    assert res["training"] == {"runs": 2, "peaked_at_cap": 2, "at_cap": ["lr / readmission / seed 0 / train fraction 1",
                                                                          "lr / icd_coding / seed 0 / train fraction 1"]}
    assert all(r["peaked_at_cap"] and r["best_epoch"] == r["epochs_run"] == r["epoch_cap"] == 1 for r in res["runs"])
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [(r["task"], r["best_epoch"], r["epochs_run"], r["epoch_cap"], r["peaked_at_cap"]) for r in rows] == [
        ("readmission", "1", "1", "1", "True"), ("icd_coding", "1", "1", "1", "True")]
    table = list(csv.DictReader((out / "results.csv").open()))
    lr_row = next(r for r in table if r["model"] == "lr")
    assert lr_row["readmission:peaked_at_cap_mean"] == lr_row["icd_coding:peaked_at_cap_mean"] == "1.0"
    assert lr_row["readmission:best_epoch_mean"] == "1.0" and lr_row["readmission:best_epoch_n"] == "1"


def test_training_table_marks_runs_at_and_to_their_cap():
    from medmm.eval import report as R

    def run(seed, best, ran, stopped, peaked, cap=3):
        return {"task": "medication", "model": "gbert", "seed": seed, "train_fraction": 1.0, "lr": 5e-4,
                "best_epoch": best, "epochs_run": ran, "epoch_cap": cap, "patience": 1, "stopped_early": stopped,
                "peaked_at_cap": peaked, "selection_metric": "auroc", "best_val": {"auroc": 0.9}, "metrics": {}}

    runs = [run(0, 3, 3, False, True), run(1, 2, 3, False, False), run(2, 1, 2, True, False), run(3, None, 3, False, False)]
    head = R.training_header(runs)
    assert head.startswith("**Training: 1 of 4 runs peaked at their epoch cap** (epoch cap 3, early-stopping patience 1)")
    assert "2 more reached the cap before their patience ran out" in head
    assert "| Medication | gbert | 1 | 0.0005 | 3 / 1 | 3/3*, 2/3+, 1/2, ?/3+ | **1 of 4** |" in R.training_markdown(runs)
    assert R.training_header(runs[2:3]) == ("Training: none of the 1 runs peaked at its epoch cap "
                                            "(epoch cap 3, early-stopping patience 1).")


def test_unknown_model_or_task_fails_before_training(world, tmp_path):
    from medmm.recipes.experiment import run_medm_plm_experiment

    with pytest.raises(KeyError, match="unknown downstream model"):
        run_medm_plm_experiment(world["data"], tmp_path, world["assets"], models=["nope"], tasks=["readmission"],
                                seeds=1)
    with pytest.raises(KeyError, match="unknown task"):
        run_medm_plm_experiment(world["data"], tmp_path, world["assets"], models=["lr"], tasks=["ner"], seeds=1)


def test_demo_config_file_matches_the_baked_in_demo_settings():
    from medmm.config import load_config, to_dict
    from medmm.recipes.experiment import ExperimentConfig, demo_experiment_config

    path = Path(__file__).resolve().parents[1] / "configs" / "demo_experiment.yaml"
    demo = demo_experiment_config()
    assert to_dict(load_config(path, [], ExperimentConfig)) == to_dict(demo)
    frozen = {m for m, o in demo.finetune.model_overrides.items() if o.get("text_frozen")}
    assert {"clinicalbert", "gbert+clinicalbert", "medm-plm", "medm-plm-cross_modal"} <= frozen


def test_the_10k_config_trains_to_convergence():
    """configs/medm_plm_10k.yaml: the demo's settings, except early stopping decides the epochs."""
    from medmm.config import load_config, to_dict
    from medmm.recipes.experiment import ExperimentConfig, demo_experiment_config

    path = Path(__file__).resolve().parents[1] / "configs" / "medm_plm_10k.yaml"
    cfg, demo = load_config(path, [], ExperimentConfig), demo_experiment_config()
    assert cfg.finetune.train.epochs == 50 and cfg.finetune.train.early_stopping_patience == 5
    assert cfg.finetune.train.restore_best and not cfg.budget_note
    a, b = to_dict(cfg), to_dict(demo)
    for d in (a, b):
        del d["finetune"]["train"]["epochs"], d["finetune"]["train"]["early_stopping_patience"], d["budget_note"]
    assert a == b
    assert demo.budget_note and demo.finetune.train.epochs == 3  # the demo's cap is a budget, and says so


def test_worker_processes_and_text_cache_give_the_sequential_results(world, tmp_path):
    """Two worker processes and frozen cached towers change the schedule, never a number."""
    from medmm.recipes.experiment import ExperimentConfig, run_medm_plm_experiment

    cfg = small_cfg()
    cfg.train.epochs = 1
    cfg.model_overrides = {"clinicalbert": {"text_frozen": True}}
    res = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_medm_plm_experiment(world["data"], out, world["assets"], models=["lr", "clinicalbert"],
                                tasks=["readmission"], seeds=1, train_ratios=(1.0,),
                                cfg=ExperimentConfig(finetune=cfg, workers=workers), raw_dir=world["raw"])
        res[workers] = json.loads((out / "results.json").read_text())
    assert json.loads((tmp_path / "w1" / "timings.json").read_text())["text_cache_s"] > 0  # the cache was built; not in results.json
    a = [(r["model"], r["metrics"]) for r in res[1]["runs"]]
    b = [(r["model"], r["metrics"]) for r in res[2]["runs"]]
    assert [m for m, _ in a] == ["lr", "clinicalbert"] and a == b
