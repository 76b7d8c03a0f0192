"""Network-centric visualization (the survey: Hadji & Wildes,
"What Do We Understand About Convolutional Networks?", arXiv:1803.08834, §4.1.1): images synthesized from the network alone, batched.

* :func:`maximize`: activation maximization of a batch of objectives, one image each, optimized together:
  a class logit (the pre-softmax score, Simonyan et al. 2014: ``arg max_I S_c(I) - λ‖I‖²`` from noise), a
  channel of a layer (its mean or its centre activation) or a single unit.
* :func:`invert`: Mahendran & Vedaldi (2015)'s reconstruction of an image from its layer-``l`` features,
  ``arg min_x ‖Φ_l(x) - Φ_l(x0)‖² / ‖Φ_l(x0)‖² + λ_α R_α(x) + λ_TV R_TV^β(x)``, for several images and
  layers at once (one image per (image, layer) pair).

Both work in the model's input space (mean-subtracted pixels), on any ``nn.Module`` with layers by module
path, and share one engine: per image a regularized objective ``obj_i(T_i(x_i)) - λ l2(x_i) - β_TV tv(x_i) -
λ_α α-norm(x_i)`` (``T_i`` a random affine transformation when jitter / scale / rotate are on; the priors are
:mod:`zfnet.analysis.synthesis.regularizers`) ascended by Adam in a pixel or decorrelated Fourier parameterization
(:mod:`zfnet.analysis.synthesis.parameterization`), optionally blurred every ``blur_every`` steps (Yosinski et al.).

Independence of the batch's images: image ``i``'s initial noise and its transformations come from its own
generator, seeded from ``seed`` and the objective itself, its regularizers are its own, Adam keeps per-image
state and step counts, and an image that has plateaued (no gain of its regularized objective above ``tol``
relative for ``patience`` steps) is frozen while the others go on; layers that mix images (batch norm in
training mode) are avoided by running in eval mode. What that buys, precisely:

* ``chunk=1`` (each image's parameterization, transformation, forward and backward through the model and
  blur run alone; only Adam's elementwise update is batched): a batch gives the same images as its
  objectives one at a time with the same seed, float32 included (bitwise on CPU in our tests; tested to
  1e-3 of the image's range after 64 steps with the default transformations).
* ``chunk=None`` (the default, all active images in one forward) or ``chunk=k``: the same in exact
  arithmetic, and in float64 on CPU (tested likewise). In float32 the batched kernels (oneDNN
  convolutions, matrix products, local response normalization's pooling) round differently from a batch of
  one, about 1e-7 relative, and the ascent amplifies these differences: on the demo model (zfnet width 0.5,
  112 px, conv5 channel 3 in a batch of 8) the image ends 2.5 % of its range apart after 4 steps and 17 %
  after 64. Float64 with a gradient perturbed by 1e-7 of its largest element each step reproduces it (13 %
  after 64 steps), whereas a 1e-7 perturbation of the starting point shrinks (2e-10 after 64 steps): it is
  the per-step rounding of the gradient, amplified by the optimization, not a coupling of the images. Such
  images are other samples of the same optimization (same objectives reached on average), not the ones a
  run alone gives.

The model's parameters are frozen during the run (no weight gradients are computed) and restored after.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.synthesis import regularizers as R
from zfnet.analysis.synthesis.parameterization import Parameterization, random_affine

__all__ = ["Objective", "Synthesis", "channel", "invert", "logit", "maximize", "parse", "threads", "unit"]


@contextlib.contextmanager
def threads(n: int | None):
    """torch's intra-op threads set to ``n`` for the block (None: unchanged), restored after: the synthesis's
    small batches run faster on 1 thread on a busy CPU (``visualize.synthesis.threads``)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Objective(NamedTuple):
    """What one image maximizes. ``kind``: ``"logit"`` (``layer`` None: the model's output), ``"channel"``
    (``where``: ``"mean"`` over positions or ``"centre"``), ``"unit"`` (at ``y``, ``x``) or ``"match"``
    (inversion: minus the normalized squared distance of the layer's output to ``target``)."""

    kind: str
    layer: str | None
    channel: int = 0
    where: str = "mean"
    y: int = 0
    x: int = 0
    target: torch.Tensor | None = None

    def key(self) -> str:
        return f"{self.kind}|{self.layer}|{self.channel}|{self.where}|{self.y}|{self.x}"


