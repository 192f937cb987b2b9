"""A small writer of protobuf text format for Triton's config.pbtxt (no protobuf dependency).

Values: dict → message, list → repeated field, str → quoted string, `Enum` → bare identifier,
bool → true/false, int/float → number. Keys are written in insertion order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Enum(str):
    """An enum value, written without quotes (e.g. Enum("TYPE_FP32"))."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"pbtxt: cannot write {type(value).__name__} value {value!r}")


def _field(key: str, value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, Mapping):
        return [f"{pad}{key} {{", *_message(value, indent + 1), f"{pad}}}"]
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return [f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]"]
        lines = []
        for item in value:
            lines += _field(key, item, indent)
        return lines
    return [f"{pad}{key}: {_scalar(value)}"]


def _message(fields: Mapping[str, Any], indent: int) -> list[str]:
    lines: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        lines += _field(key, value, indent)
    return lines


def to_pbtxt(config: Mapping[str, Any]) -> str:
    """Serialise a ModelConfig described as nested dicts/lists."""
    return "\n".join(_message(config, 0)) + "\n"


def parameters(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Triton's `parameters` map: {key: value} → [{key, value {string_value}}] (values as strings)."""
    return [
        {"key": k, "value": {"string_value": v if isinstance(v, str) else json.dumps(v)}}
        for k, v in values.items()
    ]
