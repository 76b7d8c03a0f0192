"""DVC stage `demo_data`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.io import write_text
from zfnet.parallel import capped
from zfnet.reduced_run import datasets
from zfnet.schema import validate
from zfnet.tracking import start_run

NOT_GENERATED = "NOT_GENERATED.md"


def run(cfg: DictConfig) -> dict:
    """Generate the demo's synthetic datasets under ``demo_data.out_dir``, but only when a configured dataset
    root lies there: a run on real data (``profile=paper``) writes only a note saying so, and no stage then
    reads anything under that folder."""
    cfg = capped(validate(cfg), "demo_data.workers")  # a wrong type or range fails here, naming the key
    out = Path(cfg.demo_data.out_dir)
    users = [d for d in datasets(cfg) if d["synthetic"]]
    if not users:
        roots = "\n".join(f"- {d['what']} (`{d['key']}`): {d['path']}" for d in datasets(cfg))
        write_text(out / NOT_GENERATED, f"# No demo data generated\n\nProfile `{cfg.get('profile')}` reads no "
                   f"dataset under `{out}`, so the demo generator did not run. The run reads:\n\n{roots}\n")
        print(f"demo_data: nothing generated: no configured dataset root lies under {out} (profile {cfg.get('profile')})")
        return {}
    from zfnet.data.demo import generate

    summary = generate(cfg.demo_data, cfg.demo_data.out_dir)
    with start_run(cfg, "demo_data") as tracker:
        tracker.summary({"demo_data": summary})
    return summary
