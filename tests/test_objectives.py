"""Masked-code objectives (Eq. 8-10) against torch.nn.functional reference computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medmm.objectives.masked_code import (CodeToCode, MaskedCodeObjective, TextToCode, masked_code_ce,
                                          masked_code_topk, sum_losses, visit_multi_hot)
from medmm.objectives.masking import IGNORE_INDEX

OFFSET, N_CODES = 5, 12  # token ids 5..16 are codes


def example():
    # Visit 0 has two masked codes (ids 7, 12), visit 1 one (id 16), visit 2 none.
    code_ids = torch.tensor([[1, 2, 9, 2, 6], [1, 8, 2, 0, 0], [1, 10, 11, 0, 0]])
    labels = torch.full_like(code_ids, IGNORE_INDEX)
    labels[0, 1], labels[0, 3], labels[1, 2] = 7, 12, 16
    return code_ids, labels


def test_masked_code_ce_matches_reference():
    torch.manual_seed(0)
    code_ids, labels = example()
    logits = torch.randn(3, N_CODES)
    ref = torch.stack([F.cross_entropy(logits[0:1], torch.tensor([7 - OFFSET])),
                       F.cross_entropy(logits[0:1], torch.tensor([12 - OFFSET])),
                       F.cross_entropy(logits[1:2], torch.tensor([16 - OFFSET]))]).mean()
    assert torch.allclose(masked_code_ce(logits, labels, OFFSET), ref)
    # Equivalently: -mean log-softmax at the masked codes.
    lp = logits.log_softmax(1)
    assert torch.allclose(ref, -(lp[0, 2] + lp[0, 7] + lp[1, 11]) / 3)
    empty = torch.full_like(labels, IGNORE_INDEX)
    z = masked_code_ce(logits.requires_grad_(), empty, OFFSET)
    assert z.item() == 0.0 and z.requires_grad
    with pytest.raises(ValueError, match="outside the code range"):
        masked_code_ce(logits, torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]] * 3), OFFSET)


def test_visit_multi_hot_and_bce():
    code_ids, labels = example()
    target = visit_multi_hot(code_ids, labels, OFFSET, N_CODES)
    expect = torch.zeros(3, N_CODES)
    for b, codes in enumerate([[7, 9, 12, 6], [8, 16], [10, 11]]):  # masked ones restored
        expect[b, torch.tensor(codes) - OFFSET] = 1
    assert torch.equal(target, expect)
    torch.manual_seed(0)
    obj = TextToCode(hidden=8, num_codes=N_CODES, code_offset=OFFSET, kind="bce", dropout=0.0)
    r = torch.randn(3, 8)
    out = obj({"r_text": r}, {"code_ids": code_ids, "code_labels": labels})
    logits = obj.head(r)
    assert torch.allclose(out["loss_t2c"], F.binary_cross_entropy_with_logits(logits, expect))
    assert torch.equal(out["logits_t2c"], logits)


def test_objective_modules_read_their_own_feature():
    torch.manual_seed(0)
    code_ids, labels = example()
    obj = MaskedCodeObjective(hidden=8, num_codes=N_CODES, code_offset=OFFSET, kind="ce", dropout=0.0)
    feats = {"r_text": torch.randn(3, 8), "r_code": torch.randn(3, 8)}
    batch = {"code_ids": code_ids, "code_labels": labels}
    out = obj(feats, batch)
    assert torch.allclose(out["loss_t2c"], masked_code_ce(obj.t2c.head(feats["r_text"]), labels, OFFSET))
    assert torch.allclose(out["loss_c2c"], masked_code_ce(obj.c2c.head(feats["r_code"]), labels, OFFSET))
    assert not torch.allclose(out["loss_t2c"], out["loss_c2c"])
    assert torch.allclose(sum_losses(out), out["loss_t2c"] + out["loss_c2c"])  # Eq. 10
    # The head: Linear -> ReLU -> Linear, checked against F.
    lin1, lin2 = obj.t2c.head.net[1], obj.t2c.head.net[3]
    ref = F.linear(F.relu(F.linear(feats["r_text"], lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
    assert torch.allclose(out["logits_t2c"], ref)
    assert CodeToCode.feature == "r_code" and TextToCode.feature == "r_text"
    with pytest.raises(ValueError, match="'ce' or 'bce'"):
        TextToCode(8, N_CODES, OFFSET, kind="mse")
    with pytest.raises(ValueError, match="no loss_"):
        sum_losses({"logits_t2c": torch.zeros(1)})


def test_masked_code_topk():
    code_ids, labels = example()
    logits = torch.zeros(3, N_CODES)
    logits[0, 7 - OFFSET] = 5.0  # visit 0: code 7 ranked first; code 12 tied at 0 with the rest
    logits[0, torch.tensor([0, 1, 3, 4, 5, 6])] = torch.tensor([1.0, 1, 1, 1, 1, 1])  # 12 pushed out of top-5
    logits[1, 16 - OFFSET] = 1.0
    assert masked_code_topk(logits, labels, OFFSET, k=5) == (2, 3)
    assert masked_code_topk(logits, labels, OFFSET, k=1) == (2, 3)
    assert masked_code_topk(logits, labels, OFFSET, k=N_CODES) == (3, 3)
    assert masked_code_topk(logits, torch.full_like(labels, IGNORE_INDEX), OFFSET) == (0, 0)
