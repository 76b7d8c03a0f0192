"""project_top_units (zfnet.analysis.deconvnet.batched): the top-k units of every map of whole layers, batched.

References: autograd (``project`` / ``guided_backprop``, full frames), Captum's NeuronGuidedBackprop
(Captum's NeuronDeconvolution differentiates the LRN, the paper's deconvnet passes it: compared in
test_deconvnet.py), the per-map ``project_units`` loop it replaces, and the images themselves for patches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers import images, rel, tv_model

from zfnet.analysis.deconvnet import (UnitProjections, guided_backprop, project, project_top_units,
                                      project_units)
from zfnet.analysis.topk import TopK, top_activations
from zfnet.models.zfnet import build

DT = torch.float64


def _zfnet():
    torch.manual_seed(0)
    return build("zfnet", 10, width=0.125, input_size=64, init="kaiming").to(DT).eval()


class Stream:
    """A visualize-like stream: iterable batches and ``take(indices)``; counts the images it hands out."""

    def __init__(self, x):
        self.x, self.taken = x, 0

    def __iter__(self):
        for s in range(0, len(self.x), 4):
            yield self.x[s:s + 4], torch.zeros(len(self.x[s:s + 4]), dtype=torch.long), []

    def take(self, idx):
        self.taken += len(idx)
        return self.x[torch.as_tensor(idx, dtype=torch.long)]


def _captum(cls, model, layer, x, units, seeds):
    import captum.attr as captum
    m = getattr(captum, cls)(model, model.get_submodule(layer))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(len(units["channel"])):
            n = int(units["image_index"][j])
            a = m.attribute(x[n:n + 1], (int(units["channel"][j]), int(units["y"][j]), int(units["x"][j])))
            out.append(a * seeds[j])
    return torch.cat(out)


def _check_chunk(r: UnitProjections, model, x, topk, guided: bool):
    """Every unit of the chunk against autograd, Captum and the images (its patches)."""
    t = topk[r.layer]
    k = t.values.shape[1]
    assert len(r.units["channel"]) == len(r.channels) * k
    assert r.units["channel"].tolist() == [c for c in r.channels for _ in range(k)]
    assert torch.equal(r.units["image_index"], t.image_index[r.channels].reshape(-1))
    assert torch.allclose(r.units["value"], t.values[r.channels].reshape(-1).to(r.units["value"].dtype))
    n = r.units["image_index"]
    pos = torch.stack([r.units["y"], r.units["x"]], 1)
    ref = project(model, x[n], r.layer, r.units["channel"], pos)
    assert rel(r.deconv.full(), ref) < 1e-10
    if guided:
        ref_g = guided_backprop(model, x[n], r.layer, r.units["channel"], pos)
        assert rel(r.guided.full(), ref_g) < 1e-10
        cap = _captum("NeuronGuidedBackprop", model, r.layer, x, r.units, torch.ones(len(n)))
        assert rel(r.guided.full(), cap) < 1e-10
        assert rel(r.guided.full(), r.deconv.full()) > 1e-3  # the two rules differ
        assert (r.guided.top == r.deconv.top).all() and (r.guided.left == r.deconv.left).all()
    else:
        assert r.guided is None
    # patches: the image under each frame, zero outside it
    h, w = r.patches.shape[-2:]
    for j in range(0, len(n), 5):
        top, left = int(r.deconv.top[j]), int(r.deconv.left[j])
        padded = torch.nn.functional.pad(x[n[j]], (w, w, h, h))
        assert torch.equal(r.patches[j], padded[:, top + h:top + 2 * h, left + w:left + 2 * w])


def test_zfnet_every_map_equals_autograd_captum_and_the_per_map_loop():
    """Every map of conv1..conv5 (top-3 over 10 images), deconvnet and guided backprop, chunked small so that
    chunks split layers and forward groups split the images; the result does not depend on the chunking."""
    model = _zfnet()
    x = images(10, 64, DT, scale=50.0)
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    topk = top_activations(model, x, layers, k=3)
    chunks = list(project_top_units(model, x, topk, guided=True))
    assert [r.layer for r in chunks] == layers  # default max_units: one chunk per layer (24..48 maps x 3)
    assert [r.channels for r in chunks] == [list(range(topk[name].values.shape[0])) for name in layers]
    for r in chunks[::2] + chunks[1:2]:
        _check_chunk(r, model, x, topk, guided=True)
    # the per-map loop the atlas replaces gives the same values and frames
    r = chunks[4]
    for j, c in enumerate(r.channels[:4]):
        t = topk["conv5"]
        p = project_units(model, x, "conv5", t.image_index[c], c, t.y[c], t.x[c])
        assert rel(r.deconv.values[j * 3:(j + 1) * 3], p.values) < 1e-10
        assert torch.equal(r.deconv.top[j * 3:(j + 1) * 3], p.top)
    # small chunks (7 units -> 2 maps) and forward groups of at most 7 images: the same projections (to
    # rounding: a batch's transposed convolutions skip zero columns or not by the batch's density)
    small = list(project_top_units(model, x, topk, guided=True, max_units=7, batch_size=3))
    assert all(len(s.channels) <= 2 for s in small) and len(small) > 40
    for name, r in zip(layers, chunks):
        parts = [s for s in small if s.layer == name]
        assert sum((s.channels for s in parts), []) == r.channels
        assert rel(torch.cat([s.deconv.values for s in parts]), r.deconv.values) < 1e-12
        assert rel(torch.cat([s.guided.values for s in parts]), r.guided.values) < 1e-12
        assert torch.equal(torch.cat([s.patches for s in parts]), r.patches)


def test_stream_input_and_chosen_channels():
    """A stream is read through take() only for the images the units need; ``channels`` picks maps, in order."""
    model = _zfnet()
    x = images(12, 64, DT, scale=50.0)
    topk = top_activations(model, x, ["conv2", "conv4"], k=2)
    stream = Stream(x)
    chans = {"conv4": [5, 1], "conv2": [3]}
    got = list(project_top_units(model, stream, topk, channels=chans))
    assert [(r.layer, r.channels) for r in got] == [("conv2", [3]), ("conv4", [5, 1])]  # topk's layer order
    need = torch.unique(torch.cat([topk[name].image_index[c].reshape(-1) for name, c in chans.items()]))
    assert stream.taken == len(need)  # one forward group: each needed image fetched once
    for r in got:
        _check_chunk(r, model, x, topk, guided=False)


def test_missing_images_give_zero_projections():
    """A map with fewer than k images (image_index -1) gets zero projections and patches there."""
    model = _zfnet()
    x = images(4, 64, DT, scale=50.0)
    t = top_activations(model, x, ["conv3"], k=2)["conv3"]
    t = TopK(t.values.clone(), t.image_index.clone(), t.y.clone(), t.x.clone())
    t.image_index[0, 1] = -1
    (r,) = project_top_units(model, x, {"conv3": t}, channels={"conv3": [0, 1]}, guided=True)
    assert r.deconv.values[1].abs().max() == 0 and r.guided.values[1].abs().max() == 0
    assert r.patches[1].abs().max() == 0 and int(r.units["image_index"][1]) == -1
    n, pos = t.image_index[:2].reshape(-1)[[0, 2, 3]], torch.stack([t.y[:2].reshape(-1), t.x[:2].reshape(-1)], 1)
    ref = project(model, x[n], "conv3", torch.tensor([0, 1, 1]), pos[[0, 2, 3]])
    assert rel(r.deconv.full()[[0, 2, 3]], ref) < 1e-10


@pytest.mark.parametrize("arch,layers", [("resnet18", ["layer1", "layer3.1"]), ("vgg16", ["features.8", "features.29"])])
def test_torchvision_models(arch, layers):
    """resnet18 (not a chain: the autograd fallback, full frames) and vgg16 (the fast engine) at 64 px."""
    model = tv_model(arch, dtype=DT)
    x = images(5, 64, DT)
    topk = top_activations(model, x, layers, k=2)
    chans = {name: [0, 7] for name in layers}
    for r in project_top_units(model, x, topk, channels=chans, guided=True, batch_size=4):
        assert r.deconv.values.shape[-2:] == ((64, 64) if arch == "resnet18" else r.deconv.values.shape[-2:])
        _check_chunk(r, model, x, topk, guided=True)


def test_errors_name_the_argument():
    model = _zfnet()
    x = images(3, 64, DT)
    topk = top_activations(model, x, ["conv1"], k=1)
    with pytest.raises(KeyError, match="conv9"):
        list(project_top_units(model, x, topk, channels={"conv9": [0]}))
    with pytest.raises(ValueError, match=r"channels\['conv1'\]"):
        list(project_top_units(model, x, topk, channels={"conv1": [99]}))
    with pytest.raises(ValueError, match="max_units"):
        list(project_top_units(model, x, topk, max_units=0))


@pytest.mark.parametrize("stride, kernel, c_out", [((1, 1), (3, 3), 5), ((2, 2), (7, 7), 3), ((2, 1), (5, 4), 48)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_conv_transpose_equals_torch(stride, kernel, c_out, dtype):
    """The element-sparse transposed convolution against torch's dense one: zero units, zero positions, zero
    elements and dense ones; channels-last or not; the same bytes at 1 and 2 threads."""
    from zfnet.analysis.deconvnet import sparse
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 7, 6, generator=g, dtype=dtype)
    x = x * (torch.rand(4, 1, 7, 6, generator=g) > 0.4)  # whole positions zero
    x[torch.rand(4, 16, 7, 6, generator=g) < 0.7] = 0  # and elements
    x[1] = 0  # a unit with nothing
    x[2] = torch.randn(16, 7, 6, generator=g, dtype=dtype)  # a dense one
    w = torch.randn(16, c_out, *kernel, generator=g, dtype=dtype)
    ref = torch.nn.functional.conv_transpose2d(x, w, stride=stride)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            for inp in (x, x.contiguous(memory_format=torch.channels_last)):
                outs.append(sparse.conv_transpose(inp, w, stride))
    finally:
        torch.set_num_threads(threads)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    for out in outs:
        assert out.shape == ref.shape and out.dtype == dtype and rel(out, ref) < tol
        assert torch.equal(out, outs[0])
    assert float(outs[0][1].abs().max()) == 0.0
    assert sparse.wins(x[:2], 1, (1, 1)) and not sparse.wins(x[2:3], 1, (1, 1))
    assert not sparse.wins(x[:2], 2, (1, 1)) and not sparse.wins(x[:2].half(), 1, (1, 1))


def test_sparse_kernels_keep_torchs_thread_count():
    """numba's OpenMP pool shares torch's OpenMP runtime: starting it must not raise the runtime's thread count
    behind torch's back (torch set to 1 thread once silently ran on every core). Run in a fresh process, where
    the pool starts."""
    code = ("import re, torch\n"
            "torch.set_num_threads(1)\n"
            "from zfnet.analysis.deconvnet import sparse\n"
            "x = torch.zeros(2, 4, 3, 3); x[0, 1, 1, 1] = 1\n"
            "sparse.conv_transpose(x, torch.randn(4, 3, 3, 3), (1, 1))\n"
            "info = torch.__config__.parallel_info()\n"
            "print(torch.get_num_threads(), re.search(r'omp_get_max_threads\\(\\) : (\\d+)', info).group(1))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "NUMBA_NUM_THREADS": "2",
                              "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}).stdout.split()
    assert out == ["1", "1"]
