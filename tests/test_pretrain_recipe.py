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


# ---- G-BERT: `medmm pretrain gbert` ----------------------------------------------------------------

def _gbert(dataset, out, steps, extra=(), **kw):
    cfg = load_config(None, TINY_CODE + [f"train.max_steps={steps}", *extra], P.GBertRecipe)
    return P.pretrain_gbert(dataset, out, cfg, **kw)


def test_gbert_resume_is_exact(dataset, tmp_path, one_thread):
    once = _gbert(dataset, tmp_path / "once", 4)
    assert once["steps"] == 4 and once["recipe"] == "gbert" and once["top5_frequency_baseline"] > 0
    assert {"loss_dx2dx", "loss_med2dx", "loss_dx2med", "loss_med2med", "top5_self", "top5_dual"} \
        <= set(once["best_val"])
    assert _gbert(dataset, tmp_path / "twice", 4, stop_after=2) == {"interrupted_at_step": 2}
    _gbert(dataset, tmp_path / "twice", 4, resume=True)
    a = load_file(str(tmp_path / "once" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "twice" / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("heads.dx2med") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gbert_split_systems_by_original_code():
    from medmm.models.baselines.gbert import split_systems
    from medmm.models.code_encoder import CLS_ID, MASK_ID, UNK_ID, CodeEncoderConfig

    cc = CodeEncoderConfig(dx_vocab=["4019", "25000"], med_vocab=["C07", "A10", "B01"],
                           dx_tree={"4019": "ROOT", "25000": "ROOT"},
                           med_tree={"C07": "ROOT", "A10": "ROOT", "B01": "ROOT"},
                           embed_dim=4, gat_heads=1, num_heads=1)
    dx0, med0 = cc.dx_range[0], cc.med_range[0]  # ids 5, 6 | 7, 8, 9
    # visit 1: [CLS] dx0 [MASK](was dx1) [UNK] med0 [MASK](was med2) med0(a random replacement, was med1)
    # visit 2: [CLS] med2 -- medication only
    ids = torch.tensor([[CLS_ID, dx0, MASK_ID, UNK_ID, med0, MASK_ID, med0],
                        [CLS_ID, med0 + 2, 0, 0, 0, 0, 0]])
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[0, 5], labels[0, 6] = dx0 + 1, med0 + 2, med0 + 1
    (dx_ids, dx_lab), (med_ids, med_lab) = split_systems(ids, labels, cc)
    assert dx_ids.tolist() == [[CLS_ID, dx0, MASK_ID], [CLS_ID, 0, 0]]  # [UNK]: in neither
    assert dx_lab.tolist() == [[-100, -100, dx0 + 1], [-100, -100, -100]]
    assert med_ids.tolist() == [[CLS_ID, med0, MASK_ID, med0], [CLS_ID, med0 + 2, 0, 0]]
    assert med_lab.tolist() == [[-100, -100, med0 + 2, med0 + 1], [-100, -100, -100, -100]]


def test_gbert_loss_is_gberts_four_bce_terms_on_two_sequences(dataset):
    """Reference: encode `[CLS] dx..` and `[CLS] med..` separately, four heads, BCE vs the full sets."""
    import torch.nn.functional as F

    cfg = load_config(None, TINY_CODE + ["code.dropout=0.0", "dropout=0.0"], P.GBertRecipe)
    train, _, dx_vocab, med_vocab = P.split_visits(dataset, cfg.data)
    torch.manual_seed(0)
    model = P.build_gbert(cfg, dx_vocab, med_vocab).eval()
    cc = model.encoder.config
    visits = list(zip(train["dx"].to_list()[:5], train["med"].to_list()[:5])) + [(train["dx"][0].to_list(), [])]
    batch = P.collate_visits([{"code_ids": cc.encode(dx, med)} for dx, med in visits])
    batch["code_labels"] = torch.full_like(batch["code_ids"], -100)  # nothing masked: the split is plain
    with torch.no_grad():
        out = model(batch)
        seqs = {"dx": P.pad([cc.encode(dx, []) for dx, _ in visits]),
                "med": P.pad([cc.encode([], med) for _, med in visits])}
        v = {s: model.encoder(ids, ids != 0)[1] for s, ids in seqs.items()}  # (B, d) each
    y = {"dx": torch.tensor([[float(c in dx) for c in dx_vocab] for dx, _ in visits]),
         "med": torch.tensor([[float(c in med) for c in med_vocab] for _, med in visits])}
    has = {s: y[s].any(1) for s in y}
    assert not bool(has["med"][-1])  # the last visit has no medication: left out of the terms reading one
    for src, tgt in (("dx", "dx"), ("med", "dx"), ("dx", "med"), ("med", "med")):
        rows = has[src] & has[tgt]
        ref = F.binary_cross_entropy_with_logits(model.heads[f"{src}2{tgt}"](v[src])[rows], y[tgt][rows])
        assert out[f"loss_{src}2{tgt}"].item() == pytest.approx(ref.item(), abs=1e-5), (src, tgt)
    assert out["loss"].item() == pytest.approx(sum(out[f"loss_{k}"].item() for k in
                                                   ("dx2dx", "med2dx", "dx2med", "med2med")), abs=1e-6)
    assert out["logits_self"].shape == out["logits_dual"].shape == (len(visits), cc.num_codes)


def test_gbert_and_medm_plm_validate_on_the_same_masks(dataset):
    cfg = load_config(None, TINY_CODE, P.GBertRecipe)
    train, val, dx_vocab, med_vocab = P.split_visits(dataset, cfg.data)
    cc = P.build_gbert(cfg, dx_vocab, med_vocab).encoder.config
    codes = P.encode_codes(val, cc)
    counts = torch.ones(cc.num_codes)
    gb = P.MaskedCodeValidation(P._Column("code_ids", codes), cc, counts, ("self",), 0.15, 16)
    plm = P.MaskedCodeValidation(P.VisitDataset([[1, 7]] * len(codes), codes), cc, counts, ("c2c",), 0.15, 16)
    assert len(gb.batches) == len(plm.batches) > 0
    assert all(torch.equal(a[k], b[k]) for a, b in zip(gb.batches, plm.batches) for k in ("code_ids", "code_labels"))
    assert gb.baseline == plm.baseline


def test_gbert_beats_the_frequency_baseline_on_planted_syndromes(dataset, tmp_path, monkeypatch, one_thread):
    """Six syndromes of 3 diagnoses + 3 medications, every visit one whole syndrome: the visible
    codes name the syndrome, so a masked code is predictable; code frequencies are flat, so the
    frequency baseline cannot tell it from the other syndromes' codes."""
    import polars as pl

    _, _, dx_vocab, med_vocab = P.split_visits(dataset, P.PretrainDataConfig())
    assert len(dx_vocab) >= 18 and len(med_vocab) >= 18
    groups = [(dx_vocab[3 * g:3 * g + 3], med_vocab[3 * g:3 * g + 3]) for g in range(6)]
    rows = [{"dx": groups[i % 6][0], "med": groups[i % 6][1], "text": "note", "split": "train" if i < 240 else "val"}
            for i in range(300)]
    monkeypatch.setattr(P, "pretraining_visits", lambda data_dir, split_seed: pl.DataFrame(rows))
    res = _gbert(dataset, tmp_path / "planted", 40, ["train.lr=1e-2", "train.eval_every=40"])
    best = res["best_val"]
    assert res["train_visits"] == 240 and res["val_visits"] == 60
    assert best["top5_self"] >= 0.8 and best["top5_dual"] >= 0.8, best  # measured: 0.99 and 1.0
    assert res["top5_frequency_baseline"] < 0.4, res  # measured: 0.19


def test_gbert_checkpoint_is_the_experiments_gbert(dataset, text_dir, tmp_path, one_thread):
    """`medmm pretrain gbert` -> RUN/model -> `--gbert` -> the G-BERT baselines start from those
    weights, and the report says what they were pre-trained on."""
    from medmm.cli import main
    from medmm.models.downstream import build_model
    from medmm.recipes.experiment import main_experiment, resolve_assets
    from medmm.tasks.spec import TaskSpec

    _run(dataset, tmp_path / "runs" / "medm-plm", text_dir, 2)
    assert main(["pretrain", "gbert", "--data", str(dataset), "--out", str(tmp_path / "runs" / "gbert"),
                 *TINY_CODE, "train.max_steps=2"]) == 0
    gdir = tmp_path / "runs" / "gbert" / "model"
    trained = {k[len("encoder."):]: v for k, v in
               load_file(str(tmp_path / "runs" / "gbert" / "checkpoints" / "last" / "model.safetensors")).items()
               if k.startswith("encoder.")}
    spec = TaskSpec("readmission", "binary", 1)
    for assets in (resolve_assets(tmp_path / "runs" / "medm-plm", text_dir, gdir),
                   resolve_assets(tmp_path / "runs", text_dir)):  # found beside the MedM-PLM run
        assert Path(assets.gbert_path) == gdir
        for name, tower in (("gbert", lambda m: m.encoder.code), ("gbert+clinicalbert", lambda m: m.code_encoder.code)):
            sd = tower(build_model(name, spec, assets)).state_dict()
            assert sd.keys() == trained.keys()
            assert all(torch.equal(sd[k], trained[k]) for k in trained), name
    w = "encoder.layers.0.self_attn.in_proj_weight"  # without --gbert: a random tower
    assert not torch.equal(trained[w], build_model("gbert", spec, _without_gbert(assets)).encoder.code.state_dict()[w])

    report = main_experiment({"data": str(dataset), "pretrained": str(tmp_path / "runs" / "medm-plm"),
                              "text": str(text_dir), "gbert": str(gdir), "out": str(tmp_path / "exp"), "seeds": 1,
                              "models": ["gbert"], "tasks": ["readmission"], "ratios": [1.0],
                              "overrides": ["finetune.train.epochs=1", "finetune.max_text_len=48"]})
    md = report.read_text()
    n = P.run_summary(gdir)["train_visits"]
    assert f"G-BERT (alone and in G-BERT+ClinicalBERT): code tower pre-trained by `medmm pretrain gbert`" in md
    assert f"on {n:,} training visits" in md
    bare = P.pretraining_note(_without_gbert(assets))
    assert "**not pre-trained**" in bare and "random weights" in bare


def _without_gbert(assets):
    from medmm.models.assets import GBERT, Assets

    return Assets(assets.tokenizer, assets.code_config, {k: v for k, v in assets.models.items() if k != GBERT})


def test_gbert_paper_config_loads():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "gbert_paper.yaml", [], P.GBertRecipe)
    assert (cfg.code.num_heads, cfg.code.dropout, cfg.train.batch_size, cfg.train.epochs,
            cfg.code.embed_dim * cfg.code.gat_heads) == (4, 0.4, 64, 10, 300)


def test_medm_plm_beats_the_frequency_baseline_on_planted_syndromes(dataset, text_dir, tmp_path, monkeypatch,
                                                                   one_thread):
    """The G-BERT test's six syndromes, each also named by one word of the note: a masked code is
    predictable from the other codes (C2C) and from the note (T2C); code frequencies are flat, so
    the frequency baseline cannot tell a syndrome's codes from the others'."""
    import polars as pl
    from transformers import AutoTokenizer

    _, _, dx_vocab, med_vocab = P.split_visits(dataset, P.PretrainDataConfig())
    vocab = AutoTokenizer.from_pretrained(str(text_dir)).get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and len(w) >= 5)[:6]  # whole words the tokenizer keeps
    assert len(words) == 6
    groups = [(dx_vocab[3 * g:3 * g + 3], med_vocab[3 * g:3 * g + 3], words[g]) for g in range(6)]
    rows = [{"dx": groups[i % 6][0], "med": groups[i % 6][1], "text": f"patient with {groups[i % 6][2]} today",
             "split": "train" if i < 240 else "val"} for i in range(300)]
    monkeypatch.setattr(P, "pretraining_visits", lambda data_dir, split_seed: pl.DataFrame(rows))
    cfg = load_config(None, TINY_CODE + ["train.max_steps=120", "train.eval_every=120", "train.lr=1e-2",
                                         f"text.pretrained_path={text_dir}"], P.MedMPLMRecipe)
    res = P.pretrain_medm_plm(dataset, tmp_path / "planted", cfg)
    best = res["best_val"]
    assert res["top5_frequency_baseline"] < 0.4, res  # measured: 0.15
    assert best["top5_t2c"] >= 0.8 and best["top5_c2c"] >= 0.8, best  # measured: 0.96 and 0.99 (0.62 at 60 steps)
