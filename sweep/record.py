"""The sweep record: what ``--resume`` needs to rebuild the same sweep.

Written as ``segsweep.json`` in the sweep's folder under the storage path,
before the first trial starts.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs

RECORD_FILE = "segsweep.json"


@dataclass
class SweepRecord:
    """Settings that define a sweep; a resumed sweep reuses them."""

    name: str
    space: str
    experiment: str
    tracking_uri: str
    data_root: str | None = None
    dataset_paths: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    cache_dir: str | None = None
    weights_dir: str | None = None
    created: float = field(default_factory=time.time)


def sweep_folder(storage_path: str, name: str) -> str:
    """Return the sweep's folder (path or URI) under the storage path."""
    return f"{storage_path.rstrip('/')}/{name}"


def write_record(storage_path: str, record: SweepRecord) -> None:
    """Write the record into the sweep's folder (local path or any URI that pyarrow supports)."""
    filesystem, path = pyarrow.fs.FileSystem.from_uri(sweep_folder(storage_path, record.name))
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path}/{RECORD_FILE}") as stream:
        stream.write(json.dumps(asdict(record), indent=2, sort_keys=True).encode())


def read_record(storage_path: str, name: str) -> SweepRecord | None:
    """Return the record of sweep ``name``, or ``None`` when it has none."""
    filesystem, path = pyarrow.fs.FileSystem.from_uri(sweep_folder(storage_path, name))
    target = f"{path}/{RECORD_FILE}"
    if filesystem.get_file_info(target).type == pyarrow.fs.FileType.NotFound:
        return None
    with filesystem.open_input_stream(target) as stream:
        return SweepRecord(**json.loads(stream.read().decode()))


def latest_sweep(storage_path: str, space: str) -> str | None:
    """Return the name of the newest sweep of ``space`` in a local storage folder."""
    folder = Path(storage_path)
    if "://" in storage_path or not folder.is_dir():
        return None
    records = []
    for candidate in folder.iterdir():
        record = read_record(storage_path, candidate.name) if (candidate / RECORD_FILE).is_file() else None
        if record is not None and record.space == space:
            records.append(record)
    return max(records, key=lambda record: record.created).name if records else None