def logit(c: int, layer: str | None = None) -> Objective:
    """Class ``c``'s pre-softmax score (the model's output, or the output of ``layer``)."""
    return Objective("logit", layer, int(c))


def channel(layer: str, c: int, where: str = "mean") -> Objective:
    """Channel ``c`` of ``layer``: its mean over positions (``"mean"``) or its centre unit (``"centre"``)."""
    if where not in ("mean", "centre"):
        raise ValueError(f"where: expected 'mean' or 'centre', got {where!r}")
    return Objective("channel", layer, int(c), where)


def unit(layer: str, c: int, y: int, x: int) -> Objective:
    """The single unit (``c``, ``y``, ``x``) of ``layer``."""
    return Objective("unit", layer, int(c), "mean", int(y), int(x))


def parse(spec: str | Objective) -> Objective:
    """``"logit:3"``, ``"conv5:12"`` (channel mean), ``"conv5:12:centre"``, ``"conv5:12@3,4"`` (a unit)."""
    if isinstance(spec, Objective):
        return spec
    head, _, rest = str(spec).rpartition(":") if "@" not in str(spec) else (str(spec).partition(":")[0], ":", str(spec).partition(":")[2])
    try:
        if head == "logit":
            return logit(int(rest))
        if "@" in rest:
            c, _, yx = rest.partition("@")
            y, x = (int(v) for v in yx.split(","))
            return unit(head, int(c), y, x)
        if rest in ("mean", "centre"):
            layer, _, c = head.rpartition(":")
            return channel(layer, int(c), rest)
        return channel(head, int(rest))
    except ValueError:
        raise ValueError(f"objective {spec!r}: expected 'logit:<c>', '<layer>:<c>', '<layer>:<c>:centre' or "
                         "'<layer>:<c>@<y>,<x>'") from None


class Synthesis(NamedTuple):
    """Result of a run. ``images``: (B, 3, H, W) in model input space; ``objective``: (B,) each image's
    objective (unregularized, untransformed) at the end; ``history``: (steps, B) the objective of each step
    (of the transformed image being optimized; NaN after the image stopped); ``total``: (steps, B) the same
    minus the regularizers; ``steps``: (B,) steps each image ran."""

    images: torch.Tensor
    objective: torch.Tensor
    history: torch.Tensor
    total: torch.Tensor
    steps: torch.Tensor


def _seed(seed: int, key: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**63 - 1)


