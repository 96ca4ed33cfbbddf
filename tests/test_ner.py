"""NER probe building blocks: BIO alignment over word pieces, windows, i2b2 reader, strict entity
F1 (hand-worked and against seqeval) and the BiLSTM-CRF (scratch and tiny BERT tower)."""

from __future__ import annotations

import random

import polars as pl
import pytest
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, BertTokenizerFast

from medmm.eval.ner_metrics import entities_from_tags, strict_entity_f1, strict_entity_scores
from medmm.models.bilstm_crf import BiLSTMCRF, BiLSTMCRFConfig, gather_words
from medmm.tasks.ner import (
    IGNORE_INDEX, NERDataset, NERDocument, Span, bio_tags, count_orphan_entities, documents_from_frames,
    read_i2b2, read_i2b2_dir, tag_names,
)

CORPUS = [
    "patient has chest pain and hypertension; given aspirin.",
    "chest x-ray clear. no pneumonia.",
    "hypertension treated with lisinopril and metoprolol.",
    "creatinine rising, started dialysis for renal failure.",
    "denies fever. blood culture negative.",
]
TAGS = tag_names()


@pytest.fixture(scope="module")
def tok():
    """A tiny uncased BERT WordPiece tokenizer, small enough that long words split into pieces."""
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=70, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", t.token_to_id("[CLS]")), ("[SEP]", t.token_to_id("[SEP]"))])
    return BertTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")


def spans_of(text: str, *items: tuple[str, str]) -> list[Span]:
    out = []
    for phrase, label in items:
        i = text.index(phrase)
        out.append(Span(i, i + len(phrase), label))
    return out


# --- BIO construction ------------------------------------------------------------------------


def test_bio_alignment_across_word_pieces(tok):
    text = "Patient has Chest pain and hypertension; given aspirin. Chest x-ray clear."
    spans = spans_of(text, ("Chest pain", "problem"), ("hypertension", "problem"), ("aspirin", "treatment"),
                     ("Chest x-ray", "test"))
    expected = {  # word -> tag, words as the BERT pre-tokenizer splits them ("x-ray" -> x, -, ray)
        0: "O", 1: "O", 2: "B-problem", 3: "I-problem", 4: "O", 5: "B-problem", 6: "O", 7: "O",
        8: "B-treatment", 9: "O", 10: "B-test", 11: "I-test", 12: "I-test", 13: "I-test", 14: "O", 15: "O",
    }
    (w,) = bio_tags(text, spans, tok, max_length=128)
    pieces = tok.convert_ids_to_tokens(w.input_ids)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert w.word_ids[0] is None and w.word_ids[-1] is None
    assert w.labels[0] == w.labels[-1] == IGNORE_INDEX
    assert sorted(set(x for x in w.word_ids if x is not None)) == list(expected)
    # the premise of the test: "hypertension" (word 5) is cut into several pieces
    hyp = [j for j, x in enumerate(w.word_ids) if x == 5]
    assert len(hyp) >= 2, pieces
    assert w.labels[hyp[0]] == TAGS.index("B-problem")
    assert all(w.labels[j] == IGNORE_INDEX for j in hyp[1:])
    seen = set()
    for j, x in enumerate(w.word_ids):
        if x is None:
            continue
        if x not in seen:
            assert w.labels[j] == TAGS.index(expected[x]), (j, pieces[j])
            seen.add(x)
        else:
            assert w.labels[j] == IGNORE_INDEX
    assert w.attention_mask == [1] * len(w.input_ids)


def test_bio_rejects_bad_spans(tok):
    text = "chest pain and fever"
    with pytest.raises(ValueError, match="share the word"):
        bio_tags(text, [(0, 10, "problem"), (6, 20, "problem")], tok)
    with pytest.raises(ValueError, match="label 'drug'"):
        bio_tags(text, [(0, 5, "drug")], tok)
    with pytest.raises(ValueError, match="outside the text"):
        bio_tags(text, [(15, 99, "problem")], tok)
    with pytest.raises(ValueError, match="covers no word"):
        bio_tags("chest  pain", [(5, 7, "problem")], tok)


