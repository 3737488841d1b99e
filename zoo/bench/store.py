"""The cells folder: one JSON file per finished (family, seed) cell plus the floor and ceiling rows.

Files are written atomically. A file that cannot be read back, or one made with other settings, is
never deleted: it is renamed aside (``vae-s0.json.corrupt-<time>``, ``vae-s0.json.replaced-<time>``).

Several ``zoo bench --shard K/N`` processes may share one folder (on one machine, or on a shared
filesystem whose locks work): a cell is run by the process holding its lock
(``cells/<cell>.lock``), and the tables are rebuilt under the folder's lock (``cells/.tables.lock``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..api import atomic_write_text

CELLS_DIR = "cells"
SCHEMA_VERSION = 1   # written into every record as "schema_version"; a record without it is read as version 1
INCEPTION_FLOOR = "_floor_inception"   # the Inception floor row (zoo bench --inception)
REFERENCE_ROWS = ("_floor", "_ceiling", INCEPTION_FLOOR)


class CorruptFile(Exception):
    """A bench file that is not the JSON object it should be."""


def cell_name(family: str, seed: int) -> str:
    """'vae-s0': the cell's file stem and its run folder's name."""
    return f"{family}-s{seed}"


def cell_path(out: Path, family: str, seed: int) -> Path:
    """Where the record of cell (family, seed) lives."""
    return out / CELLS_DIR / f"{cell_name(family, seed)}.json"


def reference_path(out: Path, name: str) -> Path:
    """Where the floor (``_floor``) or ceiling (``_ceiling``) row lives."""
    return out / CELLS_DIR / f"{name}.json"


def cell_files(out: Path) -> list[Path]:
    """Every cell file in ``out`` (not the reference rows, not files set aside), sorted by name."""
    return sorted(p for p in (out / CELLS_DIR).glob("*-s*.json") if not p.name.startswith("_"))


def read_record(path: Path, *, cell: bool = True) -> dict:
    """The JSON object in ``path``; CorruptFile when it is truncated, not JSON, not an object, or
    (``cell``) lacks the family and seed that every cell record has."""
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptFile("not valid JSON (truncated?)") from None
    if not isinstance(rec, dict):
        raise CorruptFile("not a JSON object")
    if cell and not ({"family", "seed"} <= set(rec)):
        raise CorruptFile("no family and seed")
    return rec


def read_cells(out: Path) -> list[dict]:
    """The records of every readable cell in ``out``, sorted by file name."""
    cells = []
    for p in cell_files(out):
        try:
            cells.append(read_record(p))
        except CorruptFile:  # set aside by the next run; never a traceback in the tables
            continue
    return cells


def read_reference(out: Path, name: str) -> dict | None:
    """The floor or ceiling row, or None when it is missing or unreadable."""
    p = reference_path(out, name)
    if not p.exists():
        return None
    try:
        return read_record(p, cell=False)
    except CorruptFile:
        return None


def read_floor(out: Path) -> dict | None:
    """The floor row, carrying the Inception floor's FID as ``fid_inception`` where the folder has one."""
    floor, inception = read_reference(out, "_floor"), read_reference(out, INCEPTION_FLOOR)
    if floor is None or inception is None or inception.get("fid") is None:
        return floor
    return {**floor, "fid_inception": inception["fid"]}


def write_record(path: Path, rec: dict) -> None:
    """Write a cell or reference record atomically, with the record format's ``schema_version``."""
    atomic_write_text(path, json.dumps({"schema_version": SCHEMA_VERSION, **rec}, indent=2, default=str))


@contextlib.contextmanager
def cell_lock(out: Path, family: str, seed: int) -> Iterator[bool]:
    """Try to take the lock of cell (family, seed) without waiting: yields True when this process
    holds it (until the block ends), False when another process is running the cell."""
    with open(out / CELLS_DIR / f"{cell_name(family, seed)}.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def tables_lock(out: Path) -> Iterator[None]:
    """Hold the folder's lock for reading the cells and writing the tables (waits for another shard)."""
    with open(out / CELLS_DIR / ".tables.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def set_aside(path: Path, why: str) -> Path:
    """Rename ``path`` (a file or a folder) to '<name>.<why>-<UTC time>' beside it; returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    i = 1
    while target.exists() or target.is_symlink():
        target = path.with_name(f"{path.name}.{why}-{stamp}-{i}")
        i += 1
    os.replace(path, target)
    return target
