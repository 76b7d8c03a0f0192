"""A layer chain and its window arithmetic: the plain run of ops from the input to a layer.

Two analyses walk such a chain: the fast deconvnet (:mod:`zfnet.analysis.deconvnet`, the chain recorded op
by op from the functional calls of a forward) and the incremental occlusion sweep
(:mod:`zfnet.analysis.occlusion`, the chain recorded module by module). Both describe each step as an
:class:`Op` and ask the same questions of windows along one axis, answered here once:

* :func:`input_span`: which inputs a run of outputs reads (its receptive field, unclipped);
* :func:`output_span`: which outputs a run of inputs reaches (what an occluder changes);
* :func:`back_windows` / :func:`axis_profile`: the receptive field of outputs at every level down to the
  input, clipped to each map, with the padding each op's windows need outside it;
* :func:`cover_boxes`: few boxes of outputs covering given positions at few convolution MACs.

Conventions: ``k`` is the effective (dilated) kernel extent, ``p`` the padding before the first row /
column, intervals are half-open ``[a, b)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AxisProfile", "Op", "axis_profile", "back_windows", "cover_boxes", "effective_kernel", "input_span",
           "output_span", "pair"]


@dataclass
class Op:
    """One step of a chain. ``kind``: conv | pool (spatial) or relu | lrn | pointwise (per position)."""

    kind: str
    in_shape: tuple[int, int, int]  # (C, H, W) of this op's input
    out_shape: tuple[int, int, int]
    k: tuple[int, int] = (1, 1)  # effective (dilated) kernel extent per axis
    s: tuple[int, int] = (1, 1)
    p: tuple[int, int] = (0, 0)  # padding before the first row / column
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None  # conv only: what the forward adds (the windowed forward replays it)
    dilation: tuple[int, int] = (1, 1)  # conv and pool
    groups: int = 1
    lrn: tuple[int, float, float, float] | None = None  # (size, alpha, beta, k)
    desc: str = ""
    module: nn.Module | None = None  # the module that ran it (module-recorded chains)
    path: str = ""  # its module path

    @property
    def spatial(self) -> bool:
        return self.kind in ("conv", "pool")


def pair(v) -> tuple[int, int]:
    """An int or a 1- / 2-sequence as a (rows, columns) pair."""
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def effective_kernel(kernel, dilation) -> tuple[int, int]:
    """The extent a dilated kernel covers per axis: ``(k - 1) * d + 1``."""
    k, d = pair(kernel), pair(dilation)
    return (k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1


def input_span(a, b, k: int, s: int, p: int):
    """Inputs ``[lo, hi)`` read by the outputs ``[a, b)`` of an op (kernel extent k, stride s, padding p),
    unclipped (may leave the map). ints or tensors."""
    return a * s - p, (b - 1) * s - p + k


def output_span(a: torch.Tensor, b: torch.Tensor, k: int, s: int, p: int, n_out: int):
    """Outputs ``[lo, hi)`` (clipped to ``[0, n_out)``) whose window meets the inputs ``[a, b)`` (tensors).

    Output o reads padded inputs [o*s, o*s + k), i.e. inputs [o*s - p, o*s - p + k - 1]: it meets [a, b)
    iff ceil((a + p - k + 1) / s) <= o <= floor((b - 1 + p) / s). Empty intervals come back as lo == hi.
    """
    lo = torch.div(a + p - k + s, s, rounding_mode="floor").clamp(min=0)
    hi = torch.div(b - 1 + p, s, rounding_mode="floor").clamp(max=n_out - 1) + 1
    empty = (b <= a) | (hi <= lo)
    lo = torch.where(empty, lo.clamp(max=n_out - 1), lo)
    return lo, torch.where(empty, lo, hi)


def back_windows(ops: Sequence[Op], end: int, a: int, b: int, axis: int):
    """The outputs ``[a, b)`` of op ``end - 1`` walked down to the input along ``axis``.

    Returns ``starts, lengths`` (per level 0..end: the window clipped to that level's map), ``pad_lo,
    pad_hi`` (per op: the part of its windows' reach before / after the clipped input window, i.e. the
    padding a windowed forward needs) and ``(vstart, vend)``, the unclipped receptive field at the input.
    """
    starts, lengths = [0] * (end + 1), [0] * (end + 1)
    lo, hi = [0] * end, [0] * end
    cs, ce, vs, ve = a, b, a, b
    starts[end], lengths[end] = cs, ce - cs
    for i in reversed(range(end)):
        op = ops[i]
        if op.spatial:
            k, s, p = op.k[axis], op.s[axis], op.p[axis]
            n = op.in_shape[1 + axis]
            ua, ub = input_span(cs, ce, k, s, p)
            cs, ce = max(0, ua), min(n, ub)
            lo[i], hi[i] = cs - ua, ub - ce
            vs, ve = input_span(vs, ve, k, s, p)
        starts[i], lengths[i] = cs, ce - cs
    return starts, lengths, lo, hi, (vs, ve)


@dataclass(frozen=True)
class AxisProfile:
    """One unit's receptive field along one axis, level by level (:func:`axis_profile`)."""

    starts: tuple[int, ...]  # clipped window start at every level 0..end
    lengths: tuple[int, ...]
    conv_off: tuple[int, ...]  # per op i: clipped start at level i minus the unclipped start from level i+1
    vstart: int  # unclipped receptive-field start at the input
    vlen: int

    def key(self):
        """Equal for units whose windows have the same geometry (they can be batched)."""
        return self.lengths, self.conv_off, self.starts[0] - self.vstart


def axis_profile(ops: Sequence[Op], end: int, pos: int, axis: int) -> AxisProfile:
    """The receptive field of output ``pos`` of op ``end - 1`` along ``axis`` (:func:`back_windows`)."""
    starts, lengths, lo, _hi, (vs, ve) = back_windows(ops, end, pos, pos + 1, axis)
    return AxisProfile(tuple(starts), tuple(max(0, n) for n in lengths), tuple(lo), vs, ve - vs)


def cover_boxes(ops: Sequence[Op], end: int, ys: list[int], xs: list[int], profile: Callable,
                most: int = 16) -> list[tuple[int, int, int, int]]:
    """Boxes (top, bottom, left, right; exclusive) of outputs of op ``end - 1`` whose forwards cover the
    positions ``(ys[j], xs[j])`` at few MACs: starting from one box per position, the pair whose merging
    saves the most convolution MACs (receptive-field windows at every level, ``profile``:
    :func:`back_windows` memoized as ``profile(a, b, axis)``) is merged while that saves any; with more
    than ``most`` positions, their bounding box (the pairwise search grows as the cube of the positions)."""
    pos = sorted(set(zip(ys, xs)))
    if len(pos) > most:
        return [(min(ys), max(ys) + 1, min(xs), max(xs) + 1)]
    convs = [(i, ops[i].out_shape[0] * ops[i].weight[0].numel()) for i in range(end) if ops[i].kind == "conv"]

    def cost(b):
        ly, lx = profile(b[0], b[1], 0)[1], profile(b[2], b[3], 1)[1]
        return sum(ly[i + 1] * lx[i + 1] * m for i, m in convs)

    boxes = [(y, y + 1, x, x + 1) for y, x in pos]
    while len(boxes) > 1:
        best = None
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                p, q = boxes[a], boxes[b]
                m = (min(p[0], q[0]), max(p[1], q[1]), min(p[2], q[2]), max(p[3], q[3]))
                saving = cost(p) + cost(q) - cost(m)
                if best is None or saving > best[0]:
                    best = (saving, a, b, m)
        if best[0] < 0:
            break
        boxes = [bx for k, bx in enumerate(boxes) if k not in best[1:3]] + [best[3]]
    return boxes
