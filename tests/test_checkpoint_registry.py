"""The checkpoint registry (`medmm.models.pretrained.MODEL_TYPES`), the pinned on-disk layout, and
a text tower that keeps its source BERT's pooler."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BertConfig, BertForPreTraining, BertModel

from medmm.models import pretrained as P
from medmm.models.code_encoder import CodeEncoder, CodeEncoderConfig
from medmm.models.medm_plm import MedMPLM, MedMPLMConfig, MedMPLMForPretraining
from medmm.models.text import TextEncoderConfig, TextMLM, build_text_encoder, freeze

# ---- tiny fixtures ------------------------------------------------------------------------------


def tiny_code_cfg() -> CodeEncoderConfig:
    dx = [f"D{i}" for i in range(6)]
    med = [f"M{i}" for i in range(4)]
    dx_tree = {c: f"C{i // 3}" for i, c in enumerate(dx)} | {"C0": "ROOT", "C1": "ROOT"}
    med_tree = {c: "L1" for c in med} | {"L1": "ROOT"}
    return CodeEncoderConfig(dx_vocab=dx, med_vocab=med, dx_tree=dx_tree, med_tree=med_tree, embed_dim=4,
                             gat_heads=2, num_layers=1, num_heads=2, intermediate_size=16, max_codes=8)


def tiny_text_cfg(**kw) -> TextEncoderConfig:
    return TextEncoderConfig(**{**dict(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2,
                                       intermediate_size=32, max_position_embeddings=32), **kw})


def tiny_bert_config() -> BertConfig:
    return BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, pad_token_id=0)


def pooled_bert_dir(path) -> BertModel:
    """A tiny BERT directory WITH a pooler, as a real BERT / MiniLM directory is."""
    torch.manual_seed(1)
    bert = BertModel(tiny_bert_config(), add_pooling_layer=True)
    bert.save_pretrained(str(path))
    return bert


def plm_cfg(**text) -> MedMPLMConfig:
    return MedMPLMConfig(text=tiny_text_cfg(**text), code=tiny_code_cfg())


# One saveable instance per registered model_type: a type registered without an entry here fails
# test_every_model_type_has_a_round_trip_case.
CASES = {
    P.BERT: lambda: BertModel(tiny_bert_config(), add_pooling_layer=False),
    P.CODE_ENCODER: lambda: CodeEncoder(tiny_code_cfg()),
    P.MEDM_PLM: lambda: MedMPLM(plm_cfg()),
    P.MEDM_PLM_PRETRAINING: lambda: MedMPLMForPretraining(plm_cfg()),
}


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


# ---- the registry -------------------------------------------------------------------------------

def test_every_model_type_has_a_round_trip_case():
    assert set(CASES) == set(P.MODEL_TYPES)


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_every_model_type_round_trips(model_type, tmp_path):
    torch.manual_seed(0)
    model = CASES[model_type]()
    cls = P.model_class(model_type)
    assert type(model) is cls
    P.save_pretrained(model, tmp_path / "ckpt")
    assert P.read_config(tmp_path / "ckpt")["model_type"] == model_type
    again = P.from_pretrained(tmp_path / "ckpt")
    assert type(again) is cls
    assert_same_state(model, again)


def test_a_pooled_bert_and_a_text_mlm_round_trip(tmp_path):
    bert = pooled_bert_dir(tmp_path / "src")
    P.save_pretrained(bert, tmp_path / "bert")
    assert_same_state(bert, P.from_pretrained(tmp_path / "bert"))
    # A TextMLM is saved as a BERT directory and reads back as its encoder.
    mlm = TextMLM(tiny_text_cfg())
    assert P.model_class(TextMLM.model_type) is BertModel
    P.save_pretrained(mlm, tmp_path / "mlm")
    again = P.from_pretrained(tmp_path / "mlm")
    assert type(again) is BertModel and again.pooler is None
    assert_same_state(mlm.encoder(), again)


def test_unknown_model_type_names_the_known_ones(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text(json.dumps({"model_type": "medcsp-x", "format_version": 1}))
    known = "bert, medmm-code-encoder, medm-plm, medm-plm-pretraining"
    with pytest.raises(ValueError, match=f"unknown model_type 'medcsp-x' \\(known: {known}\\)"):
        P.from_pretrained(tmp_path / "x")
    with pytest.raises(ValueError, match="unknown model_type 'nope'"):
        P.model_class("nope")


def test_unsupported_and_misregistered_classes(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="unsupported model type Linear"):
        P.save_pretrained(nn.Linear(2, 2), tmp_path / "lin")
    assert not (tmp_path / "lin").exists()

    class Stray(nn.Module):  # carries the hooks, but its model_type is not registered
        model_type = "stray"

        def write_checkpoint(self, directory, tokenizer=None):
            P.write_config(directory, self.model_type, {})

    with pytest.raises(ValueError, match="unknown model_type 'stray'"):
        P.save_pretrained(Stray(), tmp_path / "stray")
    assert not (tmp_path / "stray").exists()  # refused before anything was written
    monkeypatch.setitem(P.MODEL_TYPES, "stray", CodeEncoder)
    with pytest.raises(TypeError, match="CodeEncoder, whose model_type is 'medmm-code-encoder'"):
        P.model_class("stray")


def test_registering_a_class_makes_it_saveable(tmp_path, monkeypatch):
    """What a new model (MedCSP's encoders) needs: model_type, the two hooks, one registry entry."""

    class Toy(nn.Module):
        model_type = "toy"

        def __init__(self, width: int):
            super().__init__()
            self.width = width
            self.proj = nn.Linear(width, 2)

        def write_checkpoint(self, directory, tokenizer=None):
            P.write_config(directory, self.model_type, {"width": self.width})
            P.save_weights(self, directory / P.WEIGHTS)

        @classmethod
        def read_checkpoint(cls, directory, data, dx_vocab=None, med_vocab=None):
            model = cls(**data["config"])
            P.load_weights(model, directory / P.WEIGHTS)
            return model

    monkeypatch.setitem(P.MODEL_TYPES, "toy", Toy)
    toy = Toy(3)
    P.save_pretrained(toy, tmp_path / "toy")
    again = P.from_pretrained(tmp_path / "toy")
    assert type(again) is Toy and again.width == 3
    assert_same_state(toy, again)


def test_code_tower_comes_only_from_checkpoints_that_hold_one(tmp_path):
    torch.manual_seed(0)
    pre = MedMPLMForPretraining(plm_cfg())
    P.save_pretrained(pre, tmp_path / "pre")
    assert_same_state(pre.model.code, P.load_code_encoder(tmp_path / "pre"))
    assert_same_state(pre.model, P.load_medm_plm(tmp_path / "pre"))
    P.save_pretrained(BertModel(tiny_bert_config(), add_pooling_layer=False), tmp_path / "bert")
    with pytest.raises(ValueError, match="model_type 'bert' holds no code encoder"):
        P.load_code_encoder(tmp_path / "bert")
    P.save_pretrained(pre.model, tmp_path / "plm")
    with pytest.raises(ValueError, match="model_type 'medm-plm', expected 'medm-plm-pretraining'"):
        P.load_medm_plm_for_pretraining(tmp_path / "plm")
    P.save_pretrained(pre.model.code, tmp_path / "code")
    with pytest.raises(ValueError, match="'medmm-code-encoder' is not a MedM-PLM checkpoint"):
        P.load_medm_plm(tmp_path / "code")


# ---- the on-disk format, pinned -----------------------------------------------------------------

def _keys(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def test_medm_plm_layout_is_pinned(tmp_path):
    torch.manual_seed(0)
    for model, kind, prefix in ((MedMPLM(plm_cfg()), "medm-plm", ""),
                                (MedMPLMForPretraining(plm_cfg()), "medm-plm-pretraining", "model.")):
        d = P.save_pretrained(model, tmp_path / kind)
        assert sorted(p.name for p in d.iterdir()) == ["code_vocab.json", "config.json", "model.safetensors", "text"]
        assert sorted(p.name for p in (d / "text").iterdir()) == ["config.json", "model.safetensors"]
        data = json.loads((d / "config.json").read_text())
        assert list(data) == ["model_type", "format_version", "config"]
        assert data["model_type"] == kind and data["format_version"] == 1
        assert list(data["config"]) == ["text", "code", "cross_modal", "objective", "dropout", "mask_prob"]
        assert list(data["config"]["text"]) == ["pretrained_path", "vocab_size", "hidden_size", "num_layers",
                                                "num_heads", "intermediate_size", "max_position_embeddings",
                                                "dropout", "freeze_embeddings", "freeze_layers"]
        assert data["config"]["text"]["pretrained_path"] is None
        assert list(data["config"]["code"]) == ["dx_vocab", "med_vocab", "dx_tree", "med_tree", "embed_dim",
                                                "gat_heads", "num_layers", "num_heads", "intermediate_size",
                                                "dropout", "max_codes", "gat_dropout"]
        vocab = json.loads((d / "code_vocab.json").read_text())
        assert list(vocab) == ["dx", "med", "tokens"] and vocab["tokens"] == tiny_code_cfg().vocab()
        sd = model.state_dict()
        assert _keys(d / "model.safetensors") == {k for k in sd if not k.startswith(prefix + "text.")}
        text = json.loads((d / "text" / "config.json").read_text())
        assert text["model_type"] == "bert" and text["architectures"] == ["BertModel"]
        assert _keys(d / "text" / "model.safetensors") == {k[len(prefix + "text."):] for k in sd
                                                           if k.startswith(prefix + "text.")}
        assert (d / "config.json").read_text().endswith("}\n")  # indent=2, newline-terminated


def test_code_encoder_layout_is_pinned_and_a_hand_written_directory_loads(tmp_path):
    torch.manual_seed(0)
    enc = CodeEncoder(tiny_code_cfg())
    d = P.save_pretrained(enc, tmp_path / "code")
    assert sorted(p.name for p in d.iterdir()) == ["code_vocab.json", "config.json", "model.safetensors"]
    data = json.loads((d / "config.json").read_text())
    assert data == {"model_type": "medmm-code-encoder", "format_version": 1, "config": enc.config.to_dict()}
    assert list(data) == ["model_type", "format_version", "config"]
    assert _keys(d / "model.safetensors") == set(enc.state_dict())
    # A directory written by hand in the same layout, without the writer, reads back.
    hand = tmp_path / "hand"
    hand.mkdir()
    (hand / "config.json").write_text(json.dumps({"model_type": "medmm-code-encoder", "format_version": 1,
                                                  "config": enc.config.to_dict()}))
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(hand / "model.safetensors"))
    assert_same_state(enc, P.from_pretrained(hand))


# ---- the text tower keeps its source's pooler --------------------------------------------------

def _plain_reload(path) -> BertModel:
    bert, info = BertModel.from_pretrained(str(path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return bert


def test_a_tower_from_a_pooled_bert_saves_its_pooler(tmp_path):
    src = pooled_bert_dir(tmp_path / "src")
    tower = build_text_encoder(TextEncoderConfig(pretrained_path=str(tmp_path / "src")))
    assert tower.pooler is not None
    assert not any(p.requires_grad for p in tower.pooler.parameters())  # unused: kept out of training
    P.save_pretrained(tower, tmp_path / "tower")
    again = _plain_reload(tmp_path / "tower")
    assert torch.equal(again.pooler.dense.weight, src.pooler.dense.weight)
    assert torch.equal(again.pooler.dense.bias, src.pooler.dense.bias)
    assert_same_state(src, again)


def test_a_medm_plm_from_a_pooled_bert_saves_its_pooler(tmp_path):
    src = pooled_bert_dir(tmp_path / "src")
    torch.manual_seed(0)
    plm = MedMPLM(MedMPLMConfig(text=TextEncoderConfig(pretrained_path=str(tmp_path / "src"), freeze_layers=1),
                                code=tiny_code_cfg()))
    P.save_pretrained(plm, tmp_path / "plm")
    assert_same_state(src, _plain_reload(tmp_path / "plm" / "text"))
    again = P.from_pretrained(tmp_path / "plm")
    assert again.text.pooler is not None
    assert_same_state(plm, again)
    # Re-freezing (as the downstream wrapper does after unfreezing all) keeps the pooler frozen.
    again.text.requires_grad_(True)
    freeze(again.text, False, 0)
    assert not any(p.requires_grad for p in again.text.pooler.parameters())


def test_a_clinicalbert_style_pooler_is_kept(tmp_path):
    """BertForPreTraining checkpoints (ClinicalBERT's layout) name it bert.pooler.*."""
    torch.manual_seed(2)
    full = BertForPreTraining(tiny_bert_config())
    full.save_pretrained(str(tmp_path / "src"))
    tower = build_text_encoder(TextEncoderConfig(pretrained_path=str(tmp_path / "src")))
    P.save_pretrained(tower, tmp_path / "tower")
    again = _plain_reload(tmp_path / "tower")
    assert torch.equal(again.pooler.dense.weight, full.bert.pooler.dense.weight)


def test_a_tower_without_a_pooler_stays_without_one(tmp_path):
    BertModel(tiny_bert_config(), add_pooling_layer=False).save_pretrained(str(tmp_path / "src"))
    tower = build_text_encoder(TextEncoderConfig(pretrained_path=str(tmp_path / "src")))
    assert tower.pooler is None
    P.save_pretrained(tower, tmp_path / "tower")
    assert not any("pooler" in k for k in _keys(tmp_path / "tower" / "model.safetensors"))
    assert P.load_text_encoder(tmp_path / "tower").pooler is None
    assert build_text_encoder(tiny_text_cfg()).pooler is None  # a new tower: none unless asked


def test_find_model_dirs_by_model_type_outside_checkpoints(tmp_path):
    from medmm.models.pretrained import find_model_dir, find_model_dirs

    def put(rel: str, kind: str | None) -> None:
        d = tmp_path / rel
        d.mkdir(parents=True)
        (d / "config.json").write_text("{not json" if kind is None else json.dumps({"model_type": kind}))

    put("medm-plm/model", "medm-plm")
    put("medm-plm/model/text", "bert")
    put("medm-plm/checkpoints/best", "medm-plm")  # resume state: never a model to load
    put("text-mlm/text", "bert")
    put("broken", None)
    put("a/b/c/d", "bert")  # four levels down: beyond the default depth
    found = find_model_dirs(tmp_path)
    assert found == {"medm-plm": [tmp_path / "medm-plm/model"],
                     "bert": [tmp_path / "medm-plm/model/text", tmp_path / "text-mlm/text"]}
    assert find_model_dirs(tmp_path, depth=4)["bert"][0] == tmp_path / "a/b/c/d"
    assert find_model_dir(tmp_path, ("medm-plm",), "MedM-PLM") == tmp_path / "medm-plm/model"
    assert find_model_dir(tmp_path / "text-mlm/text", ("bert",), "BERT") == tmp_path / "text-mlm/text"
    with pytest.raises(FileNotFoundError, match="expected one BERT directory .* found 2"):
        find_model_dir(tmp_path, ("bert",), "BERT")
