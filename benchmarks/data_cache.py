"""Time ``prepare_dataset`` in a first process (empty cache) and a second process (cache filled by the first).

Every trial of a sweep is a new process that calls ``prepare_dataset``. The
first one decodes, resizes and stores the samples, and the others memory-map
the stored arrays. This script measures both cases on the real shared datasets:

    python benchmarks/data_cache.py                      # ../shared/data, 3 repeats
    python benchmarks/data_cache.py --repeats 1 --data-root /path/to/data

Each repeat starts with an empty cache folder. "prepare" is the time spent in
``prepare_dataset``, "imports" the time to import ``segcore.data`` (with
albumentations and PyTorch), and "process" the wall time of the whole child
process, interpreter start and imports included. The operating system's file cache is
not cleared, so after the first repeat the source files are read from memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_model  # benchmarks/machine.py, beside this script

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPOSITORY.parent / "shared" / "data"

# The study's lesion preprocessing (bilinear resize to 480, then 224) on both shared
# datasets, and two ways of feeding the nuclei images at a size closer to their own.
CASES: dict[str, dict[str, Any]] = {
    "lesions 480->224": {"dataset": "isic2017_val_lesion", "resize_steps": [480], "image_size": 224},
    "nuclei 480->224": {"dataset": "dsb2018_fluo_nuclei", "resize_steps": [480], "image_size": 224},
    "nuclei resize 256": {"dataset": "dsb2018_fluo_nuclei", "image_size": 256},
    "nuclei tiles 256": {"dataset": "dsb2018_fluo_nuclei", "tile_size": 256},
}


def run_child(settings: dict[str, Any]) -> dict[str, Any]:
    """Prepare one dataset in this process and return the timings (child side)."""
    started = time.perf_counter()
    from segcore.data import DataConfig, prepare_dataset

    imported = time.perf_counter()
    prepared = prepare_dataset(DataConfig.from_dict(settings))
    finished = time.perf_counter()
    samples = sum(len(arrays) for arrays in prepared.splits.values())
    entry_bytes = sum(path.stat().st_size for path in prepared.folder.iterdir())
    return {
        "import_s": imported - started,
        "prepare_s": finished - imported,
        "samples": samples,
        "entry_mb": entry_bytes / 2**20,
    }


def time_process(settings: dict[str, Any]) -> dict[str, Any]:
    """Run one child process that prepares ``settings``; return its timings and its wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(settings)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPOSITORY,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"child process failed for {settings}:\n{result.stderr}")
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    timings["process_s"] = wall
    return timings


def machine_lines() -> list[str]:
    import cv2
    import numpy
    import PIL

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), load average {load}",
        f"software: Python {platform.python_version()}, NumPy {numpy.__version__}, Pillow {PIL.__version__}, "
        f"OpenCV {cv2.__version__}, {platform.system()} {platform.release()}",
    ]


def format_seconds(values: list[float]) -> str:
    """Return the median and the range of ``values`` in seconds."""
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder with the shared datasets")
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs per case, each with a new cache")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0

    print("\n".join(machine_lines()))
    print(f"repeats: {args.repeats}, each with an empty cache; seconds as median (min-max)")
    print()
    header = (
        f"{'case':<18} {'samples':>7} {'entry MB':>8}  {'cold prepare':>20}  {'warm prepare':>20}  "
        f"{'imports':>20}  {'cold process':>20}  {'warm process':>20}"
    )
    print(header)
    for name in args.case or CASES:
        case = dict(CASES[name])
        root = args.data_root / case.pop("dataset")
        runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="segsweep-cache-benchmark-") as cache_dir:
                settings = {"layout": "folder", "root": str(root), "cache_dir": cache_dir, **case}
                runs["cold"].append(time_process(settings))
                runs["warm"].append(time_process(settings))
        cold, warm = runs["cold"], runs["warm"]
        print(
            f"{name:<18} {cold[0]['samples']:>7} {cold[0]['entry_mb']:>8.1f}  "
            f"{format_seconds([run['prepare_s'] for run in cold]):>20}  "
            f"{format_seconds([run['prepare_s'] for run in warm]):>20}  "
            f"{format_seconds([run['import_s'] for run in cold + warm]):>20}  "
            f"{format_seconds([run['process_s'] for run in cold]):>20}  "
            f"{format_seconds([run['process_s'] for run in warm]):>20}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
