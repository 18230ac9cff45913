"""``python -m sweep.run`` input errors: reported clearly, with exit code 2, before Ray starts."""

from __future__ import annotations

import socket

import pytest

from sweep.run import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SEGSWEEP_DATA_ROOT", raising=False)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dry_run_lists_840_trials(workdir, capsys):
    code, out, _ = run_cli(capsys, "--space", "paper_grid", "--dry-run")
    assert code == 0
    assert "total: 840 trials" in out
    assert not (workdir / "mlflow.db").exists()


def test_unknown_space_lists_available(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "paper", "--dry-run")
    assert code == 2
    assert "unknown search space 'paper'; available: ce_weights, paper_grid, smoke" in err


def test_missing_data_root_reported(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--data-root", str(workdir / "nowhere"))
    assert code == 2
    assert f"data root {workdir / 'nowhere'} does not exist" in err


def test_missing_dataset_names_expected_layout(workdir, capsys):
    (workdir / "data").mkdir()
    code, _, err = run_cli(capsys, "--space", "paper_grid", "--data-root", str(workdir / "data"))
    assert code == 2
    assert "dataset 'dermatomyositis' not found at" in err
    assert "ROOT/images/<slide>.tif" in err


def test_missing_dataset_without_data_root(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "paper_grid")
    assert code == 2
    assert "pass --data-root" in err


def test_unreachable_server_reported_before_trials(workdir, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    code, out, err = run_cli(capsys, "--space", "smoke", "--tracking-uri", uri, "--cache-dir", str(workdir / "cache"))
    assert code == 2
    assert f"MLflow tracking server {uri} is unreachable" in err
    assert not (workdir / "sweeps").exists()


def test_sqlite_in_missing_folder_reported(workdir, capsys):
    uri = f"sqlite:///{workdir}/missing/mlflow.db"
    code, _, err = run_cli(capsys, "--space", "smoke", "--tracking-uri", uri, "--cache-dir", str(workdir / "cache"))
    assert code == 2
    assert f"folder {workdir}/missing of the SQLite tracking database does not exist" in err


def test_unknown_set_key_reported(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--set", "epoch=3", "--dry-run")
    assert code == 2
    assert "unknown setting(s) epoch" in err


def test_grid_needs_list(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--grid", "seed=3", "--dry-run")
    assert code == 2
    assert "must be a non-empty JSON list" in err


def test_invalid_setting_value_reported(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--set", "app=tanh", "--cache-dir", str(workdir / "cache"))
    assert code == 2
    assert "unknown app 'tanh'" in err


def test_resume_without_sweep_reported(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--resume")
    assert code == 2
    assert "no sweep to resume" in err


def test_missing_weights_file_reported_before_trials(workdir, capsys):
    missing = workdir / "resnet18.pth"
    code, _, err = run_cli(
        capsys, "--space", "smoke", "--set", f"encoder_weights={missing}", "--cache-dir", str(workdir / "cache")
    )
    assert code == 2
    assert f"encoder weights file {missing} not found" in err
    assert not (workdir / "sweeps").exists()


def test_uncached_imagenet_weights_reported_offline(workdir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        capsys, "--space", "smoke", "--set", "encoder_weights=imagenet", "--weights-dir", str(workdir / "weights"),
        "--cache-dir", str(workdir / "cache"),
    )  # fmt: skip
    assert code == 2
    assert "imagenet weights for encoder resnet18 are not in" in err
    assert "SEGSWEEP_WEIGHTS_DIR" in err


def test_fetch_weights_lists_paper_grid_encoders():
    from sweep.fetch_weights import pretrained_encoders
    from sweep.spaces import SpaceContext, load_space

    assert pretrained_encoders(load_space("paper_grid", SpaceContext())) == [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
    ]
    assert pretrained_encoders(load_space("smoke", SpaceContext())) == []


def test_wrong_setting_type_reported(workdir, capsys):
    code, _, err = run_cli(capsys, "--space", "smoke", "--set", "epochs=abc", "--cache-dir", str(workdir / "cache"))
    assert code == 2
    assert "epochs must be an integer, got 'abc'" in err


def test_trial_larger_than_cluster_rejected():
    from sweep.tuning import ClusterError, check_resources

    with pytest.raises(ClusterError, match="each trial requests 1 GPU"):
        check_resources({"CPU": 2, "GPU": 0}, {"cpu": 1, "gpu": 1})
