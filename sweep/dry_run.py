"""The ``--dry-run`` summary: trials per axis, the total, and the first trial configs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sweep.spaces import GRID, SearchSpace, count_trials, is_sampled, iter_grid

SHOWN_TRIALS = 5


def _sample(value: Any) -> Any:
    return value.sample() if is_sampled(value) else value


def sample_trial_configs(space: SearchSpace) -> Iterator[dict[str, Any]]:
    """Yield one flat config per grid point of every study, sampled axes drawn once."""
    for study in space.studies:
        for config in iter_grid(study):
            yield {key: _sample(value) for key, value in config.items()}


def describe_distribution(value: Any) -> str:
    """Return a Tune distribution as text, e.g. ``log-uniform 0.25 to 64``."""
    sampler = type(value.get_sampler()).__name__.strip("_").lower()
    kind = {"loguniform": "log-uniform"}.get(sampler, sampler)
    low, high = getattr(value, "lower", None), getattr(value, "upper", None)
    return f"{kind} {low:g} to {high:g}" if low is not None and high is not None else kind


def _format_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_format_value(v)}" for k, v in value.items()) + "}"
    if is_sampled(value):
        return f"<{describe_distribution(value)}>"
    return json.dumps(value) if not isinstance(value, str) else value


def describe_space(space: SearchSpace, shown: int = SHOWN_TRIALS) -> str:
    """Return a text summary of a space: per study, each axis with its size, the constants and the total."""
    lines = [
        f"space {space.name}: {space.description}",
        f"metric {space.metric} ({space.mode}); resources per trial {dict(space.resources)}",
    ]
    total = 0
    for study in space.studies:
        sizes, trials = count_trials(study)
        total += trials
        searcher = "grid" if study.search_alg is None else "model-based search"
        scheduler = "no early stopping" if study.scheduler is None else "early stopping"
        lines.append(f"\nstudy {study.name}: {trials} trials ({searcher}, {scheduler})")
        for key, value in study.param_space.items():
            if isinstance(value, dict) and set(value) == {GRID}:
                values = ", ".join(_format_value(v) for v in value[GRID])
                lines.append(f"  {key:<16} {sizes[key]:>4}  {values}")
            elif is_sampled(value):
                lines.append(f"  {key:<16} {study.num_samples:>4}  {_format_value(value)}")
        if study.num_samples > 1 and study.search_alg is None:
            lines.append(f"  {'(repeats)':<16} {study.num_samples:>4}  the grid is repeated")
        constants = {
            k: v
            for k, v in study.param_space.items()
            if not (isinstance(v, dict) and set(v) == {GRID}) and not is_sampled(v)
        }
        lines.append("  constants: " + ", ".join(f"{k}={_format_value(v)}" for k, v in constants.items()))
    lines.append(f"\ntotal: {total} trials")
    configs = [config for study in space.studies for config in iter_grid(study)]
    lines.append(f"first {min(shown, len(configs))} of {len(configs)} trial configs (<...>: drawn by the search):")
    for index, config in enumerate(configs[:shown]):
        lines.append(f"  {index + 1}. " + " ".join(f"{k}={_format_value(v)}" for k, v in config.items()))
    return "\n".join(lines)
