"""The untrained control: a trained model's architecture with the weights it started from.

The train stage (``zfnet.training.run.train``) seeds every generator with ``pl.seed_everything(seed)`` and
then builds the model (``Classifier`` -> ``zfnet.models.build``) before anything else draws a random
number; it saves no epoch-0 checkpoint. ``initial_model`` redoes exactly that from the architecture a
``model.pt`` records (``arch``) and the run's ``seed``, and checks that two builds agree (``fingerprint``),
so the control is the trained network's own starting point, not another random draw
(tests/test_claims.py compares it with the weights the train stage's own code path builds). The claims
stage and the transfer stage (Table 7's untrained column) both rebuild their controls here.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["fingerprint", "initial_model", "untrained_like"]


def fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the state dict's names, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _seeded_build(arch: Mapping, seed: int) -> torch.nn.Module:
    from zfnet.models import build

    random.seed(seed)  # what pl.seed_everything(seed) sets, without Lightning
    np.random.seed(seed)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        a = dict(arch)
        return build(a.pop("name"), a.pop("num_classes"), **a).eval()
    finally:
        torch.set_rng_state(state)  # the caller's stream goes on as if nothing was drawn


def initial_model(arch: Mapping, seed: int) -> tuple[torch.nn.Module, str]:
    """(the model ``arch`` builds after the train stage's seeding with ``seed``, its fingerprint).

    ``arch``: ``model.config`` (what ``model.pt`` stores under ``arch``: name, num_classes and every build
    option). Raises ``RuntimeError`` when two builds differ (the build is not deterministic: no control)."""
    if "name" not in arch or "num_classes" not in arch:
        raise ValueError(f"arch: expected a model.pt architecture with 'name' and 'num_classes', got keys {sorted(arch)}")
    model, again = _seeded_build(arch, seed), _seeded_build(arch, seed)
    fp = fingerprint(model)
    if fingerprint(again) != fp:
        raise RuntimeError(f"the untrained control of {arch.get('name')} is not reproducible: two builds with seed "
                           f"{seed} differ")
    return model, fp


def untrained_like(model: torch.nn.Module, seed: int) -> tuple[torch.nn.Module, str]:
    """The untrained control of a trained ``model`` (one of ``zfnet.models.build``'s, with ``.config``)."""
    arch = getattr(model, "config", None)
    if not arch:
        raise ValueError(f"{type(model).__name__}: no .config architecture to rebuild its untrained control from")
    return initial_model(arch, seed)
