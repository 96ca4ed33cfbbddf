"""The NER probe experiment (Table V) end to end on ~100 synthetic patients with tiny towers,
plus its pieces: split by patient, precomputed tower states, the scores and the verdict sentence,
and resuming (finished runs skipped, an interrupted one continued, the same report bytes)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from medmm.eval.aggregate import format_mean_std
from medmm.eval.report import parse_markdown_table
from medmm.recipes import ner
from medmm.recipes.ner import (COLUMNS, ROWS, NERExperimentConfig, build_ner_data, ner_scores, run_config,
                               run_ner_experiment, tower_sentence)
from medmm.recipes.runner import CLOCK_KEYS


def tiny_cfg(**kw) -> NERExperimentConfig:
    cfg = NERExperimentConfig(max_length=64, max_train_notes=30, max_eval_notes=20, embed_dim=16, lstm_hidden=8,
                              eval_batch_size=64, **kw)
    cfg.train.epochs = 2
    cfg.train.batch_size = 16
    return cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    w = make_tiny_world(tmp_path_factory.mktemp("ner"), 100,
                   dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position_embeddings=64))
    return {**w, "text": w["root"] / "text-mlm" / "text", "medm": w["root"] / "medm-plm", "base": w["root"] / "runs"}


def test_end_to_end_report_matches_json(world, tmp_path):
    from medmm.recipes.ner import main_ner

    out = tmp_path / "ner"
    cfg_file = tmp_path / "ner.yaml"
    cfg_file.write_text("max_length: 64\nmax_train_notes: 30\nmax_eval_notes: 20\nembed_dim: 16\nlstm_hidden: 8\n"
                        "train:\n  epochs: 2\n")
    # raw is not given: the ground truth is found beside the dataset by its input hashes;
    # the text and MedM-PLM directories are found inside the run folders given.
    report = main_ner({"data": str(world["data"]), "text": str(world["text"].parent), "pretrained": str(world["medm"]),
                       "out": str(out), "seeds": 1, "config": str(cfg_file), "overrides": ["eval_batch_size=64", "lr.scratch=3e-2"]})
    assert report == out / "report.md"
    for f in ("report.md", "results.csv", "results.json", "ner.yaml", "timings.json", "timings.md"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    assert res["source"].endswith(f"`{world['raw'] / 'ground_truth' / 'entities.parquet'}`")
    assert res["medm_plm"] == str(world["medm"] / "model") and res["text"] == str(world["text"])
    assert len(res["runs"]) == 3 and [r["row"] for r in res["runs"]] == list(ROWS)
    assert [r["embedding"] for r in res["runs"]] == ["scratch", "tower_frozen", "tower_frozen"]
    c = res["counts"]
    assert c["notes"]["train"] == 30 and c["notes_before_cap"]["train"] > 30
    assert c["notes"]["val"] <= 20 and c["notes"]["test"] <= 20 and c["entities"]["test"] > 0

    md = (out / "report.md").read_text()
    table_md = md.split("## Table V", 1)[1].split("\n\n", 2)[1]
    cells = parse_markdown_table(table_md)
    assert list(cells) == list(ROWS)
    data = res["table"]
    n = 0
    for row, metrics in data["rows"].items():
        for col in COLUMNS:
            st = metrics[col]
            mean = math.nan if st["mean"] is None else st["mean"]
            std = math.nan if st["std"] is None else st["std"]
            assert cells[row][data["headers"][col]].strip("*") == format_mean_std(mean, std), (row, col)
            n += 1
        # one seed: the mean is that run's test score
        run = next(r for r in res["runs"] if r["row"] == row)
        assert metrics["f1"]["mean"] == pytest.approx(run["metrics"]["f1"])
        assert 0.0 <= run["metrics"]["f1"] <= 1.0 and run["steps"] > 0 and "f1" in run["best_val"]
    assert n == 3 * len(COLUMNS)
    assert res["sentence"] in md and "With one seed no spread was measured" in res["sentence"]
    csv = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv) == 1 + 3 and csv[0].startswith("model,precision_mean")
    # the test predictions are character spans into the notes, with their text
    for run in res["runs"]:
        pred = pl.read_parquet(f"{run['out_dir']}/test_predictions.parquet")
        assert set(pred.columns) == {"doc_id", "start", "end", "label", "text"}
        assert pred.height == run["metrics"]["n_predicted"] and (pred["end"] > pred["start"]).all()
        assert run["metrics"]["n_gold"] == c["entities"]["test"]
    assert res["runs"][0]["metrics"]["n_correct"] > 0  # the scratch tagger learnt something in 2 epochs
    assert (out / "runs" / "bilstm-crf" / "seed0" / "train" / "metrics.jsonl").is_file()
    assert not list((out / "runs").rglob("checkpoints"))  # removed once each run was recorded
    assert not any(k in r for r in res["runs"] for k in CLOCK_KEYS)  # in timings.json
    timings = json.loads((out / "timings.json").read_text())
    assert timings["runs_run"] == 3 and all(r["wall_time_s"] > 0 for r in timings["runs"])


def test_split_is_by_patient_and_capped_subset_is_fixed(world):
    from medmm.recipes.ner import load_documents

    cfg = tiny_cfg()
    by, _, counts = load_documents(world["data"], world["raw"], cfg)
    pids = {s: {d.patient_id for d in docs} for s, docs in by.items()}
    assert pids["train"] and pids["val"] and pids["test"]
    assert not (pids["train"] & pids["val"]) and not (pids["train"] & pids["test"]) and not (pids["val"] & pids["test"])
    assert counts["orphan_entities"] == 0
    a = build_ner_data(world["data"], world["raw"], world["tok"], cfg)
    b = build_ner_data(world["data"], world["raw"], world["tok"], cfg)
    ids = [d.doc_id for d in a.splits["train"].documents]
    assert len(ids) == 30 and ids == [d.doc_id for d in b.splits["train"].documents]
    assert set(ids) <= {d.doc_id for d in by["train"]}


def test_precomputed_states_equal_running_the_frozen_tower(world):
    from medmm.models.bilstm_crf import BiLSTMCRF, BiLSTMCRFConfig, tower_hidden_states
    from medmm.models.pretrained import load_text_encoder
    from medmm.recipes.ner import _WithStates

    data = build_ner_data(world["data"], world["raw"], world["tok"], tiny_cfg())
    ds = data.splits["val"]
    tower = load_text_encoder(world["text"])
    states = tower_hidden_states(tower, [w.input_ids for w in ds.windows], batch_size=7)
    assert [tuple(s.shape) for s in states] == [(len(w.input_ids), 16) for w in ds.windows]
    torch.manual_seed(0)
    model = BiLSTMCRF(BiLSTMCRFConfig(tags=ds.tags, embedding="tower_frozen", lstm_hidden=8), tower=tower).eval()
    items = [ds[i] for i in range(6)]
    plain = ds.collate(items)
    pre = _WithStates(ds, states).collate([{**it, "hidden_states": states[i]} for i, it in enumerate(items)])
    with torch.no_grad():
        a, b = model(plain)["loss"], model(pre)["loss"]
    assert torch.allclose(a, b, atol=1e-5)
    assert model.decode(plain) == model.decode(pre)
    finetune = BiLSTMCRF(BiLSTMCRFConfig(tags=ds.tags, embedding="tower_finetune", lstm_hidden=8), tower=tower)
    with pytest.raises(ValueError, match="frozen tower"):
        finetune(pre)
    bad = dict(pre, hidden_states=pre["hidden_states"][:, :, :4])
    with pytest.raises(ValueError, match="hidden size"):
        model(bad)


def test_ner_scores_per_type_and_undefined_type():
    gold = [["B-problem", "I-problem", "O", "B-treatment"], ["O", "B-problem"]]
    pred = [["B-problem", "I-problem", "O", "B-problem"], ["O", "B-problem"]]
    s = ner_scores(gold, pred)
    # problem: 2 gold, 3 predicted, 2 correct; treatment: 1 gold, 0 predicted
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1_problem"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert s["f1_treatment"] == 0.0
    assert math.isnan(s["f1_test"])  # no gold and no predicted test entity: undefined, not 0


def test_tower_sentence_follows_the_numbers():
    base = {"BiLSTM-CRF": [0.90, 0.91, 0.92]}
    hurt = tower_sentence({**base, "text-MLM": [0.95, 0.96, 0.95], "MedM-PLM": [0.90, 0.91, 0.90]})
    assert hurt.startswith("Multimodal pre-training HURT") and "-5.00 points" in hurt
    helped = tower_sentence({**base, "text-MLM": [0.90, 0.91, 0.90], "MedM-PLM": [0.95, 0.96, 0.95]})
    assert "it helped" in helped and "text-MLM and MedM-PLM are higher" not in helped
    tie = tower_sentence({**base, "text-MLM": [0.93, 0.95, 0.94], "MedM-PLM": [0.94, 0.93, 0.95]})
    assert "neither measurably hurt nor helped" in tie and "within one standard deviation" in tie
    assert "text-MLM and MedM-PLM are higher in mean F1" in tie
    one = tower_sentence({"text-MLM": [0.9], "MedM-PLM": [0.8]})
    assert "With one seed" in one and "-10.00 points" in one


def test_mismatched_vocabulary_and_missing_ground_truth_fail_clearly(world, tmp_path):
    from medmm.models.text import TextEncoderConfig, TextMLM
    from medmm.models.tokenizer import train_wordpiece
    from medmm.recipes.ner import find_entities, run_ner_experiment

    other = train_wordpiece(["completely different words here", "zebra yak"], vocab_size=60, min_frequency=1)
    TextMLM(TextEncoderConfig(vocab_size=len(other), hidden_size=16, num_layers=1, num_heads=2,
                              intermediate_size=32)).save_pretrained(tmp_path / "other", other)
    with pytest.raises(ValueError, match="vocabulary differs"):
        run_ner_experiment(world["data"], world["raw"], tmp_path / "o", world["text"], tmp_path / "other", 1,
                           tiny_cfg())
    with pytest.raises(FileNotFoundError, match="entities.parquet"):
        find_entities(world["data"], tmp_path)
    with pytest.raises(ValueError, match="max_train_notes"):
        NERExperimentConfig(max_train_notes=0)
    assert np.isfinite(tiny_cfg().lr["tower_finetune"])


# ---------------------------------------------------------------------------------------------
# Resuming. Grid: 3 rows x seeds 0 and 1, one epoch each; every test works in the same OUT path as
# the reference run, because results.json names each run's directory.

OUTPUTS = ("report.md", "results.csv", "results.json")
REAL_RUN_ONE, REAL_TRAINER = ner.run_one, ner.Trainer


def resume_cfg() -> NERExperimentConfig:
    cfg = tiny_cfg()
    cfg.train.epochs = 1
    cfg.lr = {**cfg.lr, "scratch": 5e-2, "tower_frozen": 5e-2}
    return cfg


def go(world, cfg: NERExperimentConfig) -> Path:
    return run_ner_experiment(world["data"], world["raw"], world["base"] / "exp", world["text"],
                              world["medm"] / "model", 2, cfg)


class Calls:
    """Stands in for `run_one`: records each run's (row, seed, resume)."""

    def __init__(self, monkeypatch):
        self.keys: list[tuple[str, int, bool]] = []

        def fake(row, kind, data, tok, tower_dir, cfg, out, seed, *args, resume=False, **kw):
            self.keys.append((row, seed, resume))
            return REAL_RUN_ONE(row, kind, data, tok, tower_dir, cfg, out, seed, *args, resume=resume, **kw)

        monkeypatch.setattr(ner, "run_one", fake)


