"""The schema's messages, in one place: ``conf error: train.epochs=-1: expected an int >= 1``.

pydantic finds the problems (:mod:`zfnet.schema.types`, the groups); this module words them: the full dotted
key, the value as composed, and what the field accepts, described from its annotation (``describe``); an
unknown key names the keys known there and the closest one; a cross-key rule states its own expectation.
"""

from __future__ import annotations

import difflib
import os
import sys
from contextlib import contextmanager
from typing import Annotated, Any, Dict, Iterator, List, Literal, Tuple, Union, get_args, get_origin

import annotated_types as at
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from zfnet.schema.types import Expect


class ConfigError(ValueError):
    """A config value of the wrong type or outside its range; ``problems``: one line per key."""

    def __init__(self, problems: List[str]):
        self.problems = list(problems)
        super().__init__("conf error: " + "; ".join(self.problems))


# ------------------------------------------------------------------------------------------ describe
_NAMES = {int: ("an int", "ints"), float: ("a float", "floats"), bool: ("a bool (true or false)", "bools"),
          str: ("a string", "strings")}


def _split(tp: Any) -> Tuple[Any, list]:
    """``(type, metadata)`` of a possibly ``Annotated`` type (``Field(...)`` unpacked into its constraints)."""
    meta: list = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp = args[0]
        for m in args[1:]:
            meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return tp, meta


def _optional(tp: Any) -> Tuple[bool, Any]:
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)):
            return True, (args[0] if len(args) == 1 else Any)
    return False, tp


def _num(x: Any) -> str:
    return repr(x)


def _range(meta: list) -> str:
    lo = next(((m.ge, "[") for m in meta if isinstance(m, at.Ge)), None) or \
        next(((m.gt, "(") for m in meta if isinstance(m, at.Gt)), None)
    hi = next(((m.le, "]") for m in meta if isinstance(m, at.Le)), None) or \
        next(((m.lt, ")") for m in meta if isinstance(m, at.Lt)), None)
    if lo and hi:
        return f"in {lo[1]}{_num(lo[0])}, {_num(hi[0])}{hi[1]}"
    if lo:
        return f"{'>=' if lo[1] == '[' else '>'} {_num(lo[0])}"
    if hi:
        return f"{'<=' if hi[1] == ']' else '<'} {_num(hi[0])}"
    return ""


def _length(meta: list) -> str:
    lo = next((m.min_length for m in meta if isinstance(m, at.MinLen)), None)
    hi = next((m.max_length for m in meta if isinstance(m, at.MaxLen)), None)
    if lo is not None and lo == hi:
        return f"(exactly {lo})"
    return "(at least one)" if lo == 1 else ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def describe(tp: Any) -> str:
    """What a field accepts, in words: ``a float > 0``, ``null or an int >= 1``, ``one of ['npy', 'jpg']``."""
    tp, meta = _split(tp)
    optional, tp = _optional(tp)
    if optional:
        return "null or " + describe(tp)
    words = next((m for m in meta if isinstance(m, Expect)), None)
    if words is not None and words.alone:
        return words.text
    suffix = words.text if words is not None else ""
    if get_origin(tp) is Literal:
        return _join(f"one of {list(get_args(tp))}", suffix)
    if get_origin(tp) in (list, List):
        (item,) = get_args(tp) or (Any,)
        item, item_meta = _split(item)
        if get_origin(item) is Literal:
            text = f"a list of {_NAMES[type(get_args(item)[0])][1]}, each one of {list(get_args(item))}"
        else:
            text = _join(f"a list of {_NAMES.get(item, ('', 'values'))[1]}", _range(item_meta))
        return _join(text, _length(meta), suffix)
    if get_origin(tp) in (dict, Dict) or (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return "a mapping"
    return _join(_NAMES.get(tp, ("a value", ""))[0], _range(meta), suffix)


# ------------------------------------------------------------------------------------------ translate
def _fields(model: type) -> Dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _full(info: FieldInfo) -> Any:
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _model_of(tp: Any) -> Any:
    """The group model or ``dict`` row type behind a field's type, else None."""
    tp, _ = _split(tp)
    _, tp = _optional(tp)
    tp, _ = _split(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if get_origin(tp) in (dict, Dict):
        return tp
    return None


_ABSENT = object()


def _value(plain: Any, parts: List[str]) -> Any:
    node = plain
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def problems_of(err: ValidationError, root: type, plain: Any, prefix: str = "") -> List[str]:
    """One line per key for every error pydantic found validating ``plain`` against the model ``root``."""
    out: List[str] = []
    for e in err.errors(include_url=False):
        parts: List[str] = []
        tp: Any = root
        known: List[str] = []
        for part in e["loc"]:
            model = _model_of(tp) if parts else root
            if model is None or isinstance(part, int):
                break
            if get_origin(model) in (dict, Dict):
                parts.append(str(part))
                tp = get_args(model)[1]
                continue
            fields = _fields(model)
            parts.append(str(part))
            if part not in fields:
                known = list(fields)
                break
            tp = _full(fields[part])
        key = prefix + ".".join(parts)
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(parts[-1], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = model.__module__.replace(".", "/") + ".py"
            out.append(f"{key}: unknown key (no such key in the schema, {where}); known here: {known}{hint}")
        elif e["type"] == "zfnet_rule":
            here = key + "." if parts else prefix
            for rel, value, expected in e["ctx"]["problems"]:
                raw = _value(plain, parts + rel.split("."))  # as composed, not as validated
                out.append(f"{here}{rel}={value if raw is _ABSENT else raw!r}: " + expected.replace("{p}", here))
        else:
            value = _value(plain, parts)
            shown = "" if value is _ABSENT else f"={value!r}"
            out.append(f"{key or '<root>'}{shown}: expected {describe(tp)}")
    return list(dict.fromkeys(out))  # a list's several bad items: one line


def explain_omegaconf(err: OmegaConfBaseException) -> str:
    """One line for an error resolving the config (an interpolation to nowhere, a ``???`` left unset)."""
    key = getattr(err, "full_key", None) or ""
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]
    if isinstance(err, MissingMandatoryValue):
        return f"{key}: no value ('???'); set it in conf/ or on the command line"
    return f"{key or '<root>'}: {msg}"


@contextmanager
def exit_on_config_error(status: int = 2) -> Iterator[None]:
    """For the pipelines' entry points: a ``ConfigError`` is one line on stderr and exit status 2 (Hydra's
    short-message convention), not a traceback. ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    try:
        yield
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(str(err), file=sys.stderr, flush=True)
        sys.exit(status)


__all__ = ["ConfigError", "describe", "exit_on_config_error", "explain_omegaconf", "problems_of"]
