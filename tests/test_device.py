"""Every forward call on a batch reads tensors put on the model's device by the one mover,
`medmm.train.device.to_device` -- pre-training (text-MLM, MedM-PLM, G-BERT: training and
validation), fine-tuning (training, validation, test prediction) and NER (tower states, training,
evaluation, test prediction) -- checked on a CPU-only machine.

On the CPU `.to("cpu")` returns the very same tensor, so comparing devices cannot catch a path
that forgot to move its batch. `device_check` makes a missing move visible: it replaces
`medmm.train.device.move_tensor` (the per-tensor step of `to_device`) with one that returns a
recorded CLONE, and wraps `nn.Module.__call__` so that the outermost module call (the model a
recipe or the loop calls; the modules it calls in turn are not checked) fails unless every input
tensor is one of those clones, on the device of the model's parameters. `BiLSTMCRF.decode`, an
entry point that is not `__call__`, is checked the same way.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from medmm.config import load_config
from medmm.train import device as dev
from medmm.train.device import model_device, to_device

TINY_TEXT = ["text.hidden_size=16", "text.num_layers=1", "text.num_heads=2", "text.intermediate_size=32",
             "text.vocab_size=300", "data.max_text_len=48", "train.batch_size=16", "train.progress=false"]
TINY_CODE = ["code.embed_dim=8", "code.gat_heads=2", "code.num_layers=1", "code.num_heads=2",
             "code.intermediate_size=32", "data.max_text_len=48", "train.batch_size=16", "train.progress=false",
             "train.eval_every=2", "train.early_stopping_patience=null", "train.max_steps=2"]


def _tensors(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)


class DeviceCheck:
    """What the checked entry calls saw: (phase, entry class, train mode) counts and violations."""

    def __init__(self) -> None:
        self.moved: dict[int, weakref.ref] = {}
        self.calls: Counter = Counter()
        self.violations: list[str] = []
        self.phase = "outside"  # "fit" while Trainer.fit runs
        self.depth = 0

    def record(self, t: torch.Tensor) -> torch.Tensor:
        self.moved[id(t)] = weakref.ref(t)
        return t

    def check(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        device = model_device(module)
        has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        name = type(module).__name__
        for t in _tensors((args, kwargs)):
            ref = self.moved.get(id(t))
            if ref is None or ref() is not t:
                self.violations.append(f"{name}: an input tensor {tuple(t.shape)} did not go through to_device")
            elif has_state and t.device != device:
                self.violations.append(f"{name}: input on {t.device}, parameters on {device}")
        if self.violations:
            raise AssertionError("; ".join(self.violations))
        self.calls[(self.phase, name, module.training)] += 1

    def seen(self, phase: str, name: str, training: bool) -> int:
        return self.calls[(phase, name, training)]


@pytest.fixture
def device_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceCheck]:
    from medmm.models.bilstm_crf import BiLSTMCRF
    from medmm.train.loop import Trainer

    dc = DeviceCheck()
    real_move, real_call, real_decode, real_fit = dev.move_tensor, nn.Module.__call__, BiLSTMCRF.decode, Trainer.fit

    def move(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        return dc.record(real_move(t, device).clone())

    def entry(real):
        def wrapped(self, *args, **kwargs):
            if dc.depth == 0:
                dc.check(self, args, kwargs)
            dc.depth += 1
            try:
                return real(self, *args, **kwargs)
            finally:
                dc.depth -= 1
        return wrapped

    def fit(self, *args, **kwargs):
        dc.phase = "fit"
        try:
            return real_fit(self, *args, **kwargs)
        finally:
            dc.phase = "outside"

    monkeypatch.setattr(dev, "move_tensor", move)
    monkeypatch.setattr(nn.Module, "__call__", entry(real_call))
    monkeypatch.setattr(BiLSTMCRF, "decode", entry(real_decode))
    monkeypatch.setattr(Trainer, "fit", fit)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: fastest on one thread, and the cores are shared
    yield dc
    torch.set_num_threads(n)
    assert not dc.violations


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world) -> dict:
    w = make_tiny_world(tmp_path_factory.mktemp("device"), 150,
                        dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                             max_position_embeddings=64))
    return {**w, "text": w["root"] / "text-mlm" / "text"}


# ---------------------------------------------------------------------------------------------
# The check itself


def test_device_check_catches_an_unmoved_batch(device_check):
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    lin(to_device(x, model_device(lin)))  # moved: passes
    with pytest.raises(AssertionError, match="did not go through to_device"):
        lin(x)
    device_check.violations.clear()


def test_to_device_walks_nested_batches():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "nested": [torch.zeros(1), (torch.ones(3), 5)], "pair": Pair(torch.ones(1), "s"),
             "n": 3, "none": None}
    out = to_device(batch, "cpu")
    assert isinstance(out["nested"], list) and isinstance(out["nested"][1], tuple)
    assert isinstance(out["pair"], Pair) and out["pair"].b == "s" and out["n"] == 3 and out["none"] is None
    assert torch.equal(out["nested"][1][0], torch.ones(3))
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU


# ---------------------------------------------------------------------------------------------
# Pre-training: training and validation of each recipe


def test_pretraining_paths_move_their_batches(world, tmp_path, device_check):
    from medmm.recipes import pretrain as P

    cfg = load_config(None, TINY_TEXT + ["train.max_steps=2", "train.eval_every=2"], P.TextMLMRecipe)
    P.pretrain_text_mlm(world["data"], tmp_path / "mlm", cfg)
    cfg = load_config(None, TINY_CODE + [f"text.pretrained_path={world['text']}"], P.MedMPLMRecipe)
    P.pretrain_medm_plm(world["data"], tmp_path / "plm", cfg)
    P.pretrain_gbert(world["data"], tmp_path / "gbert", load_config(None, TINY_CODE, P.GBertRecipe))
    # The loop calls text-MLM through an adapter; its validation calls TextMLM itself.
    assert device_check.seen("fit", "_KwargsAdapter", True) == 2
    assert device_check.seen("fit", "TextMLM", False) >= 1
    for name in ("MedMPLMForPretraining", "GBertForPretraining"):
        assert device_check.seen("fit", name, True) == 2, name  # 2 training steps
        assert device_check.seen("fit", name, False) >= 1, name  # validation batches


# ---------------------------------------------------------------------------------------------
# Fine-tuning: training, validation each epoch, test prediction after fit


def test_finetuning_paths_move_their_batches(world, tmp_path, device_check):
    from medmm.models.assets import Assets
    from medmm.recipes.finetune import FinetuneConfig, run_finetune

    root = world["root"]
    assets = Assets.from_medm_plm(root / "medm-plm" / "model", text_path=world["text"])
    cfg = FinetuneConfig(max_text_len=32, max_history=2, num_threads=1, eval_batch_size=64)
    cfg.train.epochs, cfg.train.batch_size = 1, 32
    for model, task in (("medm-plm", "readmission"), ("lr", "medication")):
        before = Counter(device_check.calls)
        run_finetune(model, task, world["data"], assets, cfg, tmp_path / model)
        new = device_check.calls - before
        names = {n for _, n, _ in new}
        assert len(names) == 1, new
        name = names.pop()
        assert new[("fit", name, True)] >= 1, (model, new)  # training steps
        assert new[("fit", name, False)] >= 1, (model, new)  # validation prediction
        assert new[("outside", name, False)] >= 1, (model, new)  # test prediction


# ---------------------------------------------------------------------------------------------
# NER: frozen-tower states, training, validation decoding, test decoding


def test_ner_paths_move_their_batches(world, tmp_path, device_check):
    from medmm.models.bilstm_crf import tower_hidden_states
    from medmm.recipes.ner import ROWS, NERExperimentConfig, _load_tower, build_ner_data, run_one

    cfg = NERExperimentConfig(max_length=64, max_train_notes=16, max_eval_notes=8, embed_dim=8, lstm_hidden=8,
                              eval_batch_size=64)
    cfg.train = dataclasses.replace(cfg.train, epochs=1, batch_size=16)
    data = build_ner_data(world["data"], world["raw"], world["tok"], cfg)
    tower = _load_tower(world["text"])
    states = {s: tower_hidden_states(tower, [w.input_ids for w in ds.windows], 32, ds.pad_token_id)
              for s, ds in data.splits.items()}
    assert device_check.seen("outside", "BertModel", False) >= 3  # the precomputed tower states
    run_one(ROWS[0], "scratch", data, world["tok"], None, cfg, tmp_path / "scratch", 0)
    run_one(ROWS[1], "tower_frozen", data, world["tok"], world["text"], cfg, tmp_path / "frozen", 0, states, tower)
    run_one(ROWS[1], "tower_finetune", data, world["tok"], world["text"], cfg, tmp_path / "finetune", 0)
    assert device_check.seen("fit", "BiLSTMCRF", True) >= 3  # training, each embedding
    assert device_check.seen("fit", "BiLSTMCRF", False) >= 3  # validation decoding
    assert device_check.seen("outside", "BiLSTMCRF", False) >= 3  # test decoding


def test_model_device_and_to_device_agree_on_a_moved_model():
    """What `device: cuda` does, where a GPU exists: the batch follows the model."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    lin = nn.Linear(3, 2).cuda()
    out = lin(to_device({"x": torch.randn(4, 3)}, model_device(lin))["x"])
    assert out.device == model_device(lin)