def preempt(monkeypatch, nth: int) -> None:
    """The `nth` training of the invocation stops after one optimizer step, as a preemption would
    (its checkpoints/last written), and raises KeyboardInterrupt."""
    fits = []

    class Preempted(REAL_TRAINER):
        def fit(self, resume=False, *, stop_after=None, overwrite=False):
            fits.append(1)
            if len(fits) < nth:
                return super().fit(resume, stop_after=stop_after, overwrite=overwrite)
            super().fit(resume, stop_after=1, overwrite=overwrite)
            raise KeyboardInterrupt

    monkeypatch.setattr(ner, "Trainer", Preempted)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(world):
    """An uninterrupted run's outputs (bytes) and run directory, moved aside to base/ref."""
    go(world, resume_cfg())
    ref = (world["base"] / "exp").rename(world["base"] / "ref")
    return {"dir": ref, **{f: (ref / f).read_bytes() for f in OUTPUTS}}


@pytest.fixture
def out(world):
    """base/exp, empty: results.json names each run's directory, so every test runs in one OUT."""
    shutil.rmtree(world["base"] / "exp", ignore_errors=True)
    return world["base"] / "exp"


def test_an_interrupted_experiment_resumes_to_the_same_report(world, reference, out, monkeypatch, capsys):
    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        preempt(mp, 2)  # after the first run, the second (BiLSTM-CRF seed 1) is killed in training
        go(world, resume_cfg())
    done, cut = out / "runs/bilstm-crf/seed0", out / "runs/bilstm-crf/seed1"
    assert "config_hash" in json.loads((done / "result.json").read_text())
    assert not (done / "train/checkpoints").exists()  # removed once the run was recorded
    assert (cut / "train/checkpoints/last/trainer_state.json").is_file() and not (cut / "result.json").exists()
    assert not (out / "results.json").exists()

    capsys.readouterr()
    calls = Calls(monkeypatch)
    go(world, resume_cfg())
    err = capsys.readouterr().err
    assert "6 runs: 1 finished by an earlier invocation" in err and "5 to run" in err
    assert "resume BiLSTM-CRF / seed 1 from its checkpoint at step 1" in err
    assert calls.keys == [("BiLSTM-CRF", 1, True)] + [(r, s, False) for r in ROWS[1:] for s in (0, 1)]
    resumed, ref = summary(cut), summary(reference["dir"] / "runs/bilstm-crf/seed1")
    assert resumed["global_step"] == ref["global_step"] > 1 and resumed["steps_this_run"] == ref["global_step"] - 1
    assert resumed["train_loss"] == ref["train_loss"]  # exactly the uninterrupted run's training
    for f in OUTPUTS:
        assert (out / f).read_bytes() == reference[f], f
    res = json.loads((out / "results.json").read_text())
    assert not any(k in r for r in res["runs"] for k in CLOCK_KEYS)
    timings = json.loads((out / "timings.json").read_text())
    assert timings["runs_run"] == 5 and timings["runs_skipped"] == 1
    assert all(r["wall_time_s"] > 0 for r in timings["runs"])  # the skipped run keeps its own seconds
    assert not list((out / "runs").rglob("checkpoints"))