def test_long_note_windows_cover_every_word_once(tok):
    sentence = "patient has chest pain and hypertension."
    text = " ".join([sentence] * 12)
    spans = [Span(i, i + 10, "problem") for i in range(len(text)) if text.startswith("chest pain", i)]
    # a sentence is ~20 pieces (the trained vocabulary varies a little from run to run): a
    # window of 40 holds one sentence and part of the next, and must cut after the full stop
    ds = NERDataset([NERDocument("n1", text, spans)], tok, max_length=40)
    assert len(ds) > 1
    words = []
    for w in ds.windows:
        assert len(w.input_ids) <= 40
        words += sorted(set(x for x in w.word_ids if x is not None))
        last_word = max(x for x in w.word_ids if x is not None)
        # sentence-aware cut: every window but the note's last ends on a full stop
        if w is not ds.windows[-1]:
            s, e = ds.word_spans[0][last_word]
            assert text[s:e] == "."
    assert words == list(range(len(ds.word_spans[0])))
    gold = [[l for l in w.labels if l != IGNORE_INDEX] for w in ds.windows]
    assert ds.document_tags(gold) == ds.gold
    assert ds.predicted_spans(ds.gold) == [spans]


def test_entity_cut_by_a_window_edge_is_stitched_whole(tok):
    text = "fever " + " ".join(["hypertension"] * 10) + " fever"
    assert len(tok.tokenize("hypertension")) >= 2
    span = Span(6, len(text) - 6, "problem")
    ds = NERDataset([(text, [span])], tok, max_length=12)
    assert len(ds) >= 3                      # no sentence end: fixed-size windows
    # 10 words of >= 2 pieces cannot fit one 10-piece window: some window opens inside the entity
    first_tags = [TAGS[w.labels[1]] for w in ds.windows]
    assert first_tags[0] == "O" and "I-problem" in first_tags[1:]
    stitched = ds.document_tags([[l for l in w.labels if l != IGNORE_INDEX] for w in ds.windows])
    assert ds.predicted_spans(stitched) == [[span]]
    assert strict_entity_f1(ds.gold, stitched) == 1.0


def test_documents_from_frames(tok):
    raw = ["Pt with CHEST PAIN.\nGiven Aspirin.", "No complaints."]
    notes = pl.DataFrame({"note_id": [11, 12], "patient_id": [1, 2],
                          "text": [r.lower().replace("\n", " ") for r in raw]})
    ents = pl.DataFrame({"ROW_ID": [11, 11, 99], "HADM_ID": [5, 5, 6], "start": [8, 26, 0], "end": [18, 33, 3],
                         "label": ["problem", "treatment", "test"], "text": ["CHEST PAIN", "Aspirin", "xyz"]})
    docs = documents_from_frames(notes, ents)
    assert [(d.doc_id, d.patient_id) for d in docs] == [(11, 1), (12, 2)]
    assert docs[0].spans == [Span(8, 18, "problem"), Span(26, 33, "treatment")]
    assert docs[1].spans == []
    assert [d.doc_id for d in documents_from_frames(notes, ents, keep_empty=False)] == [11]
    assert count_orphan_entities(notes, ents) == 1
    ds = NERDataset(docs, tok, max_length=64)
    assert ds.gold[0][:5] == ["O", "O", "B-problem", "I-problem", "O"]
    bad = ents.with_columns(pl.when(pl.col("start") == 26).then(pl.lit("Heparin")).otherwise("text").alias("text"))
    with pytest.raises(ValueError, match=r"row 1 \(ROW_ID 11\).*'Heparin'"):
        documents_from_frames(notes, bad)


# --- i2b2 2010 reader ------------------------------------------------------------------------

TXT = "Admission Date :\n2010-01-01\nThe patient had Chest pain and shortness of breath .\n" \
      "He was given Aspirin 81 mg and a chest x-ray was done .\n"
CON = ('c="chest pain" 3:3 3:4||t="problem"\n'
       'c="shortness of breath" 3:6 3:8||t="problem"\n'
       'c="aspirin 81 mg" 4:3 4:5||t="treatment"\n'
       'c="a chest x-ray" 4:7 4:9||t="test"\n')


