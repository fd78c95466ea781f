"""Licence-aware corpus subsets: trainer.data.manifest.select / link_subset and `trainer subset`."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import KickspaceError
from trainer.cli import main
from trainer.data.manifest import link_subset, select

HEADER = "path\tsource_repo\toriginal_path\tlicense\tclass\tsample_rate\tchannels\tduration_s\n"
ROWS = [
    ("a/kick/k1.wav", "x/a", "CC0-1.0 (README)", "kick"),
    ("a/snare/s1.wav", "x/a", "CC0-1.0 (README)", "snare"),
    ("b/kick/k2.wav", "x/b", "GPL-3.0 (repo LICENSE)", "kick"),
    ("c/kick/k3.wav", "x/c", "cc-by-sa-4.0 (repo LICENSE)", "kick"),
    ("d/kick/k4.wav", "x/d", "CC-BY-3.0 (kit README)", "kick"),
    ("e/kick/k5.wav", "x/e", "MIT (repo LICENSE)", "kick"),
    ("f/kick/k1.wav", "x/f", "Public Domain (README)", "kick"),   # same file name as a/kick/k1.wav
    ("g/kick/k6.wav", "x/g", "none stated", "kick"),
    ("h/kick/k7.wav", "x/h", "attribution required: credit to someone", "kick"),
]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "drums"
    lines = [HEADER]
    for rel, repo, licence, cls in ROWS:
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"RIFF" + rel.encode())
        lines.append(f"{rel}\t{repo}\torig/{rel}\t{licence}\t{cls}\t44100\t1\t0.5\n")
    (root / "MANIFEST.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def _paths(rows):
    return [r.path for r in rows]


def test_select_by_class_and_licence_prefix_case_insensitive(corpus: Path) -> None:
    rows = select(corpus / "MANIFEST.tsv", classes=["kick"], licences=["cc0", "public domain", "mit"])
    assert _paths(rows) == ["a/kick/k1.wav", "e/kick/k5.wav", "f/kick/k1.wav"]
    assert rows[0].source_repo == "x/a" and rows[0].cls == "kick"
    assert rows[0].file == (corpus / "a/kick/k1.wav").resolve()


def test_cc_by_prefix_also_matches_share_alike_unless_excluded(corpus: Path) -> None:
    manifest = corpus / "MANIFEST.tsv"
    assert _paths(select(manifest, classes=["kick"], licences=["CC-BY"])) == ["c/kick/k3.wav", "d/kick/k4.wav"]
    assert _paths(select(manifest, classes=["kick"], licences=["CC-BY"], exclude=["CC-BY-SA"])) == ["d/kick/k4.wav"]


def test_unclear_and_copyleft_rows_are_never_matched_by_permissive_prefixes(corpus: Path) -> None:
    rows = select(corpus / "MANIFEST.tsv", classes=["kick", "snare"],
                  licences=["CC0", "Public Domain", "Unlicense", "MIT", "Apache-2.0", "CC-BY"], exclude=["CC-BY-SA"])
    licences = {r.license for r in rows}
    assert not any(lic.lower().startswith(("gpl", "none", "attribution", "cc-by-sa")) for lic in licences)
    assert len(rows) == 5


def test_link_subset_builds_a_bank_of_symlinks(corpus: Path, tmp_path: Path) -> None:
    rows = select(corpus / "MANIFEST.tsv", classes=["kick", "snare"], licences=["CC0", "Public Domain"])
    out = link_subset(rows, out=tmp_path / "subset")
    links = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert links == ["kick/f__k1.wav", "kick/k1.wav", "snare/s1.wav"]
    for p in out.rglob("*.wav"):
        assert p.is_symlink() and p.resolve().is_file()
    assert (out / "kick/k1.wav").resolve() == (corpus / "a/kick/k1.wav").resolve()
    assert (out / "kick/f__k1.wav").resolve() == (corpus / "f/kick/k1.wav").resolve()


def test_link_subset_refuses_a_non_empty_folder_and_missing_files(corpus: Path, tmp_path: Path) -> None:
    rows = select(corpus / "MANIFEST.tsv", classes=["kick"], licences=["MIT"])
    out = link_subset(rows, out=tmp_path / "s")
    with pytest.raises(KickspaceError, match="not empty"):
        link_subset(rows, out=out)
    (corpus / "e/kick/k5.wav").unlink()
    with pytest.raises(KickspaceError, match="not found"):
        link_subset(rows, out=tmp_path / "s2")


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KickspaceError, match="manifest not found"):
        select(tmp_path / "nope.tsv", classes=["kick"], licences=["CC0"])


def test_cli_subset_with_held_out_split(corpus: Path, tmp_path: Path, capsys) -> None:
    args = [str(corpus), "--class", "kick", "--licence", "CC0", "Public Domain", "MIT", "CC-BY",
            "--exclude-licence", "CC-BY-SA"]
    assert main(["subset", *args, "--out", str(tmp_path / "all")]) == 0
    assert "linked 4 files" in capsys.readouterr().out
    assert main(["subset", *args, "--every", "2", "--keep", "0", "--out", str(tmp_path / "held")]) == 0
    assert main(["subset", *args, "--every", "2", "--drop", "0", "--out", str(tmp_path / "train")]) == 0
    held = {p.resolve() for p in (tmp_path / "held").rglob("*.wav")}
    train = {p.resolve() for p in (tmp_path / "train").rglob("*.wav")}
    everything = {p.resolve() for p in (tmp_path / "all").rglob("*.wav")}
    assert len(held) == 2 and len(train) == 2 and not held & train and held | train == everything
    assert main(["subset", *args, "--every", "2", "--out", str(tmp_path / "bad")]) == 2
