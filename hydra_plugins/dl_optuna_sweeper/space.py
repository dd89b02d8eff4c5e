"""The search space: Hydra's sweep overrides as Optuna distributions, checked before any trial.

``parse`` turns ``key=choice(...)``, ``interval(...)``, ``tag(log, interval(...))`` and
``range(...)`` into distributions (a plain ``key=value`` is fixed for every trial) and refuses a
malformed one. ``check_against_config`` composes the job config as the launcher will, so that a
key that does not exist or a config-group option that does not exist is refused before the first
trial instead of failing trials one by one.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .errors import SweepError

_ABSENT = object()


@dataclass
class Space:
    """The searched keys with their distributions, and the keys fixed for every trial."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]
    lines: dict[str, str]  # each searched key's override as written, for messages

    def overrides(self, params: dict[str, object]) -> list[str]:
        """A job's overrides: these values of the searched keys, then the fixed ones."""
        return [f"{k}={v}" for k, v in {**params, **self.fixed}.items()]


def parse(arguments: Sequence[str]) -> Space:
    """The space of ``arguments`` (later ones win: a plain value on the command line fixes a key
    that the search config searches)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(arguments))
    except Exception as e:  # Hydra's parse errors are several lines; the first says it
        raise SweepError(f"the search space does not parse: {_first_line(e)}") from None
    space = Space({}, {}, {})
    for override in parsed:
        key = override.get_key_element()
        found = distribution(override)
        if found is None:
            space.fixed[key] = override.get_value_element_as_str()
            space.distributions.pop(key, None)
        else:
            space.distributions[key] = found
            space.lines[key] = override.input_line or f"{key}=..."
            space.fixed.pop(key, None)
    return space


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override (None for a plain value); a malformed one is
    a ``SweepError`` that names it."""
    if not override.is_sweep_override():
        return None
    line = override.input_line or override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", ()) or ())
    if tags - {"log"}:
        raise SweepError(f"{line}: unknown tag {', '.join(sorted(tags - {'log'}))} (only log)")
    if tags and not override.is_interval_sweep():
        raise SweepError(f"{line}: tag(log, ...) applies to an interval only")
    if override.is_choice_sweep() or (override.is_range_sweep() and sweep.shuffle):
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise SweepError(f"{line}: no values to choose from")
        return CategoricalDistribution(values)
    if override.is_range_sweep():  # Hydra's range excludes its stop, as Python's does
        if sweep.step == 0:
            raise SweepError(f"{line}: a range needs a step other than 0")
        values = list(override.sweep_iterator())
        if not values:
            raise SweepError(
                f"{line}: the range has no values (its stop is excluded, and its step must "
                "lead from start towards stop)"
            )
        low, high, step = min(values), max(values), abs(sweep.step)
        if any(isinstance(v, float) for v in (sweep.start, sweep.stop, sweep.step)):
            return FloatDistribution(float(low), float(high), step=float(step))
        return IntDistribution(int(low), int(high), step=int(step))
    if override.is_interval_sweep():
        log_scale = "log" in tags
        if sweep.start > sweep.end:
            raise SweepError(f"{line}: the interval's low end is above its high end")
        if log_scale and sweep.start <= 0:
            raise SweepError(f"{line}: a log-scale interval needs a low end above 0")
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise SweepError(f"{line}: this sweep is not supported by the Optuna sweeper")


def describe(dist: BaseDistribution) -> str:
    """A distribution in Hydra's override syntax, for messages."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(map(str, dist.choices))})"
    text = f"interval({dist.low}, {dist.high})"
    if dist.step not in (None, 1):
        text = f"range({dist.low}, {dist.high}, step {dist.step})"
    return f"tag(log, {text})" if dist.log else text


def probe_value(dist: BaseDistribution) -> object:
    """A value of the distribution to compose a probe config with: its first choice or low end."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    return dist.low


def check_against_config(
    space: Space,
    compose: Callable[[list[str]], DictConfig],
    group_options: Callable[[str], list[str]],
) -> None:
    """Refuse, in one sentence, a searched key that is not in the config, a config-group choice
    that is no option of its group, or a space that Hydra cannot compose.

    ``compose(overrides)`` composes a job's config as the launcher will; ``group_options(key)``
    lists the options of a config group ([] if ``key`` is no group). The config is composed once
    with each choice of each searched group (the other keys at their first value), so a key that
    only some group options have is found too.
    """
    groups = {}
    for key, dist in space.distributions.items():
        options = group_options(_bare(key))
        if not options:
            continue
        if not isinstance(dist, CategoricalDistribution):
            raise SweepError(f"{space.lines[key]}: a config group is searched with choice(...)")
        missing = [c for c in dist.choices if str(c) not in options]
        if missing:
            raise SweepError(
                f"{space.lines[key]}: {', '.join(map(str, missing))} is not an option of "
                f"{_bare(key)} (options: {', '.join(options)})"
            )
        groups[key] = dist.choices
    first = {key: probe_value(dist) for key, dist in space.distributions.items()}
    probes = [first] + [{**first, key: c} for key, choices in groups.items() for c in choices[1:]]
    # The config under each probe's group choices, named by them.
    configs = []
    for probe in probes:
        chosen = {k: v for k, v in probe.items() if k in groups}
        where = " ".join(f"{k}={v}" for k, v in chosen.items())
        configs.append((where, _compose(compose, space.overrides(chosen), where)))
    for key in space.distributions:
        if key in groups or key.startswith("+"):  # +key / ++key add a key: it need not exist
            continue
        missing = [where for where, config in configs
                   if OmegaConf.select(config, _bare(key), default=_ABSENT) is _ABSENT]  # fmt: skip
        if missing:
            # Missing under some group choices only: name the first of them.
            with_groups = f" with {missing[0]}" if len(missing) < len(configs) else ""
            raise SweepError(
                f"{space.lines[key]}: {_bare(key)} is not a key of the config{with_groups} "
                f"(to add a new key, write +{_bare(key)})"
            )
    for probe in probes:
        _compose(compose, space.overrides(probe), " ".join(f"{k}={v}" for k, v in probe.items()))


def _compose(compose: Callable[[list[str]], DictConfig], overrides: list[str], where: str):
    try:
        return compose(overrides)
    except Exception as e:
        with_values = f" with {where}" if where else ""
        raise SweepError(
            f"the job config does not compose{with_values}: {_first_line(e)}"
        ) from None


def _bare(key: str) -> str:
    """A key without its +/++/~ prefix and @package."""
    return key.lstrip("+~").split("@")[0]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