@contextlib.contextmanager
def _frozen(model: nn.Module):
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with hooks.eval_mode(model):
            yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _reduce(a: torch.Tensor, objs: Sequence[Objective]) -> torch.Tensor:
    """Each objective's value (k,) from its image's output ``a`` (k, C[, H, W]) of the objective's layer."""
    vals = a.new_zeros(len(objs))
    for j, o in enumerate(objs):
        if o.kind == "match":
            t = o.target.to(a.dtype)
            vals = vals.index_put((torch.tensor([j]),), -(a[j] - t).pow(2).sum().reshape(1) / t.pow(2).sum().clamp_min(1e-12))
    rest = [j for j, o in enumerate(objs) if o.kind != "match"]
    if rest:
        jj = torch.tensor(rest, device=a.device)
        ch = torch.tensor([objs[j].channel for j in rest], device=a.device)
        s = a[jj, ch]  # (k,) for a 2-D output, else (k, H, W)
        if s.ndim == 1:
            v = s
        else:
            h, w = s.shape[-2:]
            ys = torch.tensor([objs[j].y if objs[j].kind == "unit" else h // 2 for j in rest], device=a.device)
            xs = torch.tensor([objs[j].x if objs[j].kind == "unit" else w // 2 for j in rest], device=a.device)
            point = torch.tensor([objs[j].kind == "unit" or objs[j].where == "centre" for j in rest], device=a.device)
            ar = torch.arange(len(rest), device=a.device)
            v = torch.where(point, s[ar, ys, xs], s.flatten(1).mean(1))
        vals = vals.index_put((jj,), v)
    return vals


def _values(model: nn.Module, x: torch.Tensor, objs: Sequence[Objective], which: dict[str, int]) -> torch.Tensor:
    """Each row's objective (B,): one forward per layer the objectives name, of only that layer's images and
    stopped right after it (a conv1 objective never pays for the layers above it; the model's output only
    for the logit rows)."""
    v = x.new_zeros(len(objs))
    for layer in dict.fromkeys(o.layer for o in objs):
        rows = [j for j, o in enumerate(objs) if o.layer == layer]
        sub = [objs[j] for j in rows]
        idx = torch.tensor(rows, device=x.device)
        xs = x if len(rows) == len(objs) else x[idx]
        if layer is None:
            vals = _reduce(model(xs), sub)
        else:
            outs, _ = hooks.run(model, xs, [layer], reduce=lambda _p, out: _reduce(out, sub),
                                 call={layer: which[layer]}, stop=True)
            vals = outs[layer]
        v = v.index_put((idx,), vals)
    return v


def _gradient(model, P: Parameterization, theta: torch.Tensor, objs: Sequence[Objective], gens, which, *, jitter,
              scale_range, rotate, l2, tv, beta, alpha, alpha_weight, scale):
    """One ascent step's work for some images: the gradient of each image's regularized objective with respect
    to its parameter, the objective and the regularized objective ((k, *shape), (k,), (k,))."""
    p = theta.detach().requires_grad_(True)
    x = P.image(p)
    xt = random_affine(x, gens, jitter=jitter, scale=scale_range, rotate=rotate)
    obj = _values(model, xt, objs, which)
    reg = x.new_zeros(len(objs))
    if l2:
        reg = reg + l2 * R.l2(x, scale)
    if tv:
        reg = reg + tv * R.tv(x, beta, scale)
    if alpha_weight:
        reg = reg + alpha_weight * R.alpha_norm(x, alpha, scale)
    total = obj - reg
    (g,) = torch.autograd.grad(total.sum(), p)
    return g, obj.detach(), total.detach()


def _optimize(model, objs: Sequence[Objective], seeds: Sequence[int], size: tuple[int, int], start, *, steps, lr,
              l2, tv, beta, alpha, alpha_weight, jitter, scale_range, rotate, blur_every, blur_sigma, param,
              decorrelate, scale, init_sd, patience, tol, chunk, call, progress) -> Synthesis:
    if steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk: expected None (all images at once) or an int >= 1, got {chunk!r}")
    dtype, device = hooks.dtype_device(model)
    b = len(objs)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    P = Parameterization(param, *size, scale=scale, decorrelate=decorrelate, dtype=dtype, device=device)
    theta = P.init(gens, init_sd) if start is None else P.to_param(start.to(device=device, dtype=dtype))
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    t = torch.zeros(b, dtype=torch.long)
    active = torch.ones(b, dtype=torch.bool)
    best = torch.full((b,), -float("inf"), dtype=torch.float64)
    since = torch.zeros(b, dtype=torch.long)
    hist = torch.full((steps, b), float("nan"), dtype=torch.float64)
    total_hist = hist.clone()
    b1, b2, eps = 0.9, 0.999, 1e-8
    layers = list(dict.fromkeys(o.layer for o in objs if o.layer is not None))
    it = range(steps)
    if progress:
        from zfnet.progress import bar

        it = bar(it, desc="synthesis", unit="step")
    with _frozen(model):
        which = hooks.calls(model, P.image(theta[:1]).detach(), layers, call) if layers else {}
        for step in it:
            idx = active.nonzero().flatten()
            if len(idx) == 0:
                break
            parts = [_gradient(model, P, theta[ix], [objs[i] for i in ix.tolist()], [gens[i] for i in ix.tolist()],
                               which, jitter=jitter, scale_range=scale_range, rotate=rotate, l2=l2, tv=tv, beta=beta,
                               alpha=alpha, alpha_weight=alpha_weight, scale=scale)
                     for ix in idx.split(chunk or len(idx))]
            g = torch.cat([q[0] for q in parts])
            obj, total = torch.cat([q[1] for q in parts]), torch.cat([q[2] for q in parts])
            with torch.no_grad():
                t[idx] += 1
                shape = (-1,) + (1,) * (theta.ndim - 1)
                tt = t[idx].to(dtype).reshape(shape).to(device)
                mi = b1 * m[idx] + (1 - b1) * g
                vi = b2 * v[idx] + (1 - b2) * g * g
                m[idx], v[idx] = mi, vi
                new = theta[idx] + lr * (mi / (1 - b1**tt)) / ((vi / (1 - b2**tt)).sqrt() + eps)
                if blur_every and (step + 1) % blur_every == 0 and blur_sigma > 0:
                    new = torch.cat([P.to_param(R.gaussian_blur(P.image(q), blur_sigma)) for q in new.split(chunk or b)])
                theta[idx] = new
                tot = total.detach().double().cpu()
                hist[step, idx] = obj.detach().double().cpu()
                total_hist[step, idx] = tot
                prev = best[idx]
                gain = prev.isinf() | (tot > prev + tol * prev.abs().clamp_min(1e-12))
                best[idx] = torch.maximum(prev, tot)
                since[idx] = torch.where(gain, 0, since[idx] + 1)
                if patience:
                    active[idx[since[idx] >= patience]] = False
        with torch.no_grad():
            k = chunk or 64
            images = torch.cat([P.image(q) for q in theta.split(k)])
            final = torch.cat([_values(model, images[s:s + k], objs[s:s + k], which) for s in range(0, b, k)])
    ran = int((~hist.isnan()).any(1).nonzero().max()) + 1 if b else 0
    return Synthesis(images.detach(), final.detach().cpu(), hist[:ran], total_hist[:ran], t)


def _size(model: nn.Module, size) -> tuple[int, int]:
    if size is None:
        size = getattr(model, "config", {}).get("input_size", 224) if isinstance(getattr(model, "config", None), dict) else 224
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def maximize(model: nn.Module, objectives: Sequence[Objective | str], *, size: int | Sequence[int] | None = None,
             steps: int = 64, lr: float = 0.05, l2: float = 1e-3, tv: float = 0.0, beta: float = 2.0,
             alpha: float = 6.0, alpha_weight: float = 0.0, jitter: float = 4.0, scale_range=(1.0, 0.975, 1.025, 0.95, 1.05),
             rotate: float = 5.0, blur_every: int = 0, blur_sigma: float = 0.5, param: str = "fft",
             decorrelate: bool = True, scale: float = 64.0, init_sd: float = 0.01, patience: int = 0,
             tol: float = 1e-3, seed: int = 0, start: torch.Tensor | None = None, chunk: int | None = None,
             call=None, progress: bool = False) -> Synthesis:
    """Images that maximize each objective (one image per objective, optimized together as one batch).

    ``objectives``: :class:`Objective` (:func:`logit`, :func:`channel`, :func:`unit`) or their strings
    (:func:`parse`). Options: ``l2`` (λ of Simonyan's ``λ‖I‖²``, per pixel in units of ``scale``), ``tv`` and
    ``beta`` (Mahendran's β-TV), ``alpha_weight``/``alpha`` (the α-norm bound), ``jitter`` (px), ``scale_range``
    (scale factors to pick from, or a float f for uniform 1 ± f), ``rotate`` (± degrees), ``blur_every`` /
    ``blur_sigma``, ``param`` (``"fft"`` or ``"pixel"``), ``decorrelate`` (colours), ``scale`` (the image's unit
    in input space), ``lr`` (Adam's step, in parameter units), ``patience``/``tol`` (stop an image whose
    regularized objective gained less than ``tol`` relative in ``patience`` steps; 0: never), ``seed``,
    ``chunk`` (images per forward/backward of the model: None all at once, 1 each alone, which makes the
    images those of one-at-a-time runs in float32 too; see the module's note; it also bounds memory).
    ``size``: the input (H, W) (default: the model's ``config["input_size"]`` or 224). ``start``: (B, 3, H, W)
    images to start from instead of noise. Returns :class:`Synthesis`.
    """
    objs = [parse(o) for o in objectives]
    if not objs:
        raise ValueError("objectives: give at least one")
    for o in objs:
        if o.layer is not None:
            hooks.find_layer(model, o.layer)
    seeds = [_seed(seed, o.key()) for o in objs]
    return _optimize(model, objs, seeds, _size(model, size), start, steps=steps, lr=lr, l2=l2, tv=tv, beta=beta,
                     alpha=alpha, alpha_weight=alpha_weight, jitter=jitter, scale_range=scale_range, rotate=rotate,
                     blur_every=blur_every, blur_sigma=blur_sigma, param=param, decorrelate=decorrelate, scale=scale,
                     init_sd=init_sd, patience=patience, tol=tol, chunk=chunk, call=call, progress=progress)


def invert(model: nn.Module, images: torch.Tensor, layers: str | Sequence[str], *, steps: int = 200, lr: float = 0.05,
           l2: float = 0.0, tv: float = 0.05, beta: float = 2.0, alpha: float = 6.0, alpha_weight: float = 1e-4,
           jitter: float = 0.0, scale_range=0.0, rotate: float = 0.0, blur_every: int = 0, blur_sigma: float = 0.5,
           param: str = "pixel", decorrelate: bool = False, scale: float = 64.0, init_sd: float = 0.01,
           patience: int = 0, tol: float = 1e-4, seed: int = 0, chunk: int | None = None, call=None,
           progress: bool = False) -> Synthesis:
    """Mahendran & Vedaldi's inversion: for each image (N, 3, H, W) (or one (3, H, W)) and each layer, the image
    whose ``layer`` output matches the image's, from noise, regularized by β-TV (``tv``, ``beta``) and the
    α-norm (``alpha_weight``, ``alpha``). All N x L reconstructions run as one batch (``chunk``: images per
    forward of the model, as in :func:`maximize`; image ``i`` is seeded by its index). Returns
    :class:`Synthesis` with ``images`` (N, L, 3, H, W) and ``objective`` (N, L): minus the normalized squared
    feature distance ``‖Φ(x) - Φ(x0)‖² / ‖Φ(x0)‖²`` of each reconstruction."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers: give at least one layer")
    dtype, device = hooks.dtype_device(model)
    x0 = images.to(device=device, dtype=dtype)
    with torch.no_grad(), hooks.eval_mode(model):
        which = hooks.calls(model, x0[:1], layers, call)
        feats, _ = hooks.run(model, x0, layers, reduce=lambda p, o: o.detach().clone(), call=which)
    n = x0.shape[0]
    objs = [Objective("match", l, target=feats[l][i]) for i in range(n) for l in layers]
    seeds = [_seed(seed, f"invert|{l}|{i}") for i in range(n) for l in layers]
    res = _optimize(model, objs, seeds, tuple(x0.shape[-2:]), None, steps=steps, lr=lr, l2=l2, tv=tv, beta=beta,
                    alpha=alpha, alpha_weight=alpha_weight, jitter=jitter, scale_range=scale_range, rotate=rotate,
                    blur_every=blur_every, blur_sigma=blur_sigma, param=param, decorrelate=decorrelate, scale=scale,
                    init_sd=init_sd, patience=patience, tol=tol, chunk=chunk, call=call, progress=progress)
    nl = len(layers)
    return res._replace(images=res.images.reshape(n, nl, *res.images.shape[1:]), objective=res.objective.reshape(n, nl))