def test_a_changed_config_reruns_only_the_runs_it_changes(world, reference, out, monkeypatch, capsys):
    shutil.copytree(reference["dir"], out)
    cfg = resume_cfg()
    cfg.keep_checkpoints = True  # no run depends on it
    calls = Calls(monkeypatch)
    go(world, cfg)
    err = capsys.readouterr().err
    assert calls.keys == [] and "6 runs: 6 finished by an earlier invocation" in err
    assert "tower hidden states" not in err  # nothing to run, nothing precomputed
    for f in ("report.md", "results.csv"):  # results.json differs in its config section only
        assert (out / f).read_bytes() == reference[f], f

    cfg.lr["scratch"] = 1e-2  # the BiLSTM-CRF row's learning rate only
    calls = Calls(monkeypatch)
    go(world, cfg)
    err = capsys.readouterr().err
    assert calls.keys == [("BiLSTM-CRF", 0, False), ("BiLSTM-CRF", 1, False)]
    assert "rerun BiLSTM-CRF / seed 0: the config changed (ner.train.lr 0.05 -> 0.01)" in err
    assert "tower hidden states" not in err
    res, ref = json.loads((out / "results.json").read_text()), json.loads(reference["results.json"])
    assert [r["lr"] for r in res["runs"] if r["row"] == ROWS[0]] == [1e-2, 1e-2]
    assert [r for r in res["runs"] if r["row"] != ROWS[0]] == [r for r in ref["runs"] if r["row"] != ROWS[0]]


