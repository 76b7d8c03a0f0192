"""The schema's building blocks: the ``Group`` base model and the annotated types its fields use.

A group is a pydantic model checked strictly (``'0.01'`` is not a float, ``'false'`` not a bool, ``nan`` no
number: a stage would receive them as composed), with no key it does not declare (``extra="forbid"``: a typo
in ``conf/`` fails). A key a partial config leaves out is not required: every field without a default gets
``UNSET`` (never validated); the code that reads the key says so. Ranges are ``Field(ge=...)`` in the aliases
below; ``Expect`` words a rule pydantic cannot state (``and odd``), which the messages use
(:mod:`zfnet.schema.errors` describes a field from its annotation).
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, List, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # the value of a key the config leaves out


class Expect(NamedTuple):
    """Words for a rule in a field's annotation: ``alone``: the whole of "expected ..."; else a suffix."""

    text: str
    alone: bool = True


class Group(BaseModel):
    """One group of the composed config (``conf/<group>/*.yaml``)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, defer_build=True,
                              arbitrary_types_allowed=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for info in cls.model_fields.values():
            if info.is_required():  # conf/ gives the value; a partial config may leave it out
                info.default = UNSET
        cls.model_rebuild(force=True)


def given(*values: Any) -> bool:
    """Every value was in the config (a cross-key rule applies only then)."""
    return all(v is not UNSET for v in values)


def broken(problems: List[tuple]) -> None:
    """Raise the cross-key rules a group breaks: ``(key, value, expected)``, keys relative to the group,
    ``{p}`` in ``expected`` standing for the group's own prefix (``data.``)."""
    if problems:
        raise PydanticCustomError("zfnet_rule", "cross-key rule", {"problems": problems})


def check(ok: Callable[[Any], bool]) -> AfterValidator:
    """A rule on one value, worded by the field's ``Expect``."""
    def run(value: Any) -> Any:
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ValueError("rule")
        return value
    return AfterValidator(run)


def _numbers_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


Str = Annotated[str, BeforeValidator(_numbers_as_text)]  # a YAML number where a name is expected reads as text
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]                 # [0, 1]
Probability = Annotated[float, Field(ge=0, lt=1)]              # [0, 1): dropout, momentum
OpenUnit = Annotated[float, Field(gt=0, lt=1)]                 # (0, 1)
Quality = Annotated[int, Field(ge=1, le=100)]                  # JPEG quality
Seed = NonNegInt
NonEmpty = Field(min_length=1)


def exactly(n: int) -> Any:
    return Field(min_length=n, max_length=n)


__all__ = ["Expect", "Fraction", "Group", "NonEmpty", "NonNegFloat", "NonNegInt", "OpenUnit", "PosFloat", "PosInt",
           "Probability", "Quality", "Seed", "Str", "UNSET", "broken", "check", "exactly", "given", "_is_int"]
