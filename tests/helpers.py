"""Shared test helpers (imported by tests as ``from helpers import ...``; tests never import each other, and
never import ``conftest``, which holds fixtures only): repo paths, running commands, the tiny pipeline's repo,
reading an offline W&B run, small models and images."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def tv_model(name: str, seed: int = 0, dtype=torch.float32, num_classes: int = 10) -> nn.Module:
    """A torchvision architecture with random weights (eval mode); fc biases random so classes differ."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.bias, 0.0, 0.1)
            if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics in eval mode
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


def images(n: int, hw: int, dtype=torch.float32, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, hw, hw, generator=g) * scale).to(dtype)


def occlude(x: torch.Tensor, y: int, x0: int, size: int, fill: float = 0.0) -> torch.Tensor:
    c = x.clone()
    c[..., y : y + size, x0 : x0 + size] = fill
    return c


def photo_folder(root, per_class: int, hw: tuple[int, int], seed: int = 0):
    """An ImageFolder tree ``root/photos/{cat,dog}/<i>.png`` of random RGB images; returns the folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "photos"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    return folder


def user_model_config(tmp_path, resize: int, crop: int, history: str = "none.csv", **visualize):
    """The visualize stage's config for a user's model (``torchvision:resnet18`` on ``tmp_path/photos``, no
    training of ours): the shared skeleton, with ``visualize`` keys given by the test over it."""
    from omegaconf import OmegaConf

    none = str(tmp_path / "none")
    return OmegaConf.create({
        "seed": 0, "data": {"resize": resize, "crop": crop}, "prepare": {"out_dir": none},
        "train": {"history_path": str(tmp_path / history)}, "demo_data": {"out_dir": none},
        "visualize": {
            "out_dir": str(tmp_path / "figures"), "checkpoint": "unused", "checkpoints_dir": str(tmp_path),
            "tables_dir": str(tmp_path / "tables"), "curves_dir": None, "batch_size": 64,
            "correspondence": {"class": "x", "images": 2, "size": None, "repeats": 1},
            "fig6": {"alexnet": "none", "zfnet": "none", "zfnet_noclip": "none"},
            "model": "torchvision:resnet18", "image_folder": str(tmp_path / "photos"),
        } | visualize,
    })


def figure_index(figures_dir) -> dict[str, list[str]]:
    """Every figure group the visualize parts listed: ``<figures_dir>/index/<part>.json`` merged (read here
    as the files are, not through the report's reader)."""
    import json
    from pathlib import Path

    merged: dict[str, list[str]] = {}
    for path in sorted((Path(figures_dir) / "index").glob("*.json")):
        groups = json.loads(path.read_text())
        assert not set(groups) & set(merged), f"{path}: a group another part lists"
        merged.update(groups)
    return merged


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a command the tests then signal: SIGINT and SIGHUP at their defaults, as a command
    started from a terminal has them (a shell without job control, `cmd &` or nohup, starts its children
    with them ignored, and an ignored disposition is inherited through exec and rightly kept by the stages)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def sh(args, cwd, env, timeout=None):
    # a hang guard, not a speed target: 25 minutes (the tiny pipeline takes about 6 on 2 idle cores);
    # ZFNET_TEST_SH_TIMEOUT raises it on a loaded machine
    timeout = timeout or float(os.environ.get("ZFNET_TEST_SH_TIMEOUT", 1500))
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class PipelineRun:
    work: Path  # the temporary git repo the pipeline ran in
    env: dict  # the environment it ran with (W&B offline, runs under work/wandb)
    first: str  # output of the first `dvc repro`
    second: str  # output of the second (nothing to do)
    status: str  # output of `dvc status` afterwards


def pipeline_env(work: Path, **extra) -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "WANDB_MODE": "offline", "WANDB_DIR": str(work), "DVC_NO_ANALYTICS": "1",
           "WANDB_DATA_DIR": str(work / "wandb-data"), **extra}  # offline artifacts' files stay in work, not ~
    env.pop("WANDB_SILENT", None)
    return env


def tiny_repo(work: Path) -> dict:
    """A git repo at ``work``: the tracked files as they are in the working tree (untracked files may be
    outputs of a local run), params.yaml composed for the tiny profile, one commit. Returns its environment."""
    files = subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    env = pipeline_env(work)
    sh([sys.executable, "-m", "zfnet.config", "--out", str(work / "params.yaml"), "profile=tiny"], work, env)
    sh(["git", "init", "-q"], work, env)
    sh(["git", "add", "-A"], work, env)
    # a fixed date: two copies of the same files are the same commit (the report shows its revision)
    dated = {**env, "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], work, dated)
    return env


# --- reading an offline run's transaction log (LevelDB-log framed protobuf ``Record``s of the SDK's schema)---------------------------------------------------
_BLOCK = 32768
_HEADER = struct.Struct("<IHB")  # crc32, length, chunk type
_FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> Iterator[Any]:
    """Yield ``wandb_internal_pb2.Record`` messages from a ``.wandb`` transaction log."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = _FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log (header {ident!r} {magic:#x})")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER.size:  # block trailer padding
            pos += left_in_block
            continue
        crc, length, kind = _HEADER.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding at the end of a block
            pos += left_in_block
            continue
        chunk = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(chunk) < length:
            break  # a run still being written
        pos += _HEADER.size + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def offline_records(log: Path, timeout: float = 60.0) -> list:
    """The records of an offline run's transaction log once the SDK has written all of it (its ``exit``
    record): ``run.finish()`` can return while W&B's service process is still flushing the file."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(read_records(log))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def demo_conf(**over) -> dict:
    """The demo generator's settings as conf/demo_data/demo.yaml gives them (the one copy), ``over`` merged
    over its top-level keys."""
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "demo_data" / "demo.yaml"))
    return conf | over


