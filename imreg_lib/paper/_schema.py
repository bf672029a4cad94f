r"""One codec for every record of the paper layer (private): frozen dataclasses to JSON and back.

A record is a frozen dataclass whose fields are plain values: numbers, strings, booleans, ``None``, enumerations,
tuples, mappings and other records, each described by its type hint. :func:`encode` writes it as JSON-ready
Python (dicts, lists, numbers, strings) and :func:`decode` reads it back, so that for a record ``r`` of class
``R``, ``decode(R, encode(r)) == r``, and for a dictionary ``d`` that ``encode`` wrote,
``encode(decode(R, d)) == d``. Classes derive from :class:`Record` to have both as ``to_json``/``from_json``.

The rules, the same for every record (nothing is written by hand):

* a field whose default is ``None`` is left out while it is ``None`` (a value a notebook fills in later);
* mapping keys are written as strings: ``int`` as ``str(n)``, ``float`` as ``f"{x:g}"`` (``repr`` where that would
  lose digits), an enumeration as its value; they are read back by the key type of the hint, so that numbers are
  keyed by numbers in Python;
* a mapping field marked ``inline`` (``field(metadata=INLINE)``) writes its entries at the record's own level
  (``diff_all.rel_error`` rather than ``projections.diff_all.rel_error``): the JSON keys that the README and the
  issues name stay as they are; on reading, every key that is no other field belongs to it;
* ``Record._json_extra`` names read-only properties written beside the fields (a summary computed from them;
  left out where ``None``) and skipped on reading;
* reading is strict: a field without a default that is missing raises :class:`KeyError` naming the record and
  the key, and a value of the wrong kind raises :class:`TypeError`.

The codec is ours (about a hundred lines) rather than a library such as cattrs: the records need exactly these
rules, the inline mappings would need custom hooks there too, and the book adds no dependency for it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .._files import write_atomic

__all__ = ["INLINE", "Record", "decode", "encode", "write_json"]

#: Field metadata of a mapping written at the level of the record that holds it.
INLINE: Mapping[str, bool] = {"inline": True}

R = TypeVar("R", bound="Record")


class Record:
    """Base of the paper layer's records: ``to_json()`` is :func:`encode`, ``from_json(data)`` is :func:`decode`."""

    #: Read-only properties written beside the fields (skipped on reading).
    _json_extra: ClassVar[tuple[str, ...]] = ()

    def _set(self, name: str, value: Any) -> None:
        """Set a field of the frozen record (a checked, normalised value in ``__post_init__``)."""
        object.__setattr__(self, name, value)

    def to_json(self) -> dict:
        """The record as JSON-ready Python (see :mod:`imreg_lib.paper._schema`)."""
        return encode(self)

    @classmethod
    def from_json(cls: type[R], data: Mapping) -> R:
        """The record that :meth:`to_json` wrote as ``data``; strict about missing keys."""
        return decode(cls, data)


def _key(k: Any) -> str:
    if isinstance(k, enum.Enum):
        k = k.value
    if type(k) not in (str, int, float):
        raise TypeError(f"a mapping key must be a string, a number or an enumeration, got {k!r}")
    if type(k) is float:
        s = f"{k:g}"
        return s if float(s) == k else repr(k)
    return str(k)


def encode(value: Any) -> Any:
    """``value`` (a record, or anything a record's field may hold) as JSON-ready Python."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None and f.default is None:
                continue
            if f.metadata.get("inline"):
                out.update(encode(v))
            else:
                out[f.name] = encode(v)
        for name in getattr(value, "_json_extra", ()):
            if (v := getattr(value, name)) is not None:
                out[name] = encode(v)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {_key(k): encode(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to JSON: records hold plain values")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read_key(tp: Any, k: str) -> Any:
    if tp is int:
        return int(k)
    if tp is float:
        return float(k)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(k)
    return k


def decode(tp: Any, data: Any, where: str = "") -> Any:
    """The value of type ``tp`` (a record class or a field's type hint) that :func:`encode` wrote as ``data``."""
    where = where or getattr(tp, "__name__", str(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, data, where)
    if dataclasses.is_dataclass(tp):
        return _decode_record(tp, data, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        if not isinstance(data, Mapping):
            raise TypeError(f"{where} must be a JSON object, got {data!r}")
        kt, vt = args or (str, Any)
        return {_read_key(kt, k): decode(vt, v, f"{where}.{k}") for k, v in data.items()}
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise TypeError(f"{where} must be a JSON array, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    if tp is float and type(data) is int:
        return float(data)
    if tp in (str, bool, int, float) and not (isinstance(data, tp) and (tp is bool or type(data) is not bool)):
        raise TypeError(f"{where} must be {tp.__name__}, got {data!r}")
    return data


def _decode_record(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a JSON object, got {data!r}")
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields if not f.metadata.get("inline")} | set(getattr(cls, "_json_extra", ()))
    kwargs = {}
    for f in fields:
        if f.metadata.get("inline"):
            rest = {k: v for k, v in data.items() if k not in names}
            kwargs[f.name] = decode(hints[f.name], rest, where)
        elif f.name in data:
            kwargs[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{where} lacks {f.name!r}")
    return cls(**kwargs)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` (a record, through :func:`encode`, or JSON-ready Python) as JSON to ``path`` through a temporary
    file in the same folder and a rename, so that the file is never half-written; returns the path. The paper
    layer's one writer: results, the report and the full-scale run all go through it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(encode(obj), indent=1, ensure_ascii=False)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
