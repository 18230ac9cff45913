"""The decoded-sample cache: prepared arrays on disk, shared by every process of a machine.

An entry is a folder named after the dataset and a key. The key is a SHA-256
over the preprocessing settings and, for every source file, its relative path,
size and modification time, so that a changed, added or removed file gives a
new entry. Entries are built in a staging folder under a file lock and then
renamed into place, so readers never see a half-written entry and concurrent
builders wait for the first one instead of decoding the same images again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from segcore.data.errors import DataError

logger = logging.getLogger(__name__)

# Bump when the stored arrays or metadata change meaning, so old entries are not reused.
CACHE_FORMAT = 2
META_FILE = "meta.json"
LOCK_TIMEOUT_S = 6 * 3600


def fingerprint(payload: Any) -> str:
    """Return the SHA-256 hex digest of ``payload`` serialised as sorted JSON."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_signature(path: Path, root: Path | None) -> tuple[str, int, int]:
    """Return ``(relative path, size, mtime in ns)`` of a source file."""
    stat = path.stat()
    relative = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
    return relative, stat.st_size, stat.st_mtime_ns


def get_or_build(folder: Path, build: Callable[[Path], None]) -> Path:
    """Return ``folder`` after building it with ``build(staging_folder)`` unless it exists.

    ``build`` writes into a fresh staging folder; on success the staging folder
    is renamed to ``folder``. On failure it is removed and nothing is cached.
    """
    if (folder / META_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder) + ".lock", timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            if (folder / META_FILE).is_file():
                logger.info("cache entry %s was built by another process", folder.name)
                return folder
            for stale in folder.parent.glob(folder.name + ".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
            staging.mkdir()
            started = time.perf_counter()
            try:
                build(staging)
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            logger.info("built cache entry %s in %.1f s", folder, time.perf_counter() - started)
    except Timeout as error:
        raise DataError(
            f"timed out after {LOCK_TIMEOUT_S} s waiting for another process to build {folder}; "
            f"if no such process runs, delete {folder}.lock"
        ) from error
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    """Return the metadata of a cache entry."""
    return json.loads((folder / META_FILE).read_text())


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write the metadata file of a cache entry; written last, it marks the entry complete."""
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
