"""DVC stage `claims`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> Path:
    """Every claim of the paper as a statistic of the pipeline's outputs, beside the same statistic on the
    untrained network: metrics/claims.json (findings, checks, the controls' fingerprints),
    reports/tables/claims.{csv,md} and the W&B table ``claims``. Returns the CSV's path."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.claims.collect import evaluate, metrics, table
    from zfnet.io import write_json
    from zfnet.tables import write_table

    c = OmegaConf.to_container(cfg.claims, resolve=True)
    seed = int(cfg.get("seed", 0))  # the train runs' seed: their untrained controls start from it
    fingerprints: dict[str, str] = {}
    def parts():  # Table 1's images and landmarks, as the visualize stage chose them (the untrained control's)
        if not cfg.get("visualize") or not cfg.get("data"):
            return "no visualize / data config"
        from zfnet.stages.visualize.correspondence import part_images
        from zfnet.stages.visualize.stream import mean_image

        got = part_images(cfg, mean_image(c["prepared_dir"]))
        options = OmegaConf.to_container(cfg.visualize.correspondence, resolve=True)
        return got if isinstance(got, str) else (*got, options)

    claims = evaluate(c, crop=int(cfg.data.crop) if cfg.get("data") else None, seed=seed, fingerprints=fingerprints,
                      parts=parts)
    frame = table(claims)
    write_json(cfg.claims.metrics_path, metrics(claims, fingerprints, seed))
    csv_path, _ = write_table(frame, cfg.claims.table)
    with start_run(cfg, "claims") as tracker:
        tracker.table("claims", frame)
        tracker.summary({f"{'claims' if x.kind == 'finding' else 'checks'}/{x.id}": {"holds": 1, "does not hold": 0}.get(x.verdict, -1) for x in claims})
    return csv_path
