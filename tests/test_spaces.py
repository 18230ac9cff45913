"""Search spaces: loading, counting, overrides and trial config conversion, without Ray."""

from __future__ import annotations

import pytest

from search_spaces.ce_weights import distinct
from segcore.data.class_weights import compute_class_weights
from segcore.training.config import ConfigError
from sweep.datasets import DatasetSpec
from sweep.dry_run import describe_space, sample_trial_configs
from sweep.spaces import (
    SpaceContext,
    SpaceError,
    apply_overrides,
    available_spaces,
    axis_names,
    count_trials,
    flatten_trial_config,
    load_space,
    parse_override,
    seeds_per_cell,
)
from sweep.trainable import SweepContext, build_train_config


def test_available_spaces_include_shipped():
    assert {"paper_grid", "ce_weights", "smoke"} <= set(available_spaces())


def test_paper_grid_has_840_trials():
    space = load_space("paper_grid", SpaceContext())
    sizes, trials = count_trials(space.studies[0])
    assert trials == 840
    assert sizes == {"task": 7, "arch": 2, "encoder": 4, "app": 3, "seed": 5}


def test_paper_grid_pairs_dedl_with_dermatomyositis_only():
    space = load_space("paper_grid", SpaceContext())
    pairs = {(c["dataset"], c["class_weights"]) for c in sample_trial_configs(space)}
    assert ("dermatomyositis", "dedl") in pairs
    assert ("isic2017", "dedl") not in pairs
    assert len(pairs) == 7


def test_paper_grid_axes_exclude_constants():
    space = load_space("paper_grid", SpaceContext())
    assert axis_names(space) == ["dataset", "class_weights", "arch", "encoder", "app", "seed"]


def test_paper_grid_declares_five_seeds():
    assert load_space("paper_grid", SpaceContext()).seeds == 5


def test_unknown_space_lists_available():
    with pytest.raises(SpaceError, match="available: ce_weights, paper_grid, smoke"):
        load_space("paper_gird", SpaceContext())


def test_space_file_by_path(tmp_path):
    path = tmp_path / "my_space.py"
    path.write_text(
        "from ray import tune\n"
        "from sweep.spaces import SearchSpace, Study\n"
        "def build(context):\n"
        "    return SearchSpace(name='mine', description='two seeds', studies=(Study('grid', {'dataset': 'synthetic-nuclei', 'seed': tune.grid_search([0, 1])}),))\n"
    )
    space = load_space(str(path), SpaceContext())
    assert count_trials(space.studies[0])[1] == 2


def test_space_file_without_build_rejected(tmp_path):
    path = tmp_path / "broken_space.py"
    path.write_text("SPACE = 1\n")
    with pytest.raises(SpaceError, match="no build"):
        load_space(str(path), SpaceContext())


def test_smoke_without_data_root_uses_synthetic():
    space = load_space("smoke", SpaceContext())
    datasets = {c["dataset"] for c in sample_trial_configs(space)}
    assert datasets == {"synthetic-nuclei", "synthetic-lesion"}


def test_smoke_discovers_shared_datasets(shared_data):
    space = load_space("smoke", SpaceContext(data_root=shared_data))
    datasets = {c["dataset"] for c in sample_trial_configs(space)}
    assert datasets == {"dsb2018_fluo_nuclei", "isic2017_val_lesion"}
    assert count_trials(space.studies[0])[1] == 4


def test_override_constant_removes_grid_axis():
    space = apply_overrides(load_space("paper_grid", SpaceContext()), {"seed": 0})
    assert count_trials(space.studies[0])[1] == 168


def test_override_inside_coupled_axis():
    space = apply_overrides(load_space("paper_grid", SpaceContext()), {"class_weights": "uniform"})
    configs = list(sample_trial_configs(space))
    assert {c["class_weights"] for c in configs} == {"uniform"}
    assert count_trials(space.studies[0])[1] == 3 * 2 * 4 * 3 * 5


def test_grid_override_adds_axis():
    space = apply_overrides(load_space("smoke", SpaceContext()), {"seed": {"grid_search": [0, 1, 2]}})
    assert count_trials(space.studies[0])[1] == 12
    assert "seed" in axis_names(space)


