"""Models learn, and the tests notice when they do not: fine-tuning on a planted signal.

test_experiment.py checks that the report, CSV and JSON agree with each other; it stays green
when the predictions are noise (issue 11: shuffling the test predictions after `predict` left it
green). Here the label is a known function of the inputs, so a model that learns reaches a stated
test AUROC and the same predictions in a random order (AUROC ~0.5) do not.

Planted task: the readmission samples of a 600-patient synthetic world (every eligible visit
kept, the generator's own label discarded), relabelled
    label = (ICD-9 2724 hyperlipidaemia or 41401 coronary atherosclerosis among the visit's diagnoses)
            OR (word piece "f" among the note's first MAX_TEXT_LEN word pieces)
In these notes that word piece is the header's "sex: f". On the test visits 44% have a code and
34% the word, nearly independently (phi 0.07). A model that reads only codes can rank the code
half alone; a model that reads both can be perfect. The generator's own label would not do: it is
drawn Bernoulli(p_readmit), so even a perfect model is far from AUROC 1. The split is 60/20/20
by patient (`with_split`, the one split function of every task): 110 test visits, 67 positive.

AUROC is recomputed with scikit-learn from the saved predictions, so a wrong metric cannot pass
for a model that learns.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from medmm.recipes import finetune
from medmm.recipes.finetune import FinetuneConfig, TaskData, run_finetune
from medmm.tasks.registry import build_task
from medmm.tasks.featurize import NoteTokens, featurize
from medmm.tasks.splits import with_split

N_PATIENTS = 600
TEXT_TOWER = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
MAX_TEXT_LEN = 64  # the header, "sex: f" included, and the start of the next section
PLANTED_CODES = ["2724", "41401"]   # hyperlipidaemia or coronary atherosclerosis: ~half the admissions
PLANTED_WORD = "f"
SPLIT_RATIOS = (0.6, 0.2, 0.2)
EPOCHS = 15  # the randomly initialised towers were still improving at epoch 10
LEARNING_RATES = {"lr": 0.05, "gbert": 3e-3, "medm-plm": 2e-3}

# Test AUROC each model family must reach. Measured, training seeds 0-4 (2026-12-02, the
# long-tailed code world of issue 13): lr 0.927-0.948, gbert 0.695-0.837, medm-plm 0.955-1.000.
# A random ranking of the 110 test visits (67 positive) has AUROC 0.5 with sd ~0.057. On the
# test visits the code indicator alone scores 0.86 and the word indicator alone 0.78
# (HALF_AUROC_MAX bounds both).
#   lr, medm-plm  0.90: above either half alone, so a model has to read both the note and the
#                 codes; 7 sd above chance.
#   gbert         0.68: it reads codes only, so its ceiling is about the code indicator's 0.86.
#                 0.68 is 3 sd above chance; its lowest seed (0.695) is close to the bar: with
#                 eleven codes a visit now, the code tower must find two among many.
AUROC_MIN = {"lr": 0.90, "gbert": 0.68, "medm-plm": 0.90}
HALF_AUROC_MAX = 0.87


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    from medmm.models.assets import Assets

    w = make_tiny_world(tmp_path_factory.mktemp("learn"), N_PATIENTS, TEXT_TOWER)
    root = w["root"]
    assets = Assets.from_medm_plm(root / "medm-plm" / "model", text_path=root / "text-mlm" / "text")
    return {**w, "assets": assets}


def finetune_cfg() -> FinetuneConfig:
    cfg = FinetuneConfig(max_text_len=MAX_TEXT_LEN, readmission_balance="natural", num_threads=1,
                         lr=dict(LEARNING_RATES))
    cfg.train.epochs = EPOCHS
    # No early stopping: a random tower's validation AUROC can stall for 2-3 epochs before it rises.
    cfg.train.early_stopping_patience = None
    return cfg


def planted_task(records: pl.DataFrame, assets, cfg: FinetuneConfig) -> TaskData:
    """Readmission samples, relabelled and re-split, featurised as `prepare_task` would."""
    task = build_task("readmission", cfg)
    samples, spec = task.samples(records)
    notes = NoteTokens.build(records, assets.tokenizer, cfg.max_text_len)
    word = assets.tokenizer.convert_tokens_to_ids(PLANTED_WORD)
    assert word != assets.tokenizer.unk_token_id, f"{PLANTED_WORD!r} is not a word piece of the tokenizer"
    # The word counts only where the models can see it: in the truncated token ids.
    samples = samples.drop("split").with_columns(
        pl.col("dx").list.eval(pl.element().is_in(PLANTED_CODES)).list.any().alias("has_code"),
        pl.Series("has_word", [word in notes[v] for v in samples["visit_id"].to_list()]))
    samples = samples.with_columns((pl.col("has_code") | pl.col("has_word")).alias("label"))
    samples = with_split(samples, seed=cfg.split_seed, ratios=SPLIT_RATIOS)
    return TaskData(spec, samples, featurize(samples, records, spec, task, assets, notes), task)


@pytest.fixture(scope="module")
def planted(world) -> TaskData:
    return planted_task(world["records"], world["assets"], finetune_cfg())


def test_planted_task_needs_both_modalities(planted):
    test = planted.samples.filter(pl.col("split") == "test")
    y = test["label"].to_numpy()
    assert test.height >= 50 and 0.3 < y.mean() < 0.8
    assert 0.25 < test["has_code"].mean() < 0.6 and 0.25 < test["has_word"].mean() < 0.6
    assert HALF_AUROC_MAX < min(AUROC_MIN["lr"], AUROC_MIN["medm-plm"])
    for half in ("has_code", "has_word"):
        assert roc_auc_score(y, test[half].to_numpy()) < HALF_AUROC_MAX, half
    assert planted.splits["test"].labels.tolist() == y.astype(np.float32).tolist()


@pytest.mark.parametrize("model", list(AUROC_MIN))
def test_model_learns_the_planted_signal(model, world, planted, tmp_path):
    result, _, _ = run_finetune(model, planted, None, world["assets"], finetune_cfg(), tmp_path / model, seed=0)
    pred = pl.read_parquet(tmp_path / model / "predictions.parquet")
    truth = planted.samples.filter(pl.col("split") == "test").select("visit_id", pl.col("label").alias("truth"))
    pred = pred.join(truth, on="visit_id", how="left")
    assert pred.height == result["n_test"] == truth.height
    assert pred["label"].to_list() == pred["truth"].cast(pl.Float64).to_list()  # saved labels are the visits'
    y, p = pred["label"].to_numpy(), pred["prob"].to_numpy()
    auroc = roc_auc_score(y, p)
    assert result["metrics"]["auroc"] == pytest.approx(auroc, abs=1e-6)
    assert auroc >= AUROC_MIN[model], f"{model}: test AUROC {auroc:.3f} < {AUROC_MIN[model]}"
    # The same scores in a random order miss the bar: the bar is what tells learning from noise.
    assert roc_auc_score(y, np.random.default_rng(0).permutation(p)) < AUROC_MIN[model]


def test_shuffled_test_predictions_fail_the_bar(world, planted, tmp_path, monkeypatch):
    """Issue 11's mutation, test predictions permuted after `predict`, fails the AUROC bar."""
    test_ds, real_predict, shuffled = planted.splits["test"], finetune.predict, []

    def predict_then_shuffle(model, ds, *args, **kwargs):
        p, extra = real_predict(model, ds, *args, **kwargs)
        if ds is test_ds:  # validation scores (model selection) are left alone
            shuffled.append(len(p))
            p = np.random.default_rng(0).permutation(p)
        return p, extra

    monkeypatch.setattr(finetune, "predict", predict_then_shuffle)
    result, _, _ = run_finetune("lr", planted, None, world["assets"], finetune_cfg(), tmp_path / "lr", seed=0)
    assert shuffled == [len(test_ds)]  # the test split was scored once, and shuffled
    assert result["best_val"]["auroc"] >= AUROC_MIN["lr"]  # the model itself still learned
    assert result["metrics"]["auroc"] < AUROC_MIN["lr"]
