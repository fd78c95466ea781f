"""Licence-aware subsets of a drum corpus described by a ``MANIFEST.tsv``.

The manifest (``../shared/data/drums/MANIFEST.tsv``) is a tab-separated table with a header row and at least the
columns ``path`` (relative to the manifest's folder), ``source_repo``, ``license`` and ``class``. :func:`select`
keeps the rows of some classes whose licence starts with one of some prefixes (case-insensitive) and none of some
excluded prefixes; :func:`link_subset` lays the kept files out as a bank (``out/<class>/<file>`` symlinks) that
``trainer fit`` / ``trainer ingest`` read directly. Together they make "train only on what we may redistribute"
a reproducible command instead of a hand-made folder.

Licence matching is by prefix on purpose: the licence column carries free text after the SPDX-like name
("CC0-1.0 (etc/samples/README.md: ...)"). Prefixes overlap ("CC-BY" is also a prefix of "CC-BY-SA-4.0", "MIT" of
"MIT or GPL-2.0-or-later"), so pass precise prefixes ("CC-BY-3.0") or an ``exclude`` list ("CC-BY-SA").
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from runtime.errors import KickspaceError

REQUIRED_COLUMNS = ("path", "source_repo", "license", "class")


@dataclass(frozen=True)
class ManifestRow:
    """One file of the manifest; ``file`` is the absolute path (manifest folder / ``path``)."""

    path: str
    source_repo: str
    license: str
    cls: str
    file: Path


def read_manifest(manifest_path: Path | str) -> list[ManifestRow]:
    """Every row of ``manifest_path`` (a TSV with a header), in file order."""
    manifest_path = Path(manifest_path)
    try:
        with open(manifest_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise KickspaceError(f"{manifest_path}: manifest lacks column(s) {', '.join(missing)}")
            rows = []
            for rec in reader:
                rel = (rec["path"] or "").strip()
                if not rel:
                    continue
                rows.append(ManifestRow(path=rel, source_repo=(rec["source_repo"] or "").strip(),
                                        license=(rec["license"] or "").strip(), cls=(rec["class"] or "").strip(),
                                        file=(manifest_path.parent / rel).resolve()))
    except FileNotFoundError as err:
        raise KickspaceError(f"manifest not found: {manifest_path}") from err
    return rows


def _matches(licence: str, prefixes: Sequence[str]) -> bool:
    low = licence.lower()
    return any(low.startswith(p.lower()) for p in prefixes)


def select(manifest_path: Path | str, *, classes: Iterable[str], licences: Iterable[str],
           exclude: Iterable[str] = ()) -> list[ManifestRow]:
    """Rows of ``manifest_path`` whose class is in ``classes`` and whose licence starts with one of ``licences``
    and with none of ``exclude`` (prefixes, case-insensitive), in manifest order."""
    classes = {c.lower() for c in classes}
    licences = tuple(licences)
    exclude = tuple(exclude)
    if not licences:
        raise KickspaceError("select: give at least one licence prefix")
    return [r for r in read_manifest(manifest_path)
            if r.cls.lower() in classes and _matches(r.license, licences) and not _matches(r.license, exclude)]


def link_subset(rows: Sequence[ManifestRow], *, root: Path | str | None = None, out: Path | str) -> Path:
    """Build a bank-layout folder of symlinks ``out/<class>/<file name>`` for ``rows``; returns ``out``.

    ``root``, when given, is the folder the rows' ``path`` is relative to (default: where the manifest was).
    ``out`` must be absent or empty (a stale subset would silently mix old and new files). Two rows whose file
    names collide in one class get their source folder prefixed (``<source>__<name>``)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise KickspaceError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    used: set[tuple[str, str]] = set()
    for row in rows:
        target = (Path(root) / row.path).resolve() if root is not None else row.file
        if not target.is_file():
            raise KickspaceError(f"{target}: listed in the manifest but not found")
        name = target.name
        if (row.cls, name) in used:
            name = f"{Path(row.path).parts[0]}__{name}"
        used.add((row.cls, name))
        dest = out / row.cls / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest)
    return out
