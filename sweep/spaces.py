"""Search spaces: what a sweep trains, and how the configurations are searched.

A space is a Python module with a ``build(context) -> SearchSpace`` function,
either one of the modules in the ``search_spaces`` package, chosen by name, or
a file given by path. The parameter space uses Ray Tune's declarations
(``tune.grid_search``, ``tune.loguniform``, ...). A grid axis whose values are
dicts sets several keys together, such as a dataset with the weight schemes
that apply to it.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import math
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import search_spaces
from segcore.data.class_weights import PixelStats
from segcore.data.prepare import prepare_dataset
from segcore.metrics import VAL_IOU
from segcore.training.config import ConfigError, TrainConfig
from sweep.datasets import SYNTHETIC_DATASETS, DatasetSpec, discover_datasets, resolve_dataset

GRID = "grid_search"


class SpaceError(ValueError):
    """Raised for an unknown or invalid search space."""


@dataclass(frozen=True)
class Study:
    """One Tune run of a space: a parameter space and how it is searched.

    Attributes:
        name: Label of the study (``grid``, or a dataset name for per-dataset searches).
        param_space: Ray Tune parameter space of flat trial settings.
        num_samples: Repetitions of the grid, or samples drawn by the search algorithm.
        search_alg: Factory of the Tune search algorithm, called with the final
            parameter space; ``None`` for grid/random search.
        scheduler: Factory of the Tune trial scheduler, called with the final
            parameter space; ``None`` for no early stopping.
    """

    name: str
    param_space: dict[str, Any]
    num_samples: int = 1
    search_alg: Callable[[dict[str, Any]], Any] | None = None
    scheduler: Callable[[dict[str, Any]], Any] | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A named sweep: its studies, the metric they optimise, and per-trial resources.

    Attributes:
        seeds: Seeds each cell (configuration without the seed) should have;
            the report flags cells with fewer.
        resources: ``{"cpu": n, "gpu": f}`` per trial; the command line can override.
        max_failures: Retries of a failed trial from its last checkpoint.
    """

    name: str
    description: str
    studies: tuple[Study, ...]
    metric: str = VAL_IOU
    mode: str = "max"
    seeds: int = 1
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    max_failures: int = 2


@dataclass
class SpaceContext:
    """Facts about the machine and the data that a space's ``build`` function can use.

    Attributes:
        data_root: Folder holding one sub-folder per dataset, or ``None``.
        dataset_paths: Folders given per dataset name, overriding the data root.
        cache_dir: Decoded-sample cache folder (``None``: the default).
        overrides: Settings given with ``--set``; they apply to every trial.
    """

    data_root: Path | None = None
    dataset_paths: dict[str, Path] = field(default_factory=dict)
    cache_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def dataset(self, name: str) -> DatasetSpec:
        """Return the resolved spec of dataset ``name``."""
        return resolve_dataset(name, self.data_root, self.dataset_paths)

    def available_datasets(self) -> list[str]:
        """Return the datasets under the data root, or the synthetic ones without a data root."""
        if self.data_root is None:
            return sorted(self.dataset_paths) or list(SYNTHETIC_DATASETS)
        return discover_datasets(self.data_root)

    def pixel_stats(self, name: str, **settings: Any) -> PixelStats:
        """Prepare dataset ``name`` (through the cache) and return its training pixel statistics."""
        values = {**self.dataset(name).data_settings(), **self.overrides, **settings, "cache_dir": self.cache_dir}
        return prepare_dataset(TrainConfig.from_dict(values).data).pixel_stats("train")


def available_spaces() -> list[str]:
    """Return the names of the spaces shipped in the ``search_spaces`` package."""
    return sorted(
        module.name for module in pkgutil.iter_modules(search_spaces.__path__) if not module.name.startswith("_")
    )


