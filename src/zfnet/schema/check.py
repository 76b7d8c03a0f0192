"""``validate(cfg)``: the first call of every stage's ``run(cfg)``; ``check_group``: one group on its own
(``zfnet.models.build`` checks its architecture with it)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from zfnet.schema.config import Config
from zfnet.schema.errors import ConfigError, explain_omegaconf, problems_of


def validate(cfg: Any) -> Any:
    """Check every key of ``cfg`` against the schema; return ``cfg`` itself, or raise ``ConfigError``.

    1. the config resolved (an interpolation to nowhere or a ``???`` left unset fails, named by its key);
    2. every group checked by its model (:mod:`zfnet.schema.config`): strict types, ranges and choices, no
       unknown key, the cross-key rules; all problems at once.
    ``cfg`` is never rewritten: a stage runs on exactly what was composed (fingerprints, W&B groups and
    ``ablation.variant_config``'s merges see the same keys and values).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    original = cfg
    if "hydra" in cfg:  # a config composed with return_hydra_config: the hydra node is Hydra's own
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # an interpolation to nowhere, a '???' left unset
        raise ConfigError([explain_omegaconf(err)]) from None
    check_group(Config, plain)
    return original


def check_group(model: type, values: Any, prefix: str = "") -> Any:
    """Validate plain ``values`` against the group ``model`` (keys named ``<prefix><key>``); return the model
    instance, or raise ``ConfigError``."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(problems_of(err, model, values, prefix)) from None
