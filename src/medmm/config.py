"""Typed run configs: dataclasses filled from YAML, with dotted overrides from the command line.

A config is a tree of dataclasses; a nested dataclass field is a nested YAML mapping:

    @dataclass
    class Run:
        train: TrainConfig = field(default_factory=TrainConfig)
        out: str = "runs/x"

    cfg = load_config("configs/run.yaml", ["train.lr=3e-4", "train.epochs=2"], Run)
    save_config(cfg, "runs/x/config.yaml")       # the resolved config, written with every run

A partial mapping for a nested dataclass updates that field's default (other fields keep their
defaults); a mapping for a `dict[...]` field replaces it. Override values are parsed with
`yaml.safe_load` (so `a.b=[1, 2]`, `a.b=null`, `a.b=true` work).
Unknown keys, in the file or in an override, are errors that name the key, list the valid keys
at that level and suggest the closest one; values are checked against the field's type.

A dataclass may reserve keys of its nested configs that its user sets itself (e.g. a recipe
that gives every run its own seed): `__config_reserved__ = {"train.seed": "seeds come from
--seeds"}`. Setting a reserved key in a file or an override is an error with that text, and
`to_dict` / `save_config` leave the key out, so a saved config loads again.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")

__all__ = ["load_config", "from_dict", "to_dict", "save_config", "apply_overrides", "parse_override", "did_you_mean"]


# ----------------------------------------------------------------------------- load


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] | None, cls: type[T]) -> T:
    """Build `cls` from the YAML file at `path` (or from its defaults when None), then `overrides`.

    Each override is `dotted.key=value`. Raises ValueError (naming the file or the override and
    the key) for unknown keys, malformed overrides and values of the wrong type.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config: cls must be a dataclass type, got {cls!r}")
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                loaded = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: invalid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping of config keys, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, list(overrides or []), cls)
    if overrides:
        source += " + overrides"  # a value-level error may come from either
    return from_dict(cls, data, source=source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"a.b.c=value"` -> (["a", "b", "c"], yaml.safe_load("value"))."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected dotted.key=value")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"override {text!r}: empty component in key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ValueError(f"override {text!r}: value is not valid YAML: {e}") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=value` override set, the key checked against `cls`."""
    data = _deepcopy_mapping(data)
    for text in overrides:
        parts, value = parse_override(text)
        # Walk the schema first, so an unknown key fails with the valid keys at its level even
        # when the file never mentioned that section.
        tp: Any = cls
        for i, part in enumerate(parts):
            _check_reserved(tp, parts[i:], ".".join(parts[:i]), where=f"override {text!r}")
            tp = _child_type(tp, part, ".".join(parts[:i]), where=f"override {text!r}")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _child_type(tp: Any, key: str, prefix: str, where: str) -> Any:
    """The declared type of `key` inside a value of type `tp` (a dataclass or a dict[str, V])."""
    tp = _strip_optional(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        if key not in names:
            raise ValueError(_unknown_key_message(key, prefix, names, where))
        return hints[key]
    if typing.get_origin(tp) is dict:
        args = typing.get_args(tp)
        return args[1] if args else Any
    if tp is Any:
        return Any
    full = f"{prefix}.{key}" if prefix else key
    raise ValueError(f"{where}: config key {prefix!r} is a {_type_name(tp)}, it has no sub-key {full!r}")


_MISSING = object()


def _reserved(tp: Any) -> dict[str, str]:
    tp = _strip_optional(tp)
    return getattr(tp, "__config_reserved__", {}) if isinstance(tp, type) and dataclasses.is_dataclass(tp) else {}


def _check_reserved(tp: Any, parts: list[str], prefix: str, where: str) -> None:
    """Raise if the dotted key `parts` (relative to a value of type `tp`) is reserved by `tp`."""
    why = _reserved(tp).get(".".join(parts))
    if why is not None:
        full = ".".join([prefix, *parts]) if prefix else ".".join(parts)
        raise ValueError(f"{where}: config key {full!r} cannot be set: {why}")


def _reserved_paths_in(cls: type, data: dict[str, Any]) -> list[str]:
    """The reserved keys of `cls` that the mapping `data` sets."""
    found = []
    for path in _reserved(cls):
        node: Any = data
        for part in path.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            found.append(path)
    return found


def _unknown_key_message(key: str, prefix: str, valid: list[str], where: str) -> str:
    full = f"{prefix}.{key}" if prefix else key
    level = f"under {prefix!r}" if prefix else "at the top level"
    msg = f"{where}: unknown config key {full!r}; valid keys {level}: {', '.join(sorted(valid))}"
    return msg + did_you_mean(key, valid)


def did_you_mean(name: str, valid: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `valid` to `name`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------- dict -> dataclass


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Construct dataclass `cls` from a nested mapping, checking keys and value types."""
    return _build(cls, data, prefix="", where=source)


def _build(cls: type, data: Any, prefix: str, where: str, base: Any = None) -> Any:
    """`cls(**data)` with checks; keys absent from `data` come from `base` (the enclosing default)."""
    if not isinstance(data, dict):
        label = repr(prefix) if prefix else "the top level"
        raise ValueError(f"{where}: config key {label} must be a mapping, got {type(data).__name__} ({data!r})")
    for path in _reserved_paths_in(cls, data):
        _check_reserved(cls, path.split("."), prefix, where)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise ValueError(_unknown_key_message(str(key), prefix, list(fields), where))
        full = f"{prefix}.{key}" if prefix else key
        sub = _strip_optional(hints[key])
        if isinstance(value, dict) and isinstance(sub, type) and dataclasses.is_dataclass(sub):
            # A partial mapping updates the field's default instance (which may differ from the
            # nested class's own defaults, e.g. `codes: Encoder = Encoder(hidden=16)`).
            sub_base = getattr(base, key) if base is not None else _field_default(fields[key])
            kwargs[key] = _build(sub, value, full, where, base=sub_base if isinstance(sub_base, sub) else None)
        else:
            kwargs[key] = _convert(value, hints[key], full, where)
    if base is not None:
        for name in fields:
            if name not in kwargs:
                kwargs[name] = getattr(base, name)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        names = ", ".join(f"{prefix}.{m}" if prefix else m for m in missing)
        raise ValueError(f"{where}: missing required config key(s): {names}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        # __post_init__ validation: keep its message, add where it came from.
        label = f" {prefix!r}" if prefix else ""
        raise ValueError(f"{where}: invalid config{label}: {e}") from None


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against annotation `tp`, converting the few safe cases (int->float, str->Path)."""

    def fail(expected: str | None = None) -> ValueError:
        exp = expected or _type_name(tp)
        return ValueError(f"{where}: config key {key!r} expects {exp}, got {type(value).__name__} ({value!r})")

    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices and not (isinstance(value, bool) and not any(isinstance(c, bool) for c in choices)):
            return value
        raise fail("one of " + ", ".join(repr(c) for c in choices))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise fail()
        # Try exact-type members first so that `int | str` keeps 3 an int and "epoch" a str.
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a not in (bool, int, str)):
            try:
                return _convert(value, arg, key, where)
            except ValueError:
                continue
        raise fail()
    if tp is type(None):
        if value is None:
            return None
        raise fail("null")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, key, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail("a boolean (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `1e-3` (no dot) as a string; accept it for float fields.
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise fail("a path (string)")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail(f"{len(args)} items")
            return tuple(_convert(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        args = typing.get_args(tp)
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, f"{key}<key>", where): _convert(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise fail()
    raise TypeError(f"{where}: config key {key!r} has an unsupported annotation {tp!r}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations that `from __future__ import annotations` leaves.
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return "a mapping" if dataclasses.is_dataclass(tp) else tp.__name__
    return str(tp).replace("typing.", "")


def _deepcopy_mapping(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy_mapping(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy_mapping(v) for v in d]
    return d


# ----------------------------------------------------------------------------- dataclass -> YAML


def to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain YAML/JSON-safe values (Path -> str, tuple -> list)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out = {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
        for path in _reserved(type(cfg)):  # set by the config's user, never read from a file
            *head, last = path.split(".")
            node = out
            for part in head:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
        return out
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    if cfg is None or isinstance(cfg, (bool, int, float, str)):
        return cfg
    raise TypeError(f"to_dict: cannot serialise a {type(cfg).__name__} ({cfg!r}) in a config")


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically: a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
