"""Schema of what a run reports: the HTML ``report`` and W&B tracking (``wandb``)."""

from __future__ import annotations

from typing import List, Literal, Optional

from zfnet.schema.types import Group, NonNegFloat, PosFloat, Str


class Report(Group):
    out: Str
    tables_dir: Str
    title: Str
    figure_folders: List[Str]


class Wandb(Group):
    project: Str
    entity: Optional[Str]
    mode: Literal["online", "offline", "disabled"]
    group: Optional[Str]
    name: Optional[Str]
    dir: Optional[Str]
    log_checkpoints: bool
    init_timeout: PosFloat = 10.0  # optional: seconds wandb.init may wait for the server
    finish_timeout: NonNegFloat = 600.0  # optional: seconds finish may wait for uploads (0: until done)
    quiet: bool = True  # optional: W&B's own console messages off (one line per stage instead)
