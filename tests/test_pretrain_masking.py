"""Pre-training masks are a function of (seed, epoch, sample index) alone: the same on any number of
ranks, in any batch, and new each epoch -- what makes 2 ranks match 1 process (test_distributed)."""

from __future__ import annotations

import pytest
import torch

from medmm.models.code_encoder import MASK_ID
from medmm.recipes import pretrain as P

DX, MED = ["4019", "25000", "4280", "42731", "5849", "2724"], ["C07", "A10", "B01", "C10", "N02", "A02"]


@pytest.fixture(scope="module")
def gbert():
    cfg = P.GBertRecipe(code=P.CodeTowerRecipe(embed_dim=4, gat_heads=1, num_layers=1, num_heads=1,
                                               intermediate_size=8))
    torch.manual_seed(0)
    return P.build_gbert(cfg, DX, MED)


def visits(model, n: int = 12) -> P._Column:
    cc = model.encoder.config
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        k = int(torch.randint(2, 6, (1,), generator=g))
        rows.append(cc.encode([DX[int(i)] for i in torch.randperm(6, generator=g)[:k]],
                              [MED[int(i)] for i in torch.randperm(6, generator=g)[:k]]))
    return P._Column("code_ids", rows)


def per_sample(batch: dict, key: str, labels: str, i: int, length: int) -> tuple[list, list]:
    return batch[key][i, :length].tolist(), batch[labels][i, :length].tolist()


def test_code_masks_do_not_depend_on_the_batch_or_the_global_rng(gbert):
    ds = visits(gbert)
    collate = P._MaskingCollate(gbert, seed=3)
    state = torch.random.get_rng_state()
    full = collate([ds[i] for i in range(len(ds))])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched
    # "rank 1" of 2: every other sample, in another batch with another padded width
    shard = [ds[i] for i in range(1, len(ds), 2)]
    part = collate(shard[::-1])
    for j, s in enumerate(shard[::-1]):
        L = len(s["code_ids"])
        assert per_sample(part, "code_ids", "code_labels", j, L) == per_sample(full, "code_ids", "code_labels",
                                                                               s["index"], L)
        assert (part["code_labels"][j, L:] == -100).all() and (part["code_ids"][j, L:] == 0).all()
    masked = full["code_labels"] != -100
    assert masked.any() and (full["code_ids"][masked] == MASK_ID).float().mean() > 0.5  # 80 % become [MASK]
    orig = P.collate_visits([ds[i] for i in range(len(ds))])["code_ids"]
    assert torch.equal(full["code_labels"][masked], orig[masked])  # labels: the original codes
    assert torch.equal(full["code_ids"][~masked], orig[~masked])  # the rest untouched


def test_code_masks_change_with_the_epoch_and_the_seed(gbert):
    ds = visits(gbert, 40)
    samples = [ds[i] for i in range(len(ds))]
    collate = P._MaskingCollate(gbert, seed=3)
    a = collate(samples)["code_labels"]
    collate.set_epoch(1)
    b = collate(samples)["code_labels"]
    c = P._MaskingCollate(gbert, seed=4)(samples)["code_labels"]
    assert not torch.equal(a, b) and not torch.equal(a, c)
    collate.set_epoch(0)
    assert torch.equal(collate(samples)["code_labels"], a)


def test_text_masks_do_not_depend_on_the_batch(tmp_path):
    from medmm.models.text import TextEncoderConfig, TextMLM
    from medmm.models.tokenizer import train_wordpiece

    notes = ["patient has chest pain and hypertension", "chest x-ray clear no pneumonia",
             "hypertension treated with lisinopril", "creatinine rising started dialysis"] * 5
    tok = train_wordpiece(notes, vocab_size=120, min_frequency=1)
    model = TextMLM(TextEncoderConfig(vocab_size=len(tok), hidden_size=8, num_layers=1, num_heads=1,
                                      intermediate_size=8))
    ds = P._Column("input_ids", tok(notes)["input_ids"])
    collate = P._MaskingCollate(model, tok, prob=0.3, seed=0)
    full = collate([ds[i] for i in range(len(ds))])
    part = collate([ds[i] for i in (7, 2)])
    for j, i in enumerate((7, 2)):
        L = len(ds[i]["input_ids"])
        assert per_sample(part, "input_ids", "labels", j, L) == per_sample(full, "input_ids", "labels", i, L)
    assert (full["labels"] != -100).any()
    assert torch.equal(full["attention_mask"], full["input_ids"] != 0)


def test_masking_needs_the_sample_index(gbert):
    with pytest.raises(KeyError, match="index"):
        P._MaskingCollate(gbert)([{"code_ids": [1, 5, 6]}])