def test_read_i2b2_exact(tmp_path):
    (tmp_path / "r.txt").write_text(TXT)
    (tmp_path / "r.con").write_text(CON)
    text, spans = read_i2b2(tmp_path / "r.txt", tmp_path / "r.con")
    assert text == TXT   # lines joined by "\n" (the trailing newline leaves an empty last line)
    # offsets worked by hand: line 3 starts at 17 + 11 = 28, line 4 at 28 + 52 + 1 = 81
    assert spans == [Span(44, 54, "problem"), Span(59, 78, "problem"), Span(94, 107, "treatment"),
                     Span(112, 125, "test")]
    assert [text[s:e] for s, e, _ in spans] == ["Chest pain", "shortness of breath", "Aspirin 81 mg", "a chest x-ray"]
    (tmp_path / "txt").mkdir()
    (tmp_path / "concept").mkdir()
    (tmp_path / "txt" / "r.txt").write_text(TXT)
    (tmp_path / "concept" / "r.con").write_text(CON)
    (doc,) = read_i2b2_dir(tmp_path / "txt", tmp_path / "concept")
    assert (doc.doc_id, doc.text, doc.spans) == ("r", text, spans)
    (tmp_path / "txt" / "s.txt").write_text(TXT)
    with pytest.raises(FileNotFoundError, match="no concept file"):
        read_i2b2_dir(tmp_path / "txt", tmp_path / "concept")


@pytest.mark.parametrize("line,msg", [
    ('c="chest pains" 3:3 3:4||t="problem"', "concept text 'chest pains'"),
    ('c="chest pain" 3:3 3:4||t="disease"', "concept type 'disease'"),
    ('c="chest pain" 9:3 9:4||t="problem"', "lines 9..9 outside"),
    ('c="chest pain" 3:3 3:40||t="problem"', "tokens 3:3 3:40 outside"),
    ('chest pain 3:3 3:4 problem', "not a concept line"),
])
def test_read_i2b2_errors_name_file_and_line(tmp_path, line, msg):
    (tmp_path / "r.txt").write_text(TXT)
    (tmp_path / "r.con").write_text(CON.splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"r\.con, line 2: {msg}"):
        read_i2b2(tmp_path / "r.txt", tmp_path / "r.con")


# --- strict entity F1 --------------------------------------------------------------------------


