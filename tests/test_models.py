"""Tiny-config tests of the MedM-PLM towers, the ontology GAT, the cross-modal module and checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertModel

from medmm.models.code_encoder import CLS_ID, MASK_ID, PAD_ID, UNK_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.cross_modal import CrossModal
from medmm.models.medm_plm import MedMPLM, MedMPLMConfig, MedMPLMForPretraining
from medmm.models.ontology_gat import OntologyEmbedding, OntologyGraph
from medmm.models.pretrained import (from_pretrained, load_code_encoder, load_medm_plm, load_text_encoder,
                                     save_pretrained)
from medmm.models.text import TextEncoderConfig, TextMLM, build_text_encoder
from medmm.models.tokenizer import load_tokenizer, train_wordpiece

NOTES = [
    "Patient admitted with CHF exacerbation; started on furosemide 40 mg IV.",
    "History of diabetes mellitus type 2 with nephropathy. Denies chest pain.",
    "Discharge summary: pneumonia treated with ceftriaxone, afebrile at discharge.",
    "Family history of CAD. Social history: no tobacco. Creatinine elevated, AKI resolved.",
] * 5


# ---- tiny fixtures ------------------------------------------------------------------------------

def tiny_trees():
    # ICD-like: code -> category -> chapter -> ROOT; ATC-like: level 3 -> level 2 -> level 1 -> ROOT.
    dx_vocab = [f"D{i:02d}" for i in range(30)]
    dx_tree = {c: f"C{i // 5}" for i, c in enumerate(dx_vocab)}
    dx_tree.update({f"C{j}": f"CH{j // 3}" for j in range(6)})
    dx_tree.update({"CH0": "ROOT", "CH1": None})
    med_vocab = [f"M{i:02d}" for i in range(20)]
    med_tree = {c: f"L2_{i // 4}" for i, c in enumerate(med_vocab)}
    med_tree.update({f"L2_{j}": f"L1_{j // 3}" for j in range(5)})
    med_tree.update({"L1_0": "ROOT", "L1_1": "ROOT", "ROOT": None})
    return dx_vocab, dx_tree, med_vocab, med_tree


def tiny_code_cfg(**kw) -> CodeEncoderConfig:
    dx_vocab, dx_tree, med_vocab, med_tree = tiny_trees()
    base = dict(dx_vocab=dx_vocab, med_vocab=med_vocab, dx_tree=dx_tree, med_tree=med_tree, embed_dim=8,
                gat_heads=4, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.1, max_codes=12)
    base.update(kw)
    return CodeEncoderConfig(**base)


def tiny_text_cfg(**kw) -> TextEncoderConfig:
    base = dict(vocab_size=100, hidden_size=48, num_layers=2, num_heads=2, intermediate_size=64,
                max_position_embeddings=64, dropout=0.1)
    base.update(kw)
    return TextEncoderConfig(**base)


def tiny_batch(cfg: CodeEncoderConfig, B: int = 3, L_T: int = 10, L_C: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (B, L_T), generator=g)
    input_ids[:, 0] = 2  # [CLS]
    attention_mask = torch.ones(B, L_T, dtype=torch.long)
    attention_mask[1, 6:] = 0
    input_ids[1, 6:] = 0
    code_ids = torch.randint(cfg.dx_range[0], cfg.vocab_size, (B, L_C), generator=g)
    code_ids[:, 0] = CLS_ID
    code_mask = torch.ones(B, L_C, dtype=torch.bool)
    code_mask[2, 4:] = False
    code_ids[2, 4:] = PAD_ID
    return {"input_ids": input_ids, "attention_mask": attention_mask, "code_ids": code_ids, "code_mask": code_mask}


def tiny_plm_cfg(**kw) -> MedMPLMConfig:
    return MedMPLMConfig(text=tiny_text_cfg(), code=tiny_code_cfg(), **kw)


# ---- tokenizer and text tower -------------------------------------------------------------------

def test_wordpiece_round_trip(tmp_path):
    tok = train_wordpiece(NOTES, vocab_size=120, min_frequency=1)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    enc = tok("Patient has CHF\nand AKI")
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
    assert tok.tokenize("CHF Patient") == tok.tokenize("chf patient")  # lower-cased
    assert "[UNK]" not in tok.tokenize("CHF Patient")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("Patient has CHF\nand AKI")["input_ids"] == enc["input_ids"]
    assert load_tokenizer(tmp_path).get_vocab() == tok.get_vocab()
    with pytest.raises(ValueError, match="no texts"):
        train_wordpiece([], vocab_size=50)


def test_text_encoder_shapes_and_freeze():
    bert = build_text_encoder(tiny_text_cfg(freeze_embeddings=True, freeze_layers=1))
    assert isinstance(bert, BertModel)
    ids = torch.randint(0, 100, (2, 7))
    out = bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert out.shape == (2, 7, 48)
    out.sum().backward()
    assert all(p.grad is None for p in bert.embeddings.parameters())
    assert all(p.grad is None for p in bert.encoder.layer[0].parameters())
    assert all(p.grad is not None for p in bert.encoder.layer[1].parameters())
    with pytest.raises(ValueError, match="freeze_layers=3"):
        build_text_encoder(tiny_text_cfg(freeze_layers=3))


def test_bad_pretrained_text_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_text_encoder(tiny_text_cfg(pretrained_path=str(tmp_path / "nope")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_text_encoder(tiny_text_cfg(pretrained_path=str(empty)))
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type is 'gpt2'"):
        build_text_encoder(tiny_text_cfg(pretrained_path=str(gpt)))
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    tiny_text_cfg().to_bert_config().save_pretrained(noweights)
    with pytest.raises(FileNotFoundError, match="no weights"):
        build_text_encoder(tiny_text_cfg(pretrained_path=str(noweights)))


def test_text_mlm_trains_and_saves_a_bert_directory(tmp_path):
    torch.manual_seed(0)
    tok = train_wordpiece(NOTES, vocab_size=120, min_frequency=1)
    mlm = TextMLM(tiny_text_cfg(vocab_size=len(tok)))
    enc = tok(NOTES[:4], padding=True, return_tensors="pt")
    m = mlm.mask(enc["input_ids"], tok, prob=0.3, generator=torch.Generator().manual_seed(0))
    special = torch.tensor(tok.all_special_ids)
    assert not torch.isin(enc["input_ids"][m.labels != -100], special).any()
    out = mlm(m.input_ids, enc["attention_mask"], m.labels)
    n_masked = int((m.labels != -100).sum())
    assert out["logits"].shape == (n_masked, len(tok))
    # Same loss as Hugging Face's full-sequence head (which projects every position).
    ref = mlm.mlm(input_ids=m.input_ids, attention_mask=enc["attention_mask"], labels=m.labels).loss
    mlm.eval()
    torch.testing.assert_close(mlm(m.input_ids, enc["attention_mask"], m.labels)["loss"],
                               mlm.mlm(input_ids=m.input_ids, attention_mask=enc["attention_mask"],
                                       labels=m.labels).loss)
    mlm.train()
    assert math.isfinite(ref.item())
    out["loss"].backward()
    assert math.isfinite(out["loss"].item())
    mlm.save_pretrained(tmp_path / "bert", tok)
    mlm.eval()
    bert = BertModel.from_pretrained(tmp_path / "bert").eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "bert")
    enc2 = tok2(NOTES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = bert(**enc2).last_hidden_state
        b = mlm.encoder()(**enc2).last_hidden_state
    assert torch.allclose(a, b, atol=1e-6)
    # The saved directory can initialise the MedM-PLM text tower.
    assert build_text_encoder(TextEncoderConfig(pretrained_path=str(tmp_path / "bert"))).config.hidden_size == 48


# ---- ontology GAT (Eq. 1-2) -----------------------------------------------------------------------

def gat_by_hand(conv, x: torch.Tensor, target: int, sources: list[int]) -> torch.Tensor:
    """GAT output of node `target` attending over `sources` (self included), in plain torch."""
    H, C = conv.heads, conv.out_channels
    h = (x @ conv.lin.weight.T).view(-1, H, C)  # (N, H, C)
    a_src = (h * conv.att_src.view(1, H, C)).sum(-1)  # (N, H)
    a_dst = (h * conv.att_dst.view(1, H, C)).sum(-1)
    e = F.leaky_relu(a_src[sources] + a_dst[target], 0.2)  # (S, H)
    alpha = torch.softmax(e, dim=0)  # over the target's incoming edges
    out = (alpha[:, :, None] * h[sources]).sum(0)  # (H, C)
    return out.reshape(-1) + conv.bias


def test_gat_root_attends_over_its_two_children():
    torch.manual_seed(0)
    emb = OntologyEmbedding(["a", "b"], {"a": "ROOT", "b": "ROOT"}, embed_dim=3, heads=2)
    idx = emb.graph.index
    assert emb.graph.nodes == ["a", "b", "ROOT"]
    with torch.no_grad():
        stage1 = emb.node_embeddings()  # Eq. 1
        root = gat_by_hand(emb.stage_one, emb.M, idx["ROOT"], [idx["ROOT"], idx["a"], idx["b"]])
        assert torch.allclose(stage1[idx["ROOT"]], root, atol=1e-6)
        # A leaf has no children: only its self loop, attention weight 1. (The MedM-PLM code's
        # bug — softmax grouped by source — would give the leaf a mixture here.)
        leaf = gat_by_hand(emb.stage_one, emb.M, idx["a"], [idx["a"]])
        assert torch.allclose(stage1[idx["a"]], leaf, atol=1e-6)
        assert torch.allclose(leaf, emb.M[idx["a"]] @ emb.stage_one.lin.weight.T + emb.stage_one.bias, atol=1e-6)
        # Eq. 2: each code attends over itself and its ancestor, from the stage-one vectors.
        codes = emb()
        assert codes.shape == (2, 6)
        for c in ("a", "b"):
            ref = gat_by_hand(emb.stage_two, stage1, idx[c], [idx[c], idx["ROOT"]])
            assert torch.allclose(codes[idx[c]], ref, atol=1e-6)


def test_gat_leaf_attends_over_its_two_ancestors():
    torch.manual_seed(1)
    emb = OntologyEmbedding(["x"], {"x": "P", "P": "ROOT"}, embed_dim=4, heads=3)
    idx = emb.graph.index
    with torch.no_grad():
        stage1 = emb.node_embeddings()
        # Eq. 1: P over {P, x}; ROOT over {ROOT, P} (direct children only, not x).
        assert torch.allclose(stage1[idx["P"]], gat_by_hand(emb.stage_one, emb.M, idx["P"], [idx["P"], idx["x"]]), atol=1e-6)
        assert torch.allclose(stage1[idx["ROOT"]], gat_by_hand(emb.stage_one, emb.M, idx["ROOT"], [idx["ROOT"], idx["P"]]), atol=1e-6)
        ref = gat_by_hand(emb.stage_two, stage1, idx["x"], [idx["x"], idx["P"], idx["ROOT"]])
        assert torch.allclose(emb()[0], ref, atol=1e-6)


def test_ontology_graph_edges_and_errors():
    g = OntologyGraph(["a", "b"], {"a": "P", "b": "P", "P": "ROOT"})
    n = g.index
    assert set(map(tuple, g.stage_one_edges.t().tolist())) == {(n["a"], n["P"]), (n["b"], n["P"]), (n["P"], n["ROOT"])}
    assert set(map(tuple, g.stage_two_edges.t().tolist())) == {
        (n["P"], n["a"]), (n["ROOT"], n["a"]), (n["P"], n["b"]), (n["ROOT"], n["b"])}
    with pytest.raises(ValueError, match="'z' is in the vocabulary but not in its ontology tree"):
        OntologyGraph(["z"], {"a": "ROOT"}, "diagnosis")
    with pytest.raises(ValueError, match="cycle"):
        OntologyGraph(["a"], {"a": "b", "b": "a"})
    with pytest.raises(ValueError, match="parent 'Q' of 'a' is not in the tree"):
        OntologyGraph(["a"], {"a": "Q"})
    with pytest.raises(ValueError, match="duplicate"):
        OntologyGraph(["a", "a"], {"a": "ROOT"})


# ---- code tower ---------------------------------------------------------------------------------

def test_code_config_vocab_and_encode():
    cfg = tiny_code_cfg()
    assert cfg.hidden_size == 32
    assert cfg.dx_range == (5, 35) and cfg.med_range == (35, 55) and cfg.vocab_size == 55
    assert cfg.vocab()[:5] == ["[PAD]", "[CLS]", "[MASK]", "[SEP]", "[UNK]"]
    assert cfg.vocab()[5] == "dx:D00" and cfg.vocab()[35] == "med:M00"
    assert cfg.encode(["D01", "nope"], ["M02"]) == [CLS_ID, 6, UNK_ID, 37]
    assert len(cfg.encode(["D00"] * 20, [])) == cfg.max_codes
    # Trees are stored restricted to the vocabulary's ancestors and round-trip through JSON.
    big = tiny_trees()[1] | {"UNUSED": "ROOT"}
    small = tiny_code_cfg(dx_tree=big)
    assert "UNUSED" not in small.dx_tree
    assert CodeEncoderConfig.from_dict(json.loads(json.dumps(small.to_dict()))) == small
    # A CodeTree.to_json()-style dict is accepted too.
    assert tiny_code_cfg(dx_tree={"system": "icd9", "parent": big}).dx_tree == small.dx_tree


def test_code_encoder_shapes_padding_and_grad():
    torch.manual_seed(0)
    cfg = tiny_code_cfg()
    enc = CodeEncoder(cfg)
    batch = tiny_batch(cfg)
    z, cls = enc(batch["code_ids"], batch["code_mask"])
    assert z.shape == (3, 8, 32) and cls.shape == (3, 32)
    (z.sum() + cls.sum()).backward()
    assert enc.dx_ontology.M.grad is not None and enc.med_ontology.M.grad is not None
    assert enc.special.weight.grad is not None
    # Padding does not change a visit's outputs.
    enc.eval()
    ids = batch["code_ids"][2:3, :4]
    with torch.no_grad():
        z_short, _ = enc(ids, torch.ones_like(ids, dtype=torch.bool))
        padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], 1)
        z_pad, _ = enc(padded, padded != PAD_ID)
    assert torch.allclose(z_short, z_pad[:, :4], atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        enc(torch.tensor([[CLS_ID, 999]]))


def test_code_encoder_length_buckets_match_one_padded_pass():
    """Bucketed encoding (rows sorted by length, each bucket cut to its longest row) gives the
    same real-position outputs and the same gradients as one padded pass."""
    torch.manual_seed(0)
    cfg = tiny_code_cfg(dropout=0.0)
    enc = CodeEncoder(cfg)
    B, L = 37, 12
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(cfg.dx_range[0], cfg.vocab_size, (B, L), generator=g)
    ends = torch.randint(1, L + 1, (B,), generator=g)
    mask = torch.arange(L)[None] < ends[:, None]
    mask[3, 2] = False  # a hole: buckets are cut at the last real position, not the count
    ids[:, 0] = CLS_ID
    ids[~mask] = PAD_ID
    w = torch.randn(B, L, cfg.hidden_size, generator=g)  # a loss whose gradient is not ~0 (sum z^2 is, after LayerNorm)
    outs, grads = {}, {}
    for k in (0, 8):
        enc.bucket_rows = k
        enc.zero_grad()
        z, cls = enc(ids, mask)
        (z * mask[..., None] * w).sum().backward()
        outs[k] = (z * mask[..., None]).detach(), cls.detach()
        grads[k] = enc.dx_ontology.M.grad.clone()
    assert torch.allclose(outs[0][0], outs[8][0], atol=1e-5) and torch.allclose(outs[0][1], outs[8][1], atol=1e-5)
    assert torch.allclose(grads[0], grads[8], rtol=1e-4, atol=1e-4)


# ---- cross-modal (Eq. 6-7) ----------------------------------------------------------------------

def test_cross_modal_matches_equations():
    torch.manual_seed(0)
    B, LT, LC, HT, d = 2, 5, 4, 6, 4
    cm = CrossModal(HT, d)
    z_text, z_code = torch.randn(B, LT, HT), torch.randn(B, LC, d)
    tmask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    cmask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    out = cm(z_text, tmask, z_code, cmask)
    zt = z_text @ cm.text_proj.weight.T + cm.text_proj.bias  # text side projected to d
    for b in range(B):
        T, C = zt[b][tmask[b].bool()], z_code[b][cmask[b].bool()]  # unpadded tokens only
        zt_hat, zc_hat = T[0], C[0]
        a_c2t = torch.softmax(zc_hat @ T.T / math.sqrt(d), 0)
        a_t2c = torch.softmax(zt_hat @ C.T / math.sqrt(d), 0)
        assert torch.allclose(out.r_code[b], a_c2t @ T + zc_hat, atol=1e-6)  # Eq. 6
        assert torch.allclose(out.r_text[b], a_t2c @ C + zt_hat, atol=1e-6)  # Eq. 7
        assert torch.allclose(out.attn_code_to_text[b, : len(T)], a_c2t, atol=1e-6)
        assert torch.allclose(out.attn_text_to_code[b, : len(C)], a_t2c, atol=1e-6)
    assert out.attn_code_to_text[1, 3:].abs().sum() == 0 and out.attn_text_to_code[1, 2:].abs().sum() == 0
    off = CrossModal(HT, d, enabled=False)(z_text, tmask, z_code, cmask)
    assert off.attn_text_to_code is None and torch.equal(off.r_code, z_code[:, 0])
    same = CrossModal(d, d)  # equal widths: no projection, Eq. 6 on the raw text tokens
    assert isinstance(same.text_proj, torch.nn.Identity)
    z_text_d = torch.randn(B, LT, d)
    T = z_text_d[0]
    a = torch.softmax(z_code[0, 0] @ T.T / math.sqrt(d), 0)
    assert torch.allclose(same(z_text_d, tmask, z_code, cmask).r_code[0], a @ T + z_code[0, 0], atol=1e-6)


# ---- MedM-PLM -----------------------------------------------------------------------------------

def test_medm_plm_features_and_backward():
    torch.manual_seed(0)
    cfg = tiny_plm_cfg()
    model = MedMPLM(cfg)
    batch = tiny_batch(cfg.code)
    f = model(batch)
    shapes = {k: tuple(v.shape) for k, v in f.items()}
    assert shapes == {"z_text": (3, 10, 48), "z_text_cls": (3, 48), "z_code": (3, 8, 32), "z_code_cls": (3, 32),
                      "r_text": (3, 32), "r_code": (3, 32), "attn_text_to_code": (3, 8), "attn_code_to_text": (3, 10)}
    assert torch.allclose(f["attn_text_to_code"].sum(1), torch.ones(3))
    (f["r_text"].sum() + f["r_code"].sum()).backward()
    assert model.text.embeddings.word_embeddings.weight.grad is not None
    assert model.code.dx_ontology.M.grad is not None
    # Ablation: no attention, R = Ẑ.
    abl = MedMPLM(tiny_plm_cfg(cross_modal=False))
    fa = abl(batch)
    assert "attn_text_to_code" not in fa and torch.equal(fa["r_code"], fa["z_code_cls"])
    # A missing modality is an absent key.
    only_codes = model({"code_ids": batch["code_ids"], "code_mask": batch["code_mask"]})
    assert set(only_codes) == {"z_code", "z_code_cls", "r_code"}
    only_text = model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    assert set(only_text) == {"z_text", "z_text_cls", "r_text"} and only_text["r_text"].shape == (3, 32)


@pytest.mark.parametrize("objective", ["ce", "bce"])
def test_pretraining_wrapper_sums_losses(objective):
    torch.manual_seed(0)
    model = MedMPLMForPretraining(tiny_plm_cfg(objective=objective))
    batch = model.mask(tiny_batch(model.config.code), torch.Generator().manual_seed(0), min_one=True)
    assert (batch["code_labels"] != -100).any(1).all()
    assert (batch["code_ids"] == MASK_ID).any()
    out = model(batch)
    assert torch.allclose(out["loss"], out["loss_t2c"] + out["loss_c2c"])  # Eq. 10
    assert out["logits_t2c"].shape == (3, model.config.code.num_codes)
    out["loss"].backward()
    # Every trainable parameter gets a gradient (DistributedDataParallel needs no unused ones).
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    with pytest.raises(KeyError, match="code_labels"):
        model({k: v for k, v in batch.items() if k != "code_labels"})


# ---- checkpoints --------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    tok = train_wordpiece(NOTES, vocab_size=100, min_frequency=1)
    cfg = MedMPLMConfig(text=tiny_text_cfg(vocab_size=len(tok), freeze_layers=1), code=tiny_code_cfg())
    pre = MedMPLMForPretraining(cfg).eval()
    batch = pre.mask(tiny_batch(cfg.code), torch.Generator().manual_seed(1), min_one=True)
    batch["input_ids"] = batch["input_ids"] % len(tok)
    with torch.no_grad():
        ref = pre(batch)
    save_pretrained(pre, tmp_path / "ckpt", tokenizer=tok)
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"config.json", "model.safetensors",
                                                              "code_vocab.json", "text"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    pre2 = from_pretrained(tmp_path / "ckpt")
    assert isinstance(pre2, MedMPLMForPretraining)
    pre2.eval()
    with torch.no_grad():
        out = pre2(batch)
    for k in ("loss", "logits_t2c", "logits_c2c"):
        assert torch.equal(out[k], ref[k]), k
    # Frozen layers stay frozen after loading.
    assert not any(p.requires_grad for p in pre2.model.text.encoder.layer[0].parameters())
    # The MedM-PLM encoder alone (heads dropped) and the code tower alone load from it.
    plm = load_medm_plm(tmp_path / "ckpt", dx_vocab=cfg.code.dx_vocab, med_vocab=cfg.code.med_vocab).eval()
    with torch.no_grad():
        assert torch.equal(plm(batch)["r_text"], pre.model(batch)["r_text"])
        code = load_code_encoder(tmp_path / "ckpt").eval()
        assert torch.equal(code(batch["code_ids"], batch["code_mask"])[0], pre.model(batch)["z_code"])
    # The text tower is a plain BERT directory.
    bert = BertModel.from_pretrained(tmp_path / "ckpt" / "text").eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "ckpt" / "text")
    assert tok2.get_vocab() == tok.get_vocab()
    with torch.no_grad():
        h = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.allclose(h, pre.model(batch)["z_text"], atol=1e-6)
    assert isinstance(load_text_encoder(tmp_path / "ckpt"), BertModel)
    # Re-saving a loaded model carries its tokenizer along without being given it.
    save_pretrained(plm, tmp_path / "again")
    assert AutoTokenizer.from_pretrained(tmp_path / "again" / "text").get_vocab() == tok.get_vocab()
    # Overwriting a checkpoint works; overwriting an unrelated non-empty directory does not.
    save_pretrained(pre.model, tmp_path / "ckpt", tokenizer=tok)
    assert isinstance(from_pretrained(tmp_path / "ckpt"), MedMPLM)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("x")
    with pytest.raises(FileExistsError, match="refusing"):
        save_pretrained(pre.model, tmp_path / "other")


def test_code_encoder_round_trip_and_vocab_mismatch(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_code_cfg()
    enc = CodeEncoder(cfg).eval()
    save_pretrained(enc, tmp_path / "code")
    vocab = json.loads((tmp_path / "code" / "code_vocab.json").read_text())
    assert vocab["dx"] == cfg.dx_vocab and vocab["tokens"] == cfg.vocab()
    enc2 = from_pretrained(tmp_path / "code").eval()
    batch = tiny_batch(cfg)
    with torch.no_grad():
        assert torch.equal(enc(batch["code_ids"], batch["code_mask"])[0], enc2(batch["code_ids"], batch["code_mask"])[0])
    swapped = list(cfg.dx_vocab)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    with pytest.raises(ValueError, match="diagnosis vocabulary mismatch.*index 3: checkpoint 'D03' vs given 'D04'"):
        load_code_encoder(tmp_path / "code", dx_vocab=swapped)
    with pytest.raises(ValueError, match="medication vocabulary mismatch.*'M99'"):
        load_code_encoder(tmp_path / "code", med_vocab=cfg.med_vocab + ["M99"])


def test_bad_checkpoint_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_pretrained(tmp_path / "x")
    (tmp_path / "x" / "config.json").write_text(json.dumps({"model_type": "mystery", "format_version": 1}))
    with pytest.raises(ValueError, match="unknown model_type 'mystery'"):
        from_pretrained(tmp_path / "x")
    enc = CodeEncoder(tiny_code_cfg())
    save_pretrained(enc, tmp_path / "code")
    (tmp_path / "code" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        from_pretrained(tmp_path / "code")