def test_unknown_override_rejected():
    with pytest.raises(SpaceError, match="unknown setting.*epoch"):
        apply_overrides(load_space("smoke", SpaceContext()), {"epoch": 3})


def test_parse_override_reads_json():
    assert parse_override("epochs=3") == ("epochs", 3)
    assert parse_override("resize_steps=[480]") == ("resize_steps", [480])
    assert parse_override("arch=unet") == ("arch", "unet")


def test_parse_override_without_equals_rejected():
    with pytest.raises(SpaceError, match="KEY=VALUE"):
        parse_override("epochs")


def test_flatten_merges_coupled_axis():
    flat = flatten_trial_config(
        {"task": {"dataset": "a", "class_weights": "cdw"}, "seed": 1, "layout_options": {"kind": "x"}}
    )
    assert flat == {"dataset": "a", "class_weights": "cdw", "seed": 1, "layout_options": {"kind": "x"}}


def test_flatten_rejects_collision():
    with pytest.raises(ConfigError, match="seed"):
        flatten_trial_config({"task": {"seed": 2}, "seed": 1})


def test_dry_run_text_lists_total_and_first_trials():
    text = describe_space(load_space("paper_grid", SpaceContext()))
    assert "total: 840 trials" in text
    assert "1. dataset=isic2017 class_weights=cdw arch=unet encoder=resnet18 app=none seed=0" in text


def _context(**datasets: DatasetSpec) -> SweepContext:
    return SweepContext(
        sweep_name="s",
        space_name="smoke",
        study_name="grid",
        tracking_uri="sqlite:///x.db",
        experiment_id="1",
        parent_run_id="p",
        datasets=datasets,
    )


def test_trial_config_fills_dataset_settings():
    spec = DatasetSpec(
        name="isic2017",
        layout="folder",
        root="/data/isic2017",
        preprocessing={"image_size": 224, "resize_steps": (480,), "rnorm": True},
    )
    config = build_train_config({"dataset": "isic2017", "arch": "unetplusplus", "seed": 3}, _context(isic2017=spec))
    assert config.data.root == "/data/isic2017"
    assert config.data.resize_steps == (480,)
    assert config.data.rnorm is True
    assert config.arch == "unetplusplus"


def test_trial_config_rejects_unknown_key():
    spec = DatasetSpec(name="synthetic-nuclei", layout="synthetic", root=None, layout_options={"kind": "nuclei"})
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        build_train_config(
            {"dataset": "synthetic-nuclei", "learning_rate": 0.1}, _context(**{"synthetic-nuclei": spec})
        )


def test_trial_config_rejects_unresolved_dataset():
    with pytest.raises(ValueError, match="did not resolve"):
        build_train_config({"dataset": "dermofit"}, _context())


def test_ce_weights_starts_from_cdw_and_median_frequency(shared_data, session_cache):
    context = SpaceContext(
        dataset_paths={"isic2017": shared_data / "isic2017_val_lesion"},
        cache_dir=str(session_cache),
        overrides={"max_images": 10},
    )
    space = load_space("ce_weights", context)
    searcher = space.studies[0].search_alg(space.studies[0].param_space)
    stats = context.pixel_stats("isic2017")
    expected = set()
    for scheme in ("cdw", "median_frequency"):
        background, foreground = compute_class_weights(scheme, stats)
        expected.add(round(foreground / background, 4))
    assert [study.name for study in space.studies] == ["isic2017"]
    assert [point["weight_ratio"] for point in searcher._points_to_evaluate] == distinct(sorted(expected))


def test_ce_weights_scheduler_follows_epochs():
    space = apply_overrides(load_space("ce_weights", SpaceContext(dataset_paths={})), {})
    study = space.studies[0]
    scheduler = study.scheduler({**study.param_space, "epochs": 8})
    assert scheduler._max_t == 8


def test_distinct_ratios_merge_near_duplicates():
    assert distinct([3.9513, 3.9505, 5.76]) == [3.9505, 5.76]


def test_seeds_per_cell_follows_overrides():
    space = load_space("paper_grid", SpaceContext())
    assert seeds_per_cell(space) == 5
    assert seeds_per_cell(apply_overrides(space, {"seed": 0})) == 1
    assert seeds_per_cell(apply_overrides(space, {"seed": {"grid_search": [0, 1]}})) == 2