def test_strict_f1_partial_span_is_wrong():
    y_true = [["B-problem", "I-problem", "O", "B-test", "O"], ["B-treatment", "O"]]
    y_pred = [["B-problem", "O", "O", "B-test", "O"], ["I-treatment", "O"]]
    s = strict_entity_scores(y_true, y_pred)
    # gold: problem[0,2) test[3,4) treatment[0,1); predicted: problem[0,1) (too short), test[3,4);
    # the lone I-treatment starts no entity in strict IOB2.
    assert (s["tp"], s["predicted"], s["support"]) == (1, 2, 3)
    assert s["precision"] == pytest.approx(1 / 2) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert s["per_type"]["problem"]["f1"] == 0.0 and s["per_type"]["test"]["f1"] == 1.0
    assert s["per_type"]["treatment"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1,
                                          "predicted": 0, "tp": 0}
    assert entities_from_tags(["B-test", "I-problem", "I-problem", "B-test", "I-test"]) == [("test", 0, 1), ("test", 3, 5)]
    with pytest.raises(ValueError, match="3 gold tags but 2"):
        strict_entity_f1([["O", "O", "O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="'X-test'"):
        strict_entity_f1([["X-test"]], [["O"]])


def test_strict_f1_agrees_with_seqeval():
    rng = random.Random(0)
    y_true, y_pred = [], []
    for _ in range(300):
        n = rng.randint(1, 12)
        t = [rng.choice(TAGS) for _ in range(n)]
        # predictions: mostly the gold tag, sometimes another (makes partial and invalid spans)
        p = [x if rng.random() < 0.7 else rng.choice(TAGS) for x in t]
        y_true.append(t)
        y_pred.append(p)
    s = strict_entity_scores(y_true, y_pred)
    kw = dict(mode="strict", scheme=IOB2)
    assert s["f1"] == pytest.approx(f1_score(y_true, y_pred, **kw))
    assert s["precision"] == pytest.approx(precision_score(y_true, y_pred, **kw))
    assert s["recall"] == pytest.approx(recall_score(y_true, y_pred, **kw))
    rep = classification_report(y_true, y_pred, output_dict=True, **kw)
    for k in ("problem", "treatment", "test"):
        for m, m_seq in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support")):
            assert s["per_type"][k][m] == pytest.approx(rep[k][m_seq]), (k, m)
    assert s["macro_f1"] == pytest.approx(rep["macro avg"]["f1-score"])
    assert 0.2 < s["f1"] < 0.9   # the random case is neither trivial nor hopeless
    # ids with a vocabulary give the same numbers
    ids = lambda seqs: [[TAGS.index(x) for x in q] for q in seqs]  # noqa: E731
    assert strict_entity_f1(ids(y_true), ids(y_pred), id2tag=TAGS) == pytest.approx(s["f1"])


# --- BiLSTM-CRF --------------------------------------------------------------------------------


def _dataset(tok, max_length=64):
    docs = []
    for text, items in [
        (CORPUS[0], [("chest pain", "problem"), ("hypertension", "problem"), ("aspirin", "treatment")]),
        (CORPUS[1], [("chest x-ray", "test"), ("pneumonia", "problem")]),
        (CORPUS[2], [("hypertension", "problem"), ("lisinopril", "treatment"), ("metoprolol", "treatment")]),
        (CORPUS[3], [("creatinine", "test"), ("dialysis", "treatment"), ("renal failure", "problem")]),
        (CORPUS[4], [("fever", "problem"), ("blood culture", "test")]),
    ]:
        docs.append((text, spans_of(text, *items)))
    return NERDataset(docs, tok, max_length=max_length)


def _tiny_tower(tok):
    return BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))


def test_gather_words():
    x = torch.arange(2 * 5).view(2, 5, 1).float()
    wm = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    g, mask = gather_words(x, wm)
    assert g[0, :, 0].tolist() == [1, 3, 4] and g[1, 0, 0].item() == 7   # words in order; the rest is padding
    assert mask.tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize("embedding", ["scratch", "tower_frozen", "tower_finetune"])
def test_bilstm_crf_shapes_and_gradients(tok, embedding, one_thread):
    torch.manual_seed(0)
    ds = _dataset(tok)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    tower = None if embedding == "scratch" else _tiny_tower(tok)
    cfg = BiLSTMCRFConfig(tags=TAGS, embedding=embedding, vocab_size=len(tok), embed_dim=16, lstm_hidden=8,
                          pad_token_id=tok.pad_token_id)
    model = BiLSTMCRF(cfg, tower=tower).train()
    out = model(batch)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    n_words = [w.n_words for w in ds.windows]
    assert out["emissions"].shape == (len(ds), max(n_words), len(TAGS))
    assert out["mask"].sum(1).tolist() == n_words
    out["loss"].backward()
    assert model.lstm.weight_ih_l0.grad is not None and model.crf.transitions.grad is not None
    if embedding == "scratch":
        assert model.embedding.embed.weight.grad.abs().sum() > 0
    else:
        emb_grad = model.embedding.tower.embeddings.word_embeddings.weight.grad
        if embedding == "tower_frozen":
            assert emb_grad is None and not model.embedding.tower.training
        else:
            assert emb_grad is not None and emb_grad.abs().sum() > 0 and model.embedding.tower.training
    pred = model.eval().decode(batch)
    assert [len(p) for p in pred] == n_words
    assert all(0 <= t < len(TAGS) for p in pred for t in p)
    assert len(ds.document_tags(pred)) == len(ds.documents)


def test_bilstm_crf_save_load_roundtrip(tok, tmp_path, one_thread):
    torch.manual_seed(0)
    ds = _dataset(tok)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    cfg = BiLSTMCRFConfig(tags=TAGS, embedding="tower_finetune", lstm_hidden=8)
    model = BiLSTMCRF(cfg, tower=_tiny_tower(tok)).eval()
    model.save_pretrained(tmp_path / "m")
    again = BiLSTMCRF.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(model(batch)["emissions"], again(batch)["emissions"])
    assert model.decode(batch) == again.decode(batch)


def test_bilstm_crf_overfits_a_few_sentences(tok, one_thread):
    torch.manual_seed(0)
    ds = _dataset(tok)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    cfg = BiLSTMCRFConfig(tags=TAGS, vocab_size=len(tok), embed_dim=32, lstm_hidden=32, dropout=0.0,
                          pad_token_id=tok.pad_token_id)
    model = BiLSTMCRF(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model(batch)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    pred = ds.document_tags(model.eval().decode(batch))
    assert pred == ds.gold
    assert strict_entity_f1(ds.gold, pred) == 1.0


def test_bilstm_crf_bad_config(tok):
    with pytest.raises(ValueError, match="needs a text tower"):
        BiLSTMCRF(BiLSTMCRFConfig(tags=TAGS, embedding="tower_frozen"))
    with pytest.raises(ValueError, match="unknown embedding"):
        BiLSTMCRF(BiLSTMCRFConfig(tags=TAGS, embedding="glove"))
