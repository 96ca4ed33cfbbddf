"""Downstream models of MedM-PLM Table III / VI on tiny configs: every registered model on the three
task layouts, the BCE loss, initialisation from checkpoints, Eq. 11 / Eq. 14 inputs, the
cross-modal ablation and G-BERT code-only pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from medmm.models.assets import Assets
from medmm.models.baselines.gbert import GBertForPretraining, GBertPretrainConfig
from medmm.models.baselines.medbert import serialize
from medmm.modalities import CODES
from medmm.models.code_encoder import CLS_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.downstream import MODELS, build_model, model_inputs
from medmm.models.medm_plm import MedMPLM, MedMPLMConfig
from medmm.models.pretrained import load_medm_plm, save_pretrained
from medmm.models.text import TextEncoderConfig
from medmm.models.tokenizer import train_wordpiece
from medmm.tasks.spec import TaskSpec

CONTRACT_NAMES = {"lr", "rnn", "cnn", "gbert", "medbert", "clinicalbert", "gbert+clinicalbert",
                  "medbert+clinicalbert", "medm-plm", "medm-plm-cross_modal", "gbert-medm-init"}
NOTES = [
    "Patient admitted with CHF exacerbation; started on furosemide 40 mg IV.",
    "History of diabetes mellitus type 2 with nephropathy. Denies chest pain.",
    "Discharge summary: pneumonia treated with ceftriaxone, afebrile at discharge.",
    "Family history of CAD. Social history: no tobacco. Creatinine elevated, AKI resolved.",
]
# Small architectures so that every model runs in milliseconds.
TINY = {
    "rnn": dict(embed_dim=16, hidden_size=16, mlp_hidden=16),
    "cnn": dict(embed_dim=16, num_filters=8, mlp_hidden=16),
    "medbert": dict(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, mlp_hidden=16),
    "medbert+clinicalbert": dict(mlp_hidden=16, medbert=dict(hidden_size=16, num_layers=2, num_heads=2,
                                                             intermediate_size=32)),
    "gbert+clinicalbert": dict(mlp_hidden=16),
}
TEXT_KEYS = {"input_ids", "attention_mask", "hist_input_ids", "hist_attention_mask"}
CODE_KEYS = {"code_ids", "code_mask", "hist_code_ids", "hist_code_mask"}


# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny matrices: intra-op threads only add synchronisation (100x slower on a busy 2-core box).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_code_cfg() -> CodeEncoderConfig:
    # Hand-made trees: ICD-like code -> category -> chapter -> ROOT; ATC-like level 3 -> 2 -> 1 -> ROOT.
    dx_vocab = [f"D{i:02d}" for i in range(12)]
    dx_tree = {c: f"C{i // 4}" for i, c in enumerate(dx_vocab)}
    dx_tree.update({"C0": "CH0", "C1": "CH0", "C2": "CH1", "CH0": "ROOT", "CH1": "ROOT"})
    med_vocab = [f"M{i:02d}" for i in range(8)]
    med_tree = {c: f"L2_{i // 4}" for i, c in enumerate(med_vocab)}
    med_tree.update({"L2_0": "L1_0", "L2_1": "L1_0", "L1_0": "ROOT"})
    # hidden 24 (6 x 4 GAT heads) differs from the text tower's 32, so text_proj is exercised.
    return CodeEncoderConfig(dx_vocab=dx_vocab, med_vocab=med_vocab, dx_tree=dx_tree, med_tree=med_tree,
                             embed_dim=6, gat_heads=4, num_layers=1, num_heads=2, intermediate_size=32,
                             dropout=0.1, max_codes=16)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    root = tmp_path_factory.mktemp("assets")
    tok = train_wordpiece(NOTES * 3, vocab_size=120, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64, pad_token_id=0),
                     add_pooling_layer=False)
    save_pretrained(bert, root / "bert", tok)
    plm = MedMPLM(MedMPLMConfig(text=TextEncoderConfig(pretrained_path=str(root / "bert")), code=tiny_code_cfg()))
    save_pretrained(plm, root / "plm", tok)
    return Assets.from_medm_plm(root / "plm", text_path=root / "bert")


def pad(rows: list[list[int]], L: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    L = L or max(1, max((len(r) for r in rows), default=1))
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids != 0


def note(assets: Assets, i: int | None) -> list[int]:
    return [] if i is None else assets.tokenizer(NOTES[i], truncation=True, max_length=40)["input_ids"]


def single_batch(assets: Assets, task: str) -> tuple[TaskSpec, dict]:
    cc = assets.code_config
    visits = [(0, ["D00", "D05"], ["M01"]), (1, ["D03"], ["M02", "M05", "M07"]), (3, ["D11", "D01", "D02"], [])]
    ids, mask = pad([note(assets, n) for n, _, _ in visits])
    if task == "readmission":
        spec = TaskSpec("readmission", "binary", 1, ["readmitted"])
        codes = [cc.encode(dx, med) for _, dx, med in visits]
        labels = torch.tensor([1.0, 0.0, 1.0])
    else:
        spec = TaskSpec("icd_coding", "multilabel", 5, cc.dx_vocab[:5])
        codes = [cc.encode([], med) for _, _, med in visits]  # medication codes only (Eq. 16)
        labels = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 1, 1, 0, 0]], dtype=torch.float)
    code_ids, code_mask = pad(codes)
    return spec, {"input_ids": ids, "attention_mask": mask.long(), "code_ids": code_ids, "code_mask": code_mask,
                  "labels": labels}


# Medication histories: (note index or None for a visit without a note, dx, med), oldest first.
HISTORIES = [
    [(0, ["D00"], ["M00", "M01"])],
    [(1, ["D02", "D03"], ["M04"]), (None, ["D07"], ["M05", "M06"]), (2, ["D01"], [])],
    [(3, ["D09", "D10"], ["M07"]), (1, ["D04"], ["M01", "M03"])],
]
CURRENT_DX = [["D00", "D01"], ["D05"], ["D08", "D09", "D10"]]


def medication_batch(assets: Assets, garbage_in_padding: bool = False) -> tuple[TaskSpec, dict]:
    cc = assets.code_config
    spec = TaskSpec("medication", "multilabel", len(cc.med_vocab), cc.med_vocab)
    B, V, L_T, L_C = len(HISTORIES), max(map(len, HISTORIES)), 40, 8
    hist_ids = torch.zeros(B, V, L_T, dtype=torch.long)
    hist_codes = torch.zeros(B, V, L_C, dtype=torch.long)
    visit_mask = torch.zeros(B, V, dtype=torch.bool)
    for b, hist in enumerate(HISTORIES):
        for v, (n, dx, med) in enumerate(hist):
            t, c = note(assets, n), cc.encode(dx, med)
            hist_ids[b, v, : len(t)] = torch.tensor(t)
            hist_codes[b, v, : len(c)] = torch.tensor(c)
            visit_mask[b, v] = True
        if garbage_in_padding:  # padded visits with real-looking tokens and masks: only
            for v in range(len(hist), V):  # hist_visit_mask says they are absent
                hist_ids[b, v, :5] = torch.tensor(note(assets, 0)[:5])
                hist_codes[b, v, :3] = torch.tensor(cc.encode(["D06"], ["M02"]))
    code_ids, code_mask = pad([cc.encode(dx, []) for dx in CURRENT_DX])
    labels = torch.zeros(B, len(cc.med_vocab))
    labels[0, [1, 2]] = labels[1, [5]] = labels[2, [0, 3, 7]] = 1.0
    return spec, {"code_ids": code_ids, "code_mask": code_mask, "hist_input_ids": hist_ids,
                  "hist_attention_mask": (hist_ids != 0).long(),
                  "hist_code_ids": hist_codes, "hist_code_mask": hist_codes != 0,
                  "hist_visit_mask": visit_mask, "labels": labels}


def task_batch(assets: Assets, task: str) -> tuple[TaskSpec, dict]:
    return medication_batch(assets) if task == "medication" else single_batch(assets, task)


def for_model(name: str, batch: dict) -> dict:
    """What the featurizer gives a model: only the modalities it declares."""
    inputs = model_inputs(name)
    drop = (TEXT_KEYS if "note" not in inputs else set()) | (CODE_KEYS if not inputs & CODES else set())
    return {k: v for k, v in batch.items() if k not in drop}


def build(name: str, spec: TaskSpec, assets: Assets, **kw):
    torch.manual_seed(0)
    return build_model(name, spec, assets, **{**TINY.get(name, {}), **kw})


def head_input(model, batch) -> torch.Tensor:
    seen = []
    h = model.head.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        h.remove()
    return seen[0]


# ---- every model, every task layout -------------------------------------------------------------

def test_registry_matches_contract(assets):
    assert set(MODELS) == CONTRACT_NAMES
    for name in MODELS:
        assert model_inputs(name) <= {"note"} | CODES and model_inputs(name)
    assert model_inputs("cnn") == {"note"} and model_inputs("rnn") == CODES
    with pytest.raises(KeyError, match="unknown downstream model 'bert'"):
        build_model("bert", TaskSpec("readmission", "binary", 1), assets)
    with pytest.raises(TypeError, match="unknown config override.*'hiden'"):
        build_model("rnn", TaskSpec("readmission", "binary", 1), assets, hiden=3)


@pytest.mark.parametrize("task", ["readmission", "icd_coding", "medication"])
@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_forward_backward_and_bce(assets, name, task):
    spec, full = task_batch(assets, task)
    batch = for_model(name, full)
    model = build(name, spec, assets)
    model.train()
    out = model(batch)
    B = full["labels"].shape[0]
    assert out["logits"].shape == ((B,) if spec.kind == "binary" else (B, spec.num_labels))
    ref = F.binary_cross_entropy_with_logits(out["logits"], batch["labels"])
    assert torch.allclose(out["loss"], ref)
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    # Without labels: logits only.
    model.eval()
    with torch.no_grad():
        out2 = model({k: v for k, v in batch.items() if k != "labels"})
    assert "loss" not in out2 and out2["logits"].shape == out["logits"].shape
    if name == "medm-plm" and task != "medication":  # Figure 5 heat-map weights
        L_T, L_C = batch["input_ids"].shape[1], batch["code_ids"].shape[1]
        assert out2["attn_text_to_code"].shape == (B, L_C) and out2["attn_code_to_text"].shape == (B, L_T)
        assert torch.allclose(out2["attn_text_to_code"].sum(-1), torch.ones(B))
    if name == "medm-plm-cross_modal":
        assert "attn_text_to_code" not in out2


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_padded_history_visits_are_ignored(assets, name):
    spec, clean = medication_batch(assets)
    _, dirty = medication_batch(assets, garbage_in_padding=True)
    assert not torch.equal(clean["hist_input_ids"], dirty["hist_input_ids"])
    model = build(name, spec, assets).eval()
    with torch.no_grad():
        a, b = model(for_model(name, clean))["logits"], model(for_model(name, dirty))["logits"]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_visits_without_a_note(assets, name):
    # The featurizer gives a visit without a discharge summary an empty token list: an all-zero
    # attention-mask row, or no text column at all when no visit of the batch has a note.
    spec, batch = single_batch(assets, "readmission")
    batch["input_ids"][1], batch["attention_mask"][1] = 0, 0
    empty = {**batch, "input_ids": batch["input_ids"][:, :0], "attention_mask": batch["attention_mask"][:, :0]}
    model = build(name, spec, assets)
    for b in (batch, empty):
        out = model(for_model(name, b))
        assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["loss"])
        out["loss"].backward()


def test_labels_shape_mismatch_is_a_clear_error(assets):
    spec, batch = single_batch(assets, "icd_coding")
    model = build("lr", spec, assets)
    with pytest.raises(ValueError, match="batch\\['labels'\\] has shape \\(3, 4\\)"):
        model({**batch, "labels": batch["labels"][:, :4]})
    with pytest.raises(KeyError, match="lacks \\['code_ids'\\]"):
        build("gbert", spec, assets)({k: v for k, v in batch.items() if k != "code_ids"})


def test_missing_assets_are_clear_errors(assets):
    spec = TaskSpec("readmission", "binary", 1)
    bare = Assets(assets.tokenizer, assets.code_config)
    with pytest.raises(ValueError, match="needs assets.text_path"):
        build_model("clinicalbert", spec, bare)
    with pytest.raises(ValueError, match="needs assets.medm_plm_path"):
        build_model("gbert-medm-init", spec, bare)
    with pytest.raises(ValueError, match="needs assets.medm_plm_path"):
        build_model("medm-plm", spec, bare)


# ---- reference computations ---------------------------------------------------------------------

def test_lr_is_a_linear_model_of_counts(assets):
    spec, batch = single_batch(assets, "icd_coding")
    model = build("lr", spec, assets)
    torch.nn.init.normal_(model.words.weight)
    torch.nn.init.normal_(model.codes.weight)
    with torch.no_grad():
        model.words.weight[0] = 0  # [PAD] never counts
        model.codes.weight[0] = 0
        logits = model(batch)["logits"]
    counts_w = torch.zeros(3, assets.text_vocab_size).scatter_add_(
        1, batch["input_ids"], batch["attention_mask"].float())
    counts_c = torch.zeros(3, assets.code_config.vocab_size).scatter_add_(
        1, batch["code_ids"], batch["code_mask"].float())
    ref = counts_w @ model.words.weight + counts_c @ model.codes.weight + model.bias
    assert torch.allclose(logits, ref.detach(), atol=1e-5)


def test_medbert_serialization():
    # Patient: visit 1 = [CLS] a b, visit 2 = [CLS] c (padded visit 3 ignored), current = [CLS] d e.
    a, b, c, d, e = 5, 6, 7, 8, 9
    batch = {"code_ids": torch.tensor([[CLS_ID, d, e]]),
             "hist_code_ids": torch.tensor([[[CLS_ID, a, b], [CLS_ID, c, 0], [CLS_ID, 11, 12]]]),
             "hist_visit_mask": torch.tensor([[True, True, False]])}
    batch["hist_code_mask"] = batch["hist_code_ids"] != 0
    ids, ser, vis, mask = serialize(batch, history=True, max_len=16)
    assert ids.tolist() == [[CLS_ID, a, b, c, d, e]]
    assert ser.tolist() == [[0, 1, 2, 1, 1, 2]]
    assert vis.tolist() == [[0, 1, 1, 2, 3, 3]]
    assert mask.all()
    ids, ser, vis, _ = serialize(batch, history=True, max_len=4)  # oldest codes dropped
    assert ids.tolist() == [[CLS_ID, c, d, e]] and vis.tolist() == [[0, 2, 3, 3]]


def test_gbert_medm_init_starts_from_the_medm_plm_code_tower(assets):
    spec = TaskSpec("readmission", "binary", 1)
    tower = load_medm_plm(assets.medm_plm_path).code.state_dict()
    model = build("gbert-medm-init", spec, assets)
    mine = model.encoder.code.state_dict()
    assert set(mine) == set(tower)
    assert all(torch.equal(mine[k], tower[k]) for k in tower)
    scratch = build("gbert", spec, assets).encoder.code.state_dict()  # no gbert_path: random init
    assert not torch.equal(scratch["dx_ontology.M"], tower["dx_ontology.M"])


def test_eq14_readmission_input_is_r_text_concat_r_code(assets):
    spec, batch = single_batch(assets, "readmission")
    model = build("medm-plm", spec, assets).eval()
    x = head_input(model, batch)
    with torch.no_grad():
        feats = model.plm({k: batch[k] for k in ("input_ids", "attention_mask", "code_ids", "code_mask")})
    assert torch.allclose(x, torch.cat([feats["r_text"], feats["r_code"]], -1), atol=1e-5)
    # ... and the logits are that vector through the MLP.
    with torch.no_grad():
        assert torch.allclose(model(batch)["logits"], model.head(x).squeeze(-1), atol=1e-6)


def test_eq11_medication_input_by_hand(assets):
    spec, batch = medication_batch(assets)
    model = build("medm-plm", spec, assets).eval()
    x = head_input(model, batch)
    cc, plm = assets.code_config, model.plm
    with torch.no_grad():
        for b, hist in enumerate(HISTORIES):
            texts, codes = [], []
            for n, dx, med in hist:  # one visit at a time, through MedMPLM.forward
                c_ids, c_mask = pad([cc.encode(dx, med)])
                vb = {"code_ids": c_ids, "code_mask": c_mask}
                if n is not None:
                    t_ids, t_mask = pad([note(assets, n)])
                    vb.update(input_ids=t_ids, attention_mask=t_mask.long())
                f = plm(vb)
                codes.append(f["r_code"][0])
                if n is not None:
                    texts.append(f["r_text"][0])
            c_ids, c_mask = pad([cc.encode(CURRENT_DX[b], [])])
            r_dx = plm({"code_ids": c_ids, "code_mask": c_mask})["r_code"][0]
            ref = torch.cat([torch.stack(texts).mean(0), torch.stack(codes).mean(0), r_dx])
            assert torch.allclose(x[b], ref, atol=1e-5), b


def test_cross_modal_ablation_changes_r(assets):
    spec, batch = single_batch(assets, "icd_coding")
    full = build("medm-plm", spec, assets).eval()
    ablated = build("medm-plm-cross_modal", spec, assets).eval()
    assert full.plm.cross.enabled and not ablated.plm.cross.enabled
    x_full, x_abl = head_input(full, batch), head_input(ablated, batch)
    assert not torch.allclose(x_full, x_abl, atol=1e-4)
    with torch.no_grad():  # ablation: R_text = proj(Ẑ_T), R_C_med = Ẑ_C
        plm = ablated.plm
        z_t = plm.text(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        _, z_c = plm.code(batch["code_ids"], batch["code_mask"])
    assert torch.allclose(x_abl, torch.cat([plm.cross.text_proj(z_t[:, 0]), z_c], -1), atol=1e-5)


# ---- G-BERT code-only pre-training --------------------------------------------------------------

def test_gbert_pretraining_overfits_and_initialises_gbert(assets, tmp_path):
    cc = assets.code_config
    visits = [(["D00", "D01"], ["M00"]), (["D04", "D05", "D06"], ["M02", "M03"]), (["D08"], ["M05", "M06", "M07"]),
              (["D10", "D11"], ["M01", "M04"])]
    code_ids, code_mask = pad([cc.encode(dx, med) for dx, med in visits])
    torch.manual_seed(0)
    model = GBertForPretraining(GBertPretrainConfig(code=cc, dropout=0.0))
    masked = model.mask({"code_ids": code_ids, "code_mask": code_mask}, torch.Generator().manual_seed(0),
                        min_one=True)
    assert (masked["code_labels"] != -100).any(1).all()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(40):
        loss = model(masked)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    # Saved code tower -> Assets.gbert_path -> the "gbert" baseline starts from it.
    save_pretrained(model.encoder, tmp_path / "gbert")
    a2 = Assets(assets.tokenizer, cc, gbert_path=str(tmp_path / "gbert"))
    gb = build_model("gbert", TaskSpec("readmission", "binary", 1), a2).encoder.code.state_dict()
    ref = model.encoder.state_dict()
    assert all(torch.equal(gb[k], ref[k]) for k in ref)
    assert isinstance(model.encoder, CodeEncoder)


# ---- frozen, cached text towers and the cached ontology table -------------------------------------

FROZEN_TEXT = ["clinicalbert", "gbert+clinicalbert", "medbert+clinicalbert", "medm-plm", "medm-plm-cross_modal"]


@pytest.mark.parametrize("task", ["readmission", "icd_coding", "medication"])
@pytest.mark.parametrize("name", FROZEN_TEXT)
def test_cached_frozen_tower_equals_the_live_tower(assets, name, task):
    from medmm.models.downstream import attach_note_features, compute_note_features, frozen_text_towers

    spec, full = task_batch(assets, task)
    batch = for_model(name, full)
    live = build(name, spec, assets).eval()  # the tower run as usual (eval: no dropout)
    cached = build(name, spec, assets, text_frozen=True)
    for a, b in zip(live.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(a, b)  # same weights, so only the tower's execution differs
    (tower,) = frozen_text_towers(cached)
    cached.train()
    assert not tower.bert.training  # a frozen tower never runs dropout
    assert all(not p.requires_grad for p in tower.bert.parameters())
    cached.eval()
    with torch.no_grad():
        ref = live(batch)["logits"]
        first = cached(batch)["logits"]  # no features attached: the tower runs
        misses = tower.misses
        notes = [note(assets, i) for i in range(len(NOTES))]
        feats = compute_note_features([cached], notes)
        assert attach_note_features(cached, feats) == 1
        n_notes = len(tower.features)
        second = cached(batch)["logits"]  # every note from the precomputed features
    assert n_notes > 0 and misses > 0 and tower.misses == misses and tower.hits >= 1
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second, ref, rtol=1e-5, atol=1e-6)
    # Training reaches the parts outside the tower, never the tower.
    cached.train()
    cached(batch)["loss"].backward()
    assert all(p.grad is None for p in tower.bert.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in cached.parameters())


@pytest.mark.parametrize("tokens", [True, False])
def test_note_features_are_plain_arrays_that_round_trip_memory_mapped(tmp_path, tokens):
    """Worker processes read a tower's features from files (memory-mapped: one copy in the page
    cache), as plain arrays: no tensor, no custom pickling."""
    from medmm.models.downstream import NoteFeatures, note_key

    g = np.random.default_rng(0)
    index, parts, off = {}, [], 0
    for i in range(50):
        v = g.standard_normal((1 + i % 7, 4) if tokens else (4,)).astype(np.float32)
        index[note_key([i, i + 1, 2])] = (off, v.shape)
        parts.append(v.reshape(-1))
        off += v.size
    f = NoteFeatures(tokens, np.concatenate(parts), index)
    back = NoteFeatures.load(f.save(tmp_path / "f"))
    assert isinstance(back.flat, np.memmap) and back.tokens == tokens
    assert list(back.index) == list(f.index) and back.index == f.index
    assert all(torch.equal(back.get(k), f.get(k)) for k in f.index)
    assert len(NoteFeatures.load(NoteFeatures(tokens, np.zeros(0, np.float32), {}).save(tmp_path / "e"))) == 0


def test_note_features_are_shared_by_models_with_the_same_tower_only(assets):
    from medmm.models.downstream import compute_note_features, frozen_text_towers

    spec, _ = single_batch(assets, "readmission")
    models = [build(m, spec, assets, text_frozen=True) for m in ("clinicalbert", "gbert+clinicalbert", "medm-plm")]
    a, b, c = (frozen_text_towers(m)[0] for m in models)
    assert a.key == b.key  # same text-MLM tower, [CLS] only
    assert c.key != a.key  # MedM-PLM's tower: token-level Z_T
    notes = [note(assets, i) for i in range(len(NOTES))]
    feats = compute_note_features(models, notes + notes[:2])
    assert len(feats) == 2 and len(feats[a.key]) == len(NOTES) and len(feats[c.key]) == len(NOTES)
    assert compute_note_features(models[:2], notes, feats)[a.key] is feats[a.key]  # already there
    a.features = feats[a.key]
    ids, mask = pad(notes)
    torch.testing.assert_close(a(ids, mask), a.live(ids, mask), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="float32' or 'float16"):
        build("clinicalbert", spec, assets, text_frozen=True, text_cache_dtype="int8")


def test_ontology_table_cached_in_eval_and_refreshed_after_a_weight_update():
    enc = CodeEncoder(tiny_code_cfg())
    enc.eval()
    with torch.no_grad():
        t1, t2 = enc.token_table(), enc.token_table()
    assert t1 is t2  # computed once
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    enc.train()
    table = enc.token_table()
    assert table.requires_grad and table is not t1  # training: recomputed with its graph
    table.pow(2).sum().backward()
    opt.step()  # in-place update: the cached table is now stale
    enc.eval()
    with torch.no_grad():
        t3 = enc.token_table()
        fresh = enc._compute_table()
    assert t3 is not t1 and not torch.equal(t3, t1) and torch.equal(t3, fresh)
    enc.load_state_dict(CodeEncoder(tiny_code_cfg()).state_dict())
    with torch.no_grad():
        assert torch.equal(enc.token_table(), enc._compute_table())


def test_assets_are_a_named_set_of_model_directories(assets):
    a = Assets(assets.tokenizer, assets.code_config, {"medm-plm": "/m", "image": "/img"}, text_path="/t")
    assert a.models == {"medm-plm": "/m", "image": "/img", "text": "/t"}  # any name: MedCSP's towers too
    assert (a.medm_plm_path, a.text_path, a.gbert_path, a.model_dir("image")) == ("/m", "/t", None, "/img")
    assert Assets(assets.tokenizer, assets.code_config, {"gbert": "/g"}, gbert_path=None).gbert_path == "/g"
