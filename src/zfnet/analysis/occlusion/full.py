"""Occlusion sweeps (private to :mod:`zfnet.analysis.occlusion`): the plain batched sweep and the memory budget.

* :func:`full_chunk`: a chunk of positions as occluded copies (one broadcast ``where``) through the whole
  model, the layer's map summed inside a forward hook (the ``"full"`` method, any CNN);
* :func:`memory_budget` / :func:`default_chunk`: how many positions one batch may hold, for either method
  (the incremental sweep's windows are planned by :mod:`zfnet.analysis.occlusion.incremental`).
"""

from __future__ import annotations

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.chain import input_span
from zfnet.analysis.occlusion import incremental as inc

_CPU_CAP = 1 << 30


def memory_budget(device: torch.device | str | None = None) -> int:
    """Bytes a sweep may use: half the free memory of a CUDA device; on CPU a quarter of the available
    RAM, capped at 1 GiB."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free // 2)
    avail = None
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except Exception:  # pragma: no cover - psutil missing
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
        except OSError:
            pass
    if avail is None:
        avail = 4 << 30
    return int(min(avail // 4, _CPU_CAP))



# ------------------------------------------------------------------------------ the full sweep
def full_chunk(model, x, fill_t, ty, tx, size, layer, channel, which):
    """All occluded copies of the chunk as one broadcast ``where``, then the whole model."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    my = (rows[None, :] >= ty[:, None]) & (rows[None, :] < ty[:, None] + size)  # (B, H)
    mx = (cols[None, :] >= tx[:, None]) & (cols[None, :] < tx[:, None] + size)  # (B, W)
    mask = (my[:, :, None] & mx[:, None, :])[:, None]  # (B, 1, H, W)
    occluded = torch.where(mask, fill_t, x)  # (B, C, H, W)
    outs, logits = hooks.run(model, occluded, [layer], call=which, stop=False,
                              reduce=lambda _p, o: o[:, channel].reshape(o.shape[0], -1).sum(1))
    return outs[layer], as_logits(logits)


def as_logits(out) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"occlusion_maps: the model's output must be (B, classes) logits, got "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    return out


def _activation_sizes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Per-example numel of every leaf module's output, in forward order."""
    sizes: list[int] = []

    def hook(_m, _i, o):
        if isinstance(o, torch.Tensor):
            sizes.append(o[0].numel())

    with hooks.attached((m, hook) for m in model.modules() if not list(m.children())):
        model(x[None])
    return sizes or [x.numel()]


def default_chunk(model: nn.Module, x: torch.Tensor, cache, ys: torch.Tensor, xs: torch.Tensor, size: int) -> int:
    """Positions per batch from the memory budget: per position, the largest set of tensors alive at once,
    times 2. ``cache``: the incremental sweep's cache (:func:`~zfnet.analysis.occlusion.incremental.cache_forward`), or None
    for the full sweep. ``x``: the image (C, H, W); ``ys`` / ``xs``: the square's tops / lefts."""
    c_in, h, w = x.shape
    n_pos = len(ys) * len(xs)
    if cache is not None:
        wplan = inc.windows(cache, ys, xs, size)
        peak, prev = 0, size * size * c_in
        for i, op in enumerate(cache.ops):
            if i not in wplan:
                continue
            ly, lx = wplan[i][2], wplan[i][3]
            m_n = input_span(0, ly, op.k[0], op.s[0], 0)[1] * input_span(0, lx, op.k[1], op.s[1], 0)[1]
            c_out, h_out, w_out = op.out_shape
            out_numel = c_out * h_out * w_out * ly * lx // (h_out * w_out)
            # previous window + its copy in the gather buffer, int64 index, patch, output and the
            # temporaries of the point-wise ops after it (LRN: about 3)
            peak = max(peak, 2 * prev + 2 * m_n + m_n * cache.pixels[i].shape[1] + 4 * out_numel)
            prev = out_numel
        d = cache.conv_out[0].numel()
        per = peak + 4 * d  # + the pasted last conv map (index, buffer, map) and its pending copy
    else:
        acts = _activation_sizes(model, x)
        per = 3 * c_in * h * w + 2 * max(a + b for a, b in zip(acts, acts[1:] + [0]))
    return int(max(1, min(n_pos, memory_budget(x.device) // max(1, int(2 * per * x.element_size())))))
