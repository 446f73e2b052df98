"""What a value may be. A rule takes a value and returns what is wrong with it, in words that
follow "key=value: ", or None. The config's rules are in vaelab.config.schema; a model's own
arguments have theirs on the model class (`rules`), a prior's and a posterior's on theirs."""

import math
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from vaelab.errors import ConfigError

Rule = Callable[[Any], str | None]
_ABSENT = object()


def int_at_least(low: int) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be an integer >= {low}"
        return None

    return check


def number(positive: bool) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value):
            return "must be a finite number"
        if value < 0 or (positive and value == 0):
            return "must be > 0" if positive else "must be >= 0"
        return None

    return check


def one_of(*allowed: str) -> Rule:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def or_null(rule: Rule) -> Rule:
    def check(value: Any) -> str | None:
        return None if value is None else rule(value)

    return check


def in_unit_interval(low_open: bool) -> Rule:
    def check(value: Any) -> str | None:
        problem = number(positive=low_open)(value)
        if problem or value > 1:
            return "must be in (0, 1]" if low_open else "must be in [0, 1]"
        return None

    return check


def positive_numbers(value: Any) -> str | None:
    numbers = isinstance(value, (list, ListConfig)) and value
    if numbers and all(number(positive=True)(v) is None for v in value):
        return None
    return "must be a list of numbers > 0, e.g. [0.1,1,10]"


def check(values: Any, rules: Mapping[str, Rule], prefix: str = "") -> None:
    """Raise ConfigError for the first key of `rules` (dotted, under `values`) whose value breaks
    its rule; keys absent from `values` are not checked, a key set to null is. `prefix` is how
    the keys are named in the message (model.)."""
    config = values if isinstance(values, DictConfig) else OmegaConf.create(dict(values))
    for key, rule in rules.items():
        value = OmegaConf.select(config, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        problem = rule(value)
        if problem:
            raise ConfigError(f"{prefix}{key}={value!r}: {problem}")
