"""The configuration's schema: every key's type and allowed range, checked before a stage does anything.

``conf/`` holds the values; this package holds what a value may be, as pydantic models (one per config
group, :mod:`zfnet.schema.config` composes them): annotated types for ranges (``Field(ge=...)``),
``Literal`` for choices, strict types, no unknown keys, model validators for the rules that relate keys
(``data.crop <= data.resize``, ...). It is the one place these rules live: the stages, the demo generator,
training and ``zfnet.models.build`` all rely on it.

``validate(cfg)`` is the first call of every stage's ``run(cfg)``. Every problem found lands in one
``ConfigError`` (a ``ValueError``) whose message reads ``conf error: train.epochs=-1: expected an int >= 1``
(:mod:`zfnet.schema.errors` words them); an unknown key names the closest known one. The pipelines' entry
points print it as one line and exit with status 2 (``exit_on_config_error``). Keys a partial config
leaves out are not required here; the code that reads them says so. Optional keys (``wandb.init_timeout``,
``wandb.finish_timeout``, ``wandb.quiet``, ``prepare.fast_decode``) carry their default in the schema for
reference. A new key in ``conf/`` needs its field here (tests/test_schema.py composes every profile and
validates it).
"""

from zfnet.schema.check import check_group, validate
from zfnet.schema.config import Config
from zfnet.schema.errors import ConfigError, describe, exit_on_config_error
from zfnet.schema.train import PRECISIONS
from zfnet.schema.types import UNSET

__all__ = ["Config", "ConfigError", "PRECISIONS", "UNSET", "check_group", "describe", "exit_on_config_error",
           "validate"]