def load_space(name_or_path: str, context: SpaceContext) -> SearchSpace:
    """Load a space by name from ``search_spaces``, or from a Python file path, and build it.

    Raises:
        SpaceError: for an unknown name (listing the available spaces), a file
            without ``build``, or a ``build`` that returns something else.
    """
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise SpaceError(f"search space file {path} not found")
        spec = importlib.util.spec_from_file_location(f"search_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif name_or_path in available_spaces():
        module = importlib.import_module(f"search_spaces.{name_or_path}")
    else:
        raise SpaceError(
            f"unknown search space {name_or_path!r}; available: {', '.join(available_spaces())}, or a path to a .py file"
        )
    if not hasattr(module, "build"):
        raise SpaceError(f"search space module {module.__name__} has no build(context) function")
    space = module.build(context)
    if not isinstance(space, SearchSpace):
        raise SpaceError(f"build() of {module.__name__} returned {type(space).__name__}, not a SearchSpace")
    return space


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE``; the value is read as JSON when it parses, else kept as a string."""
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise SpaceError(f"override {text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if value == "null":
        value = None
    return key.strip(), value


def apply_overrides(space: SearchSpace, overrides: Mapping[str, Any]) -> SearchSpace:
    """Return ``space`` with ``overrides`` replacing the same keys in every study.

    A grid axis overridden by a constant disappears from the grid, so
    ``seed=0`` turns a five-seed grid into a one-seed grid; an override whose
    value is ``{"grid_search": [...]}`` (``--grid`` on the command line) makes
    or replaces a grid axis.
    """
    if not overrides:
        return space
    valid = set(TrainConfig.field_names())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise SpaceError(
            f"unknown setting(s) {', '.join(unknown)} in --set; valid settings: {', '.join(sorted(valid))}"
        )
    studies = []
    for study in space.studies:
        param_space = dict(study.param_space)
        for key, value in overrides.items():
            for axis, axis_value in list(param_space.items()):
                # A coupled axis loses the overridden key from each of its dict values.
                if _is_grid(axis_value) and all(isinstance(v, dict) for v in axis_value[GRID]):
                    reduced = [{k: v for k, v in item.items() if k != key} for item in axis_value[GRID]]
                    unique = {json.dumps(item, sort_keys=True): item for item in reversed(reduced)}
                    param_space[axis] = {GRID: list(reversed(unique.values()))}
            param_space[key] = value
        studies.append(replace(study, param_space=param_space))
    return replace(space, studies=tuple(studies))


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {GRID}


def is_sampled(value: Any) -> bool:
    """Return whether ``value`` is a Tune distribution (sampled, not a grid or a constant)."""
    return hasattr(value, "sample") and hasattr(value, "get_sampler")


def flatten_trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Merge dict values of keys that are not settings (coupled grid axes) into one flat dict."""
    fields = set(TrainConfig.field_names())
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and key not in fields:
            for inner_key, inner_value in value.items():
                if inner_key in flat:
                    raise ConfigError(f"setting {inner_key!r} is set by axis {key!r} and elsewhere")
                flat[inner_key] = inner_value
        else:
            if key in flat:
                raise ConfigError(f"setting {key!r} is set by a coupled axis and elsewhere")
            flat[key] = value
    return flat


def axis_names(space: SearchSpace) -> list[str]:
    """Return the flat settings that vary across a space's trials (grid or sampled), in order."""
    names: list[str] = []
    for study in space.studies:
        for key, value in study.param_space.items():
            if _is_grid(value):
                if all(isinstance(v, dict) for v in value[GRID]):
                    inner = [
                        k
                        for k in dict.fromkeys(k for v in value[GRID] for k in v)
                        if len({json.dumps(v.get(k), sort_keys=True) for v in value[GRID]}) > 1
                    ]
                    names += inner
                elif len(value[GRID]) > 1:
                    names.append(key)
            elif is_sampled(value):
                names.append(key)
    if len(space.studies) > 1 and "dataset" not in names:
        names.insert(0, "dataset")
    return list(dict.fromkeys(names))


def seeds_per_cell(space: SearchSpace) -> int:
    """Return the seeds each cell gets: the size of the seed grid, 1 for a fixed seed.

    This follows ``--set seed=...`` and ``--grid seed=[...]``; a space that
    leaves the seed out declares its count in ``SearchSpace.seeds``.
    """
    counts = []
    for study in space.studies:
        seed = study.param_space.get("seed")
        if _is_grid(seed):
            counts.append(len(seed[GRID]))
        elif seed is not None:
            counts.append(1)
    return max(counts) if counts else space.seeds


def count_trials(study: Study) -> tuple[dict[str, int], int]:
    """Return the size of every grid axis and the number of trials of ``study``."""
    sizes = {key: len(value[GRID]) for key, value in study.param_space.items() if _is_grid(value)}
    return sizes, math.prod(sizes.values()) * study.num_samples


def iter_grid(study: Study) -> Iterator[dict[str, Any]]:
    """Yield the flat trial settings of every grid point; sampled values appear as their distribution."""
    grid_keys = [key for key, value in study.param_space.items() if _is_grid(value)]
    for combination in itertools.product(*(study.param_space[key][GRID] for key in grid_keys)):
        config = dict(study.param_space)
        config.update(zip(grid_keys, combination, strict=True))
        yield flatten_trial_config(config)
