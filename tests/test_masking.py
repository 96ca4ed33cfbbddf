"""BERT-style code masking: rate, 80/10/10 split, same-system replacement, specials untouched."""

from __future__ import annotations

import pytest
import torch

from medmm.objectives.masking import IGNORE_INDEX, bert_mask, mask_codes

# Layout of the code tower's vocabulary: 5 specials, diagnoses [5, 105), medications [105, 145).
MASK_ID, DX, MED = 2, (5, 105), (105, 145)


def big_batch(B: int = 2000, L: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(DX[0], MED[1], (B, L), generator=g)
    ids[:, 0] = 1  # [CLS]
    lengths = torch.randint(5, L + 1, (B,), generator=g)
    ids[torch.arange(L)[None, :] >= lengths[:, None]] = 0  # [PAD]
    ids[::7, 3] = 4  # some [UNK]
    return ids


def test_masking_statistics():
    ids = big_batch()
    m = mask_codes(ids, [DX, MED], MASK_ID, generator=torch.Generator().manual_seed(1))
    is_code = (ids >= DX[0]) & (ids < MED[1])
    sel = m.labels != IGNORE_INDEX
    n_codes, n_sel = int(is_code.sum()), int(sel.sum())
    assert abs(n_sel / n_codes - 0.15) < 0.005  # ~ 50k codes: std of the rate ~ 0.0016
    assert not (sel & ~is_code).any()  # never [CLS], [PAD], [UNK]
    assert torch.equal(m.labels[sel], ids[sel])
    assert torch.equal(m.input_ids[~sel], ids[~sel])  # unselected tokens untouched
    masked = sel & (m.input_ids == MASK_ID)
    same = sel & (m.input_ids == ids)
    replaced = sel & ~masked & ~same
    assert abs(masked.sum().item() / n_sel - 0.8) < 0.02
    # "unchanged" also catches random draws that hit the original code (1/100 or 1/40 of 10%).
    assert abs(same.sum().item() / n_sel - 0.1) < 0.015
    assert abs(replaced.sum().item() / n_sel - 0.1) < 0.015
    # A random replacement stays in the replaced code's own system, and covers that range.
    orig, new = ids[replaced], m.input_ids[replaced]
    dx = (orig >= DX[0]) & (orig < DX[1])
    assert ((new[dx] >= DX[0]) & (new[dx] < DX[1])).all()
    assert ((new[~dx] >= MED[0]) & (new[~dx] < MED[1])).all()
    assert new[dx].min() < DX[0] + 10 and new[dx].max() >= DX[1] - 10
    assert new[~dx].min() < MED[0] + 5 and new[~dx].max() >= MED[1] - 5


def test_masking_is_seeded():
    ids = big_batch(50)
    a = mask_codes(ids, [DX, MED], MASK_ID, generator=torch.Generator().manual_seed(3))
    b = mask_codes(ids, [DX, MED], MASK_ID, generator=torch.Generator().manual_seed(3))
    c = mask_codes(ids, [DX, MED], MASK_ID, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


def test_min_one_selects_a_code_in_every_visit():
    ids = torch.tensor([[1, 10, 110, 0, 0], [1, 20, 0, 0, 0], [1, 0, 0, 0, 0]])
    for seed in range(20):
        m = mask_codes(ids, [DX, MED], MASK_ID, prob=0.01, min_one=True,
                       generator=torch.Generator().manual_seed(seed))
        sel = m.labels != IGNORE_INDEX
        assert sel[0].sum() >= 1 and sel[1].sum() == 1 and sel[2].sum() == 0  # row 2 has no codes
        assert not sel[:, 0].any()


def test_bert_mask_argument_errors():
    ids = torch.tensor([[1, 10]])
    with pytest.raises(ValueError, match="mask prob"):
        bert_mask(ids, ids > 1, MASK_ID, 5, 10, prob=0.0)
    with pytest.raises(ValueError, match="sum to <= 1"):
        bert_mask(ids, ids > 1, MASK_ID, 5, 10, mask_frac=0.9, random_frac=0.2)
    with pytest.raises(ValueError, match="empty random-replacement range"):
        bert_mask(ids, ids > 1, MASK_ID, 5, 5, prob=1.0, mask_frac=0.0, random_frac=1.0)
