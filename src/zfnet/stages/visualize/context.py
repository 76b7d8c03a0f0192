"""What the visualize parts share, each piece built on first use (a part's stage reads only the config keys
and files its part needs), and :func:`run_parts`, the one code path that runs any of them."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import torch

from zfnet.models.weights import build_model
from zfnet.figures import index
from zfnet.stages.visualize.stream import FolderStream, ValidationStream, image_limit


class Context:
    """The config's visualize inputs: ``stream`` (the images, :mod:`zfnet.stages.visualize.stream`), ``classes``
    (class names), ``model`` / ``arch`` (``visualize.checkpoint`` or a user's ``visualize.model``), ``mean``
    (what the stream subtracted, for display); ``own``: our model with the paper's layers (``visualize.layers``
    null), else ``layers``, the user's layer paths. ``images`` / ``batch_size``: the stream's, when another
    stage's keys give them (the atlas's); default ``visualize.images`` / ``visualize.batch_size``."""

    def __init__(self, cfg, images=None, batch_size=None):
        self.cfg, self.v = cfg, cfg.visualize
        self._images = self.v.images if images is None else images
        self._batch_size = self.v.batch_size if batch_size is None else batch_size
        self.out = Path(self.v.out_dir)
        self.prepared = Path(cfg.prepare.out_dir)
        self.folder = self.v.get("image_folder")
        self.layers = list(self.v.get("layers") or [])
        self.own = not self.layers

    @cached_property
    def stream(self) -> FolderStream | ValidationStream:
        limit, batch = image_limit(self._images), int(self._batch_size)
        if self.folder:
            return FolderStream(self.cfg, self.folder, limit, batch)
        return ValidationStream(self.prepared, int(self.cfg.data.crop), limit, batch)

    @cached_property
    def mean(self) -> torch.Tensor:
        return self.stream.mean

    @cached_property
    def classes(self) -> list[str]:
        """The prepared classes' names; a user's model on an image folder: the folder's classes, in order."""
        file = self.prepared / "classes.json"
        names = json.loads(file.read_text())["names"] if file.is_file() else []
        if self.folder and (self.v.get("model") or not names):
            names = self.stream.names
        return names

    @cached_property
    def _model_arch(self) -> tuple[torch.nn.Module, str]:
        return build_model(self.v, len(self.classes) or 1000)

    @property
    def model(self) -> torch.nn.Module:
        return self._model_arch[0]

    @property
    def arch(self) -> str:
        return self._model_arch[1]


def run_parts(cfg, parts) -> dict[str, list[str]]:
    """Run the visualize ``parts`` (modules of :mod:`zfnet.stages.visualize`, in order) on one shared
    :class:`Context`; returns every figure group they wrote. Each part's folders exist afterwards, empty when
    its figures do not apply (DVC's outputs), and its figures are listed in ``index/<part>.json``."""
    ctx = Context(cfg)
    figures: dict[str, list[str]] = {}
    for part in parts:
        found = part.run(ctx)
        for folder in part.FOLDERS:
            (ctx.out / folder).mkdir(parents=True, exist_ok=True)
        index.write(ctx.out, part.NAME, found)
        figures.update(found)
    return figures
