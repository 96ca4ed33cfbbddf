"""End to end on tiny synthetic data: text-MLM -> MedM-PLM pre-training, exact resume, bad input."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medmm.config import load_config
from medmm.recipes import pretrain as P

TINY_TEXT = ["text.hidden_size=32", "text.num_layers=2", "text.num_heads=2", "text.intermediate_size=64",
             "text.vocab_size=600", "data.max_text_len=64", "train.batch_size=16", "train.progress=false"]
TINY_CODE = ["code.embed_dim=8", "code.gat_heads=4", "code.num_layers=1", "code.num_heads=2",
             "code.intermediate_size=32", "data.max_text_len=64", "train.batch_size=16", "train.progress=false",
             "train.eval_every=2", "train.early_stopping_patience=null"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from medmm.data.sources import prepare
    from medmm.data.synth import generate

    root = tmp_path_factory.mktemp("pre")
    generate(root / "raw", n_patients=150, seed=1)
    prepare("mimic3", root / "raw", root / "ds", mappings={"dir": root / "raw" / "mappings"}, progress=False)
    return root / "ds"


@pytest.fixture(scope="module")
def text_dir(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlm")
    cfg = load_config(None, TINY_TEXT + ["train.max_steps=3"], P.TextMLMRecipe)
    summary = P.pretrain_text_mlm(dataset, out, cfg)
    assert summary["steps"] == 3
    return out / "text"


def test_text_tower_loads_with_plain_transformers(text_dir):
    from transformers import AutoTokenizer, BertModel

    bert = BertModel.from_pretrained(str(text_dir))
    tok = AutoTokenizer.from_pretrained(str(text_dir))
    enc = tok(["chest pain for three days"], return_tensors="pt")
    assert bert(**enc).last_hidden_state.shape[-1] == 32


def test_pretraining_never_sees_test_patients(dataset):
    from medmm.tasks.splits import assign_splits

    visits = P.pretraining_visits(dataset, split_seed=0)
    split = dict(assign_splits(visits["patient_id"].unique().to_numpy(), seed=0).iter_rows())
    assert set(visits["split"]) <= {"train", "val"}
    assert all(split[p] != "test" for p in visits["patient_id"])


def _run(dataset, out, text_dir, steps, **kw):
    cfg = load_config(None, TINY_CODE + [f"train.max_steps={steps}", f"text.pretrained_path={text_dir}"],
                      P.MedMPLMRecipe)
    return P.pretrain_medm_plm(dataset, out, cfg, **kw)


def test_medm_plm_resume_is_exact(dataset, text_dir, tmp_path):
    once = _run(dataset, tmp_path / "once", text_dir, 4)
    assert once["steps"] == 4 and "top5_t2c" in once["best_val"] and once["top5_frequency_baseline"] > 0
    assert _run(dataset, tmp_path / "twice", text_dir, 4, stop_after=2) == {"interrupted_at_step": 2}
    _run(dataset, tmp_path / "twice", text_dir, 4, resume=True)
    a = load_file(str(tmp_path / "once" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "twice" / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_model_round_trips_and_checks_vocabulary(dataset, text_dir, tmp_path):
    from medmm.models.pretrained import load_medm_plm

    _run(dataset, tmp_path / "run", text_dir, 2)
    model = load_medm_plm(tmp_path / "run" / "model")
    dx = model.config.code.dx_vocab
    with pytest.raises(ValueError, match="vocab"):
        load_medm_plm(tmp_path / "run" / "model", dx_vocab=list(reversed(dx)))


def test_bad_pretrained_path_and_unknown_config_key(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _run(dataset, tmp_path / "x", tmp_path / "missing", 1)
    (tmp_path / "notbert").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        _run(dataset, tmp_path / "y", tmp_path / "notbert", 1)
    with pytest.raises(ValueError, match="lrr"):
        load_config(None, ["train.lrr=0.1"], P.MedMPLMRecipe)


def test_topk_unseen_ignores_visible_codes():
    # vocabulary offset 5, 4 codes; visit shows code 6 (index 1) and hides code 8 (index 3)
    batch = {"code_ids": torch.tensor([[1, 6, 2]]), "code_labels": torch.tensor([[-100, -100, 8]])}
    logits = torch.tensor([[0.0, 9.0, 5.0, 1.0]])  # the visible code scores highest
    assert P.topk_unseen(logits, batch, offset=5, k=2) == (1, 1)  # ranks 7 then 8
    from medmm.objectives.masked_code import masked_code_topk
    assert masked_code_topk(logits, batch["code_labels"], 5, k=2) == (0, 1)  # plain top-2: 6, 7


def test_paper_config_loads():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "medm_plm_paper.yaml", [], P.MedMPLMRecipe)
    assert (cfg.text.freeze_layers, cfg.data.max_text_len, cfg.objective, cfg.code.embed_dim * cfg.code.gat_heads) \
        == (10, 512, "ce", 300)
