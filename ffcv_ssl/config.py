"""Typed configs: dataclass schemas hold the defaults, YAML files hold values, ``key=value`` overrides win.

Every schema is a plain ``@dataclass``; OmegaConf only merges and validates. ``load_config`` returns a
real dataclass instance (never a ``DictConfig``), so library code gets attribute access, IDE completion
and no global state. Errors are one line that names the key and suggests the closest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Type, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from .errors import ConfigError
from .files import atomic_write_text

T = TypeVar("T")

__all__ = ["load_config", "save_config", "config_to_yaml", "parse_overrides", "ConfigError"]


def _dotted(full_key: str) -> str:
    """OmegaConf writes list indices as ``views[0]``; our override syntax is ``views.0``."""
    return re.sub(r"\[(\d+)\]", r".\1", str(full_key))


def _suggest(node: Any, name: str) -> str:
    if isinstance(node, DictConfig):
        keys = [str(k) for k in node.keys()]
        close = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
        if close:
            return f"; did you mean '{close[0]}'?"
        return f"; valid keys here: {', '.join(sorted(keys))}"
    return ""


def _locate_unknown(cfg: DictConfig, dotted_key: str) -> Optional[str]:
    """Walk ``dotted_key`` through ``cfg``; describe the first segment that does not exist (None: all exist).

    Open ``Dict[str, Any]`` sections accept new keys, as OmegaConf does.
    """
    node: Any = cfg
    walked: list[str] = []
    for part in dotted_key.split("."):
        if isinstance(node, ListConfig):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(walked)
                return f"config key '{dotted_key}': '{where}' is a list of {len(node)} element(s), no index '{part}'"
            node = node._get_node(int(part))
        elif isinstance(node, DictConfig):
            if part not in node.keys():  # ``in`` is False for MISSING ('???') values
                if node._metadata.object_type in (None, dict):
                    return None
                prefix = ".".join(walked + [part])
                return f"unknown config key '{prefix}'{_suggest(node, part)}"
            node = node._get_node(part)
        else:
            where = ".".join(walked)
            return f"config key '{dotted_key}': '{where}' is a value, not a section"
        walked.append(part)
    return None


def _check_keys(node: Any, data: Any, prefix: str = "") -> None:
    """Walk YAML ``data`` along the schema and name the first unknown key by its full dotted path.

    OmegaConf reports keys inside list elements without their path (``gird`` instead of
    ``stages.0.gird``); this walk gives the user the whole path and the closest valid key.
    """
    import dataclasses as dc

    if isinstance(data, dict) and isinstance(node, DictConfig):
        structured = node._metadata.object_type not in (None, dict)
        for key, value in data.items():
            if key not in node.keys():
                if structured:
                    raise ConfigError(f"unknown config key '{prefix}{key}'{_suggest(node, str(key))}")
                continue
            _check_keys(node._get_node(key), value, f"{prefix}{key}.")
    elif isinstance(data, list) and isinstance(node, ListConfig):
        element = node._metadata.element_type
        template = OmegaConf.structured(element) if dc.is_dataclass(element) else None
        for i, item in enumerate(data):
            child = node._get_node(i) if i < len(node) else template
            if child is not None:
                _check_keys(child, item, f"{prefix}{i}.")


def _explain(exc: Exception, cfg: DictConfig, origin: str) -> ConfigError:
    """Turn an OmegaConf exception into one line naming the key (and the file or override it came from)."""
    key = _dotted(getattr(exc, "full_key", "") or "")
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(f"config key '{key}' is required: set it in the YAML file or pass {key}=VALUE")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    name = type(exc).__name__
    if name in ("ConfigAttributeError", "ConfigKeyError") or "not in" in text:
        where = _locate_unknown(cfg, key) or f"config key '{key}' could not be set"
        return ConfigError(f"{where} (from {origin})")
    if name == "ValidationError":
        field_type = _field_type(cfg, key)
        return ConfigError(f"config key '{key}' ({origin}): {text}" + (f"; expected {field_type}" if field_type else ""))
    return ConfigError(f"config key '{key}' ({origin}): {text}")


def _field_type(cfg: DictConfig, dotted_key: str) -> str:
    try:
        parent_key, _, leaf = dotted_key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        node = parent._get_node(leaf)
        return getattr(node, "_metadata").type_hint.__name__  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - purely cosmetic; the message stands without it
        return ""


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``[("a.b", 1), ("c", [1, 2])]``; values are parsed as YAML."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. data.batch_size=128)")
        try:
            parsed.append((key, yaml.safe_load(value) if value.strip() != "" else ""))
        except yaml.YAMLError:
            parsed.append((key, value))  # leave it to the schema's type check
    return parsed


def _read_yaml(path: str | os.PathLike) -> dict:
    from .paths import configs_root, resolve_config_path

    p = resolve_config_path(path)
    if not p.exists():
        raise ConfigError(f"config file '{p}' does not exist; pass a path to a YAML file (shipped configs: "
                          f"{configs_root()})")
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a directory; pass a path to a YAML file inside it")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys to values, not a {type(data).__name__}")
    data.pop("defaults", None)
    return data


def load_config(schema: Type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Schema defaults <- YAML file <- ``key=value`` overrides, validated, as a ``schema`` instance.

    Args:
        schema: a dataclass type whose fields (with defaults) are the schema.
        path: an optional YAML file holding values only.
        overrides: ``key=value`` strings; list elements are addressed by index (``data.views.0.size=160``).

    Raises:
        ConfigError: unknown key (with the closest valid key), wrong type, missing file or missing value.
    """
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    cfg = OmegaConf.structured(schema)
    if path is not None:
        data = _read_yaml(path)
        try:
            _check_keys(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from file {path})") from None
        try:
            cfg = OmegaConf.merge(cfg, data)
        except OmegaConfBaseException as exc:
            raise _explain(exc, cfg, f"file {path}") from None
    for key, value in parse_overrides(overrides):
        problem = _locate_unknown(cfg, key)
        if problem:
            raise ConfigError(f"{problem} (from override {key}={value})")
        try:
            OmegaConf.update(cfg, key, value, merge=True, force_add=False)
        except OmegaConfBaseException as exc:
            if not getattr(exc, "full_key", None):
                exc.full_key = key  # type: ignore[attr-defined]
            raise _explain(exc, cfg, f"override {key}={value}") from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _explain(exc, cfg, "the resolved config") from None
    return _normalise(obj)  # type: ignore[return-value]


def _normalise(obj: Any) -> Any:
    """OmegaConf 2.3 hands tuple fields back as lists; make them tuples again, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            name, value = f.name, getattr(obj, f.name)
            if isinstance(value, list) and str(f.type).lower().startswith(("tuple", "typing.tuple")):
                value = tuple(value)
            setattr(obj, name, _normalise(value))
        post = getattr(obj, "validate", None)
        if callable(post):
            post()
        return obj
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def config_to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (what ``save_config`` writes and ``--print-config`` shows)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config next to an output, atomically (temp file + rename)."""
    return atomic_write_text(path, config_to_yaml(cfg))