def test_each_run_depends_on_its_own_options_and_inputs():
    inputs = {"notes": {"dataset": "d", "entities": "e"}, "vocabulary": "v",
              "towers": {ROWS[0]: None, ROWS[1]: "t", ROWS[2]: "m"}}
    base = {r: run_config(r, 0, resume_cfg(), inputs) for r in ROWS}

    def changed(edit, new_inputs=inputs) -> list[str]:
        cfg = resume_cfg()
        edit(cfg)
        return [r for r in ROWS if run_config(r, 0, cfg, new_inputs) != base[r]]

    assert changed(lambda c: c.lr.update(scratch=1.0)) == [ROWS[0]]
    assert changed(lambda c: setattr(c, "embed_dim", 4)) == [ROWS[0]]
    assert changed(lambda c: c.lr.update(tower_frozen=1.0)) == list(ROWS[1:])
    assert changed(lambda c: setattr(c, "precompute", False)) == list(ROWS[1:])
    assert changed(lambda c: setattr(c, "keep_checkpoints", True)) == []
    for every in ("split_seed", "max_eval_notes", "lstm_hidden"):  # every row reads these
        assert changed(lambda c: setattr(c, every, 3)) == list(ROWS), every
    assert changed(lambda c: None, {**inputs, "towers": {**inputs["towers"], ROWS[2]: "m2"}}) == [ROWS[2]]
    assert changed(lambda c: None, {**inputs, "vocabulary": "v2"}) == list(ROWS)