ATLAS_MARKUP_CLASS = 'cls <b>&amp;</b> "q"'  # a class name that must be shown as text, never as markup


def fake_atlas(root: Path) -> Path:
    """A small atlas folder as the atlas stage writes it (its contract), made by hand: conv1 (6 units) and
    conv2 (5), real PNGs (each a colour of its own), some fields null (selectivity, IoU, ablation, synthesis,
    evolution, guided; conv2 unit 0 without deconv: its thumbnail falls back to its patches), three units with a
    concept, ties in ``mean``, a class name with markup, report links to ``root/figures/x.png``, and the report
    page ``root/index.html``. Returns ``root/atlas``."""
    import json

    import numpy as np
    from PIL import Image

    atlas = root / "atlas"
    colour = iter(range(1, 10_000))

    def png(rel: str, size: tuple[int, int]) -> str:
        path = atlas / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        c = next(colour)
        Image.fromarray(np.full((size[1], size[0], 3), (c * 37 % 256, c * 91 % 256, c * 13 % 256), np.uint8)).save(path)
        return rel

    (root / "figures").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(root / "figures/x.png")
    (root / "index.html").write_text("<!doctype html><title>report</title><p>the report</p>")
    classes = ["n01440764", "n02102040", ATLAS_MARKUP_CLASS]
    # per layer, per unit: mean, max, fire_rate, selectivity, iou, ablation, concept, top class (index)
    values = {"conv1": [(0.5, 3.0, 0.40, 0.30, None, 0.010, None, 2), (0.2, 5.0, 0.10, None, 0.12, None, "red", 0),
                        (0.5, 1.0, 0.70, 0.90, None, 0.030, None, 1), (0.9, 2.5, 0.20, 0.10, 0.05, -0.002, "stripes", 0),
                        (0.1, 4.0, 0.55, None, None, None, None, 2), (0.7, 0.5, 0.05, 0.60, 0.30, 0.020, "red", 1)],
              "conv2": [(1.5, 9.0, 0.3, 0.2, None, None, None, 0), (0.3, 7.0, 0.6, 0.5, 0.2, 0.05, "grass", 1),
                        (2.5, 8.0, 0.1, None, None, 0.01, None, 1), (0.8, 6.0, 0.9, 0.7, None, None, None, 0),
                        (1.1, 9.5, 0.4, 0.1, None, 0.0, None, 2)]}
    layers = []
    for layer, rows in values.items():
        units = []
        for n, (mean, mx, fire, sel, iou, abl, concept, top) in enumerate(rows):
            images = {kind: png(f"img/{layer}/{n:04d}_{kind}.png", (26, 26)) for kind in ("patches", "deconv", "guided")}
            images["synthesis"] = png(f"img/{layer}/{n:04d}_synthesis.png", (16, 16)) if n % 2 == 0 else None
            images["evolution"] = png(f"img/{layer}/{n:04d}_evolution.png", (40, 12)) if n % 3 != 1 else None
            if (layer, n) == ("conv1", 4):
                images["guided"] = None
            if (layer, n) == ("conv2", 0):
                images["deconv"] = None
            others = [c for c in classes if c != classes[top]]
            units.append({
                "unit": n, "mean": mean, "max": mx, "fire_rate": fire, "selectivity": sel, "top_class": classes[top],
                "top_classes": [[classes[top], 2], [others[0], 1]], "concept": concept, "iou": iou, "ablation": abl,
                "images": images,
                "top": [{"image_index": 10 * n + r, "class": (classes[top], classes[top], others[0])[r],
                         "value": mx - r * 0.25, "y": r, "x": 2 * r} for r in range(3)],
                "report_links": [{"label": f"Fig. 2, {layer}", "href": "../figures/x.png"}] if n < 2 else []})
        (atlas / "data").mkdir(parents=True, exist_ok=True)
        (atlas / f"data/{layer}.json").write_text(json.dumps({"layer": layer, "units": units}))
        layers.append({"name": layer, "units": len(units), "file": f"data/{layer}.json"})
    (atlas / "data/atlas.json").write_text(json.dumps({
        "model": {"arch": "zfnet", "source": "models/zfnet/model.pt"}, "images": 200, "k": 3, "layers": layers,
        "coverage": {"projections": "every unit", "synthesis": "units 0, 2, 4 of each layer",
                     "ablation": "most units", "dissection": "<no probe set>"},
        "report": "../index.html"}))
    return atlas


class Dom(HTMLParser):
    """An HTML page as the browser's parser sees it: start tags (name, attributes) in order, and the text
    (entities decoded)."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]
