"""The cost of Ray Tune and MLflow around training: the smoke sweep against segcore alone.

Runs ``python -m sweep.run --space smoke`` on a data root in a fresh folder,
reads each trial's wall time from its MLflow run (start to end), then trains the
same trial configurations one after another with ``train_and_evaluate`` alone,
with one torch thread as a one-CPU trial of the sweep has, and with the
decoded-sample cache already warm in both cases. Prints the sweep's wall
time, the mean time per trial in each setting and their ratio, with the machine.

    python benchmarks/sweep_overhead.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py, beside this script
from mlflow import MlflowClient

from segcore.training.config import TrainConfig
from segcore.training.loop import train_and_evaluate
from sweep import tracking
from sweep.dry_run import sample_trial_configs
from sweep.spaces import SpaceContext, apply_overrides, load_space, parse_override
from sweep.trainable import SweepContext, build_train_config


def run_sweep(workdir: Path, data_root: str | None, overrides: list[str]) -> float:
    command = [
        sys.executable,
        "-m",
        "sweep.run",
        "--space",
        "smoke",
        "--name",
        "overhead",
        "--cache-dir",
        str(workdir / "cache"),
    ]
    command += ["--data-root", str(Path(data_root).resolve())] if data_root else []
    for override in overrides:
        command += ["--set", override]
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    subprocess.run(
        command, cwd=workdir, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def trial_seconds(workdir: Path) -> list[float]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("smoke").experiment_id
    runs = tracking.find_runs(client, experiment_id, {tracking.ROLE_TAG: tracking.TRIAL_ROLE})
    return [(run.info.end_time - run.info.start_time) / 1000 for run in runs]


def direct_seconds(workdir: Path, data_root: str | None, overrides: list[str]) -> list[float]:
    context = SpaceContext(data_root=Path(data_root).resolve() if data_root else None, cache_dir=str(workdir / "cache"))
    space = apply_overrides(load_space("smoke", context), dict(parse_override(o) for o in overrides))
    configs = list(sample_trial_configs(space))
    datasets = {config["dataset"]: context.dataset(config["dataset"]) for config in configs}
    sweep_context = SweepContext("direct", "smoke", "grid", "", "", "", datasets, cache_dir=str(workdir / "cache"))
    seconds = []
    torch.set_num_threads(1)  # a smoke trial gets one CPU, and Ray sets OMP_NUM_THREADS to match
    for config in configs:
        train_config: TrainConfig = build_train_config(config, sweep_context)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as output:
            train_and_evaluate(train_config, lambda metrics, folder: None, output_dir=Path(output))
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="datasets for the smoke space (default: its synthetic data)")
    parser.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE override for every trial, as in sweep.run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        direct_seconds(workdir, args.data_root, args.set)  # warms the cache and the imports
        wall = run_sweep(workdir, args.data_root, args.set)
        per_trial = trial_seconds(workdir)
        direct = direct_seconds(workdir, args.data_root, args.set)
    sweep_mean = sum(per_trial) / len(per_trial)
    direct_mean = sum(direct) / len(direct)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}")
    print(f"smoke sweep: {len(per_trial)} trials, wall time {wall:.1f} s (Ray start, data checks, trials, shutdown)")
    print(
        f"per trial in the sweep (MLflow run start to end): mean {sweep_mean:.2f} s, {', '.join(f'{s:.1f}' for s in per_trial)}"
    )
    print(
        f"per trial with train_and_evaluate alone:          mean {direct_mean:.2f} s, {', '.join(f'{s:.1f}' for s in direct)}"
    )
    print(f"overhead ratio (sweep trial / direct): {sweep_mean / direct_mean:.2f}")
    print(f"sweep wall time / sum of direct trial times: {wall / sum(direct):.2f}")


if __name__ == "__main__":
    main()
