"""Shared fixtures. Tests that need ../shared/data read its path from MEDMM_SHARED_DATA
(set by .ci/run) and skip with a reason when it is unset."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

# No network, proven: every connection to a non-loopback address is refused, in this process and
# in every Python process the tests start (see tests/_offline/sitecustomize.py).
_OFFLINE_DIR = Path(__file__).parent / "_offline"
_spec = importlib.util.spec_from_file_location("medmm_netguard", _OFFLINE_DIR / "sitecustomize.py")
netguard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netguard)
sys.modules["medmm_netguard"] = netguard

os.environ["MEDMM_DENY_NETWORK"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_OFFLINE_DIR), os.environ.get("PYTHONPATH")]))
_fd, _NETGUARD_LOG = tempfile.mkstemp(prefix="medmm-netguard-", suffix=".log")
os.close(_fd)
os.environ["MEDMM_NETGUARD_LOG"] = _NETGUARD_LOG
netguard.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process tried the network, even where a library swallowed the error."""
    attempts = Path(_NETGUARD_LOG).read_text().splitlines() if os.path.exists(_NETGUARD_LOG) else []
    if attempts:
        print("\nnetwork guard: refused connection attempts:\n  " + "\n  ".join(attempts), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if os.path.exists(_NETGUARD_LOG):
        os.unlink(_NETGUARD_LOG)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = os.environ.get("MEDMM_SHARED_DATA")
    if not root:
        pytest.skip("MEDMM_SHARED_DATA is not set (.ci/run sets it to ../shared/data)")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"MEDMM_SHARED_DATA={root} is not a directory")
    return path


@pytest.fixture
def one_thread():
    """Tiny models run faster on one torch thread (intra-op threads only add overhead, and contend
    on a shared CI machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def make_tiny_world():
    """`tiny_world` itself, for module-scoped fixtures of the experiment tests."""
    return tiny_world


def tiny_world(root: Path, n_patients: int, text_cfg: dict) -> dict:
    """A small synthetic dataset with a WordPiece tokenizer, an untrained MedM-PLM saved under
    root/medm-plm/model and its text tower under root/text-mlm/text (for the experiment tests).

    text_cfg: `TextEncoderConfig` fields besides the vocabulary size."""
    import torch

    from medmm.data.sources import prepare
    from medmm.data.synth import generate
    from medmm.models.medm_plm import MedMPLM, MedMPLMConfig
    from medmm.models.pretrained import save_pretrained
    from medmm.models.text import TextEncoderConfig
    from medmm.models.tokenizer import train_wordpiece
    from medmm.recipes.finetune import load_records
    from medmm.recipes.pretrain import CodeTowerRecipe, code_encoder_config, code_vocabularies

    raw, data = root / "raw", root / "dataset"
    generate(raw, n_patients=n_patients, seed=0, card=False)
    prepare("mimic3", raw, data, mappings={"dir": raw / "mappings"}, progress=False, include_labs=False)
    records = load_records(data)
    tok = train_wordpiece(records["text"].drop_nulls().to_list(), vocab_size=400, min_frequency=1)
    dx, med = code_vocabularies(records, 1)
    code = code_encoder_config(dx, med, CodeTowerRecipe(embed_dim=8, gat_heads=2, num_layers=1, num_heads=2,
                                                        intermediate_size=32))
    text = TextEncoderConfig(vocab_size=len(tok), **text_cfg)
    torch.manual_seed(0)
    plm = MedMPLM(MedMPLMConfig(text=text, code=code))
    save_pretrained(plm, root / "medm-plm" / "model", tokenizer=tok)
    save_pretrained(plm.text, root / "text-mlm" / "text", tokenizer=tok)
    return {"root": root, "raw": raw, "data": data, "records": records, "tok": tok, "plm": plm}
