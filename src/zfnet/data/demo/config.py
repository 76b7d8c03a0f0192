"""The demo generator's settings, read through the config schema (``zfnet.schema.data.DemoData``, the one
place their types, ranges and relations live; conf/demo_data/demo.yaml the one place their values do)."""

from __future__ import annotations

from collections.abc import Mapping

from zfnet.data.demo.classes import CALTECH101_CLASSES, CALTECH256_CLASSES, IMAGENET_CLASSES
from zfnet.schema import UNSET, ConfigError, check_group
from zfnet.schema.data import DemoData

NONE = {"broden": {"images": 0}, "dogscats": {"train_per_class": 0, "test": 0}}  # a set absent from the config


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(x[k]) for k in x}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _unset(node: dict, prefix: str) -> list:
    out = []
    for key, value in node.items():
        if value is UNSET:
            out.append(prefix + key)
        elif isinstance(value, dict):
            out += _unset(value, f"{prefix}{key}.")
    return out


def _config(cfg: Mapping) -> dict:
    """``cfg`` (the ``demo_data`` group) checked by the schema, every key the generator reads present, the
    class counts within the classes the demo knows; a ``ConfigError`` naming ``demo_data.<key>`` otherwise."""
    raw = _plain(cfg)
    if not isinstance(raw, dict):
        raise ConfigError([f"demo_data={raw!r}: expected a mapping"])
    raw = {k: v for k, v in raw.items() if k != "out_dir"}
    c = check_group(DemoData, raw, prefix="demo_data.").model_dump(exclude={"out_dir"}, warnings=False)
    for name, none in NONE.items():
        if name not in raw:  # not generated (configs older than the set)
            c[name] = dict(none)
    missing = _unset(c, "demo_data.")
    if missing:
        raise ConfigError([f"{key}: missing (the demo generator needs it; see conf/demo_data/demo.yaml)"
                           for key in missing])
    known = {"imagenet": IMAGENET_CLASSES, "caltech101": CALTECH101_CLASSES, "caltech256": CALTECH256_CLASSES}
    problems = [f"demo_data.{ds}.num_classes={c[ds]['num_classes']!r}: expected an int in [1, {len(classes)}] "
                f"(the {ds} classes the demo knows, zfnet.data.demo.classes)"
                for ds, classes in known.items() if c[ds]["num_classes"] > len(classes)]
    if problems:
        raise ConfigError(problems)
    return c
