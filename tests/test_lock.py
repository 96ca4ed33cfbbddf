"""Locked installs: requirements.lock is the exact environment `make test` builds, and it satisfies
the ranges pyproject.toml offers to users who install medmm into an environment of their own."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# Installed by other means than the lock: torch by TORCH_SPEC, medmm itself, pip with the venv.
NOT_LOCKED = {"torch", "medmm", "pip"}


def read_lock(path: Path = ROOT / "requirements.lock") -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if not m:
            raise ValueError(f"{path.name} line {n}: expected 'name==version', got {line!r}")
        name = canonicalize_name(m[1])
        if name in pins:
            raise ValueError(f"{path.name} line {n}: {m[1]} pinned twice")
        pins[name] = Version(m[2])
    return pins


def test_lock_pins_every_dependency_within_the_declared_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = read_lock()
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins, "torch is chosen by TORCH_SPEC, not the lock"
            continue
        assert name in pins, f"{req.name} is a dependency but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
    assert not NOT_LOCKED & set(pins)


def test_lock_rejects_a_malformed_line(tmp_path):
    bad = tmp_path / "requirements.lock"
    bad.write_text("numpy==2.4.6\npolars>=2\n")
    with pytest.raises(ValueError, match="line 2"):
        read_lock(bad)


@pytest.mark.skipif(os.environ.get("MEDMM_LOCKED_ENV") != "1",
                    reason="runs in the environment `make test` builds from the lock (MEDMM_LOCKED_ENV=1)")
def test_environment_is_exactly_the_lock():
    pins = read_lock()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    missing = {n: str(v) for n, v in pins.items() if n not in installed}
    differ = {n: f"{installed[n]} installed, {v} locked" for n, v in pins.items()
              if n in installed and installed[n] != v}
    extra = sorted(set(installed) - set(pins) - NOT_LOCKED)
    assert not missing and not differ and not extra, f"missing {missing}; differ {differ}; not locked {extra}"
