"""Bad input never stops ingestion: every bad kind is skipped with its reason, every good file is kept."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runtime.files import printable
from runtime.spec import SpectrogramSpec
from tests import badfiles
from trainer.data.audio import Preprocess, SkipFile, load_one_shot

SPEC = SpectrogramSpec()
PRE = Preprocess()
REPO = Path(__file__).resolve().parents[1]

# The ingestion runs in a child process so the chmod-000 file is really unreadable even when the tests run as
# root: the child drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set before exec (root then
# obeys file permissions like any user). It ingests twice (second pass from the cache) and prints JSON.
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from trainer.data.audio import Preprocess
    from trainer.data.ingest import ingest
    from runtime.spec import SpectrogramSpec
    root, cache = Path(sys.argv[1]), Path(sys.argv[2])
    passes = []
    for _ in range(2):
        corpus = ingest([root], spec=SpectrogramSpec(), preprocess=Preprocess(), cache_dir=cache, progress=False)
        s = corpus.summary
        passes.append(dict(kept=corpus.paths, skipped=s.skipped, ignored=s.ignored, hits=s.cache_hits,
                           misses=s.cache_misses, finite=bool((abs(corpus.audio) <= 1).all()),
                           layout=s.layouts[0][1]))
    print("RESULT " + json.dumps(passes))
""")


def _drop_file_capabilities() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _ingest_in_child(root: Path, cache: Path) -> tuple[list[dict], str]:
    preexec = _drop_file_capabilities if os.geteuid() == 0 else None
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(cache)], cwd=REPO, env=env,
                              preexec_fn=preexec, capture_output=True, text=True, timeout=240)
    except subprocess.SubprocessError as err:
        pytest.skip(f"cannot make a file unreadable here (dropping CAP_DAC_OVERRIDE failed: {err})")
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), done.stderr + done.stdout


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> badfiles.BadCorpus:
    corpus = badfiles.build_corpus(tmp_path_factory.mktemp("bad") / "one shots")
    yield corpus
    badfiles.remove(corpus.root)  # its deep tree would crash pytest's own clean-up (recursive rmtree)


@pytest.mark.slow
def test_ingestion_survives_every_bad_kind_and_keeps_every_good_file(bad_corpus, tmp_path):
    passes, output = _ingest_in_child(bad_corpus.root, tmp_path / "cache")
    first, second = passes
    assert len(bad_corpus.bad) >= 25
    assert first["layout"] == "flat"
    skipped = {badfiles.relative(path, bad_corpus.root): reason for path, reason, _ in first["skipped"]}
    assert skipped == bad_corpus.bad  # each bad file named, with the expected reason, and nothing else skipped
    assert sorted(badfiles.relative(p, bad_corpus.root) for p in first["kept"]) == sorted(bad_corpus.good)
    assert first["ignored"] == len(bad_corpus.ignored)
    assert first["finite"]
    lines = output.splitlines()
    for path, reason, detail in first["skipped"]:  # one log line per skipped file, naming it printably
        assert f"skip: {printable(path)}: {detail}" in lines
    # the second pass answers from the cache, bad files included; files that cannot be opened or have no usable
    # header are judged again (cheaply) and never hashed
    assert second["skipped"] == first["skipped"] and second["kept"] == first["kept"]
    uncachable = {"broken-link", "not-a-file", "empty", "unreadable", "corrupt", "not-audio", "too-long",
                  "link-loop", "unreachable"}
    assert second["hits"] == len(bad_corpus.good) + sum(r not in uncachable for r in bad_corpus.bad.values())
    assert second["misses"] == 0


@pytest.mark.parametrize("name", [
    "truncated header.wav", "riff garbage.wav", "zero bytes.wav", "readme named like audio.wav", "nan samples.wav",
    "inf samples.wav", "one sample.wav", "header only.wav", "ten minutes.wav", "pure silence.wav", "dc only.wav",
    "square wave.wav", "four kicks.wav", "drum loop.wav", "x.wav", "broken link.wav", "named pipe.wav",
    "loop a.wav", "self link.wav", "antiphase stereo.wav"])
def test_each_bad_kind_raises_skipfile_with_its_reason_and_a_readable_detail(bad_corpus, name):
    with pytest.raises(SkipFile) as caught:
        load_one_shot(bad_corpus.root / name, spec=SPEC, preprocess=PRE)
    assert caught.value.reason == bad_corpus.bad[name]
    assert caught.value.detail and "\n" not in caught.value.detail


def test_a_stereo_file_whose_channels_cancel_is_silent_in_mono_not_several_hits(bad_corpus):
    with pytest.raises(SkipFile) as caught:
        load_one_shot(bad_corpus.root / "antiphase stereo.wav", spec=SPEC, preprocess=PRE)
    assert caught.value.reason == "silent" and "cancel in the mono mix" in caught.value.detail
    stereo = SpectrogramSpec(channels=2)  # kept by a stereo spec: its channels are not mixed together
    assert load_one_shot(bad_corpus.root / "antiphase stereo.wav", spec=stereo, preprocess=PRE).shape == (
        2, stereo.n_samples)


def test_a_name_that_is_not_utf8_opens_and_prints_on_one_line(bad_corpus):
    name = next(n for n in bad_corpus.good if "caisse" in n)
    assert load_one_shot(bad_corpus.root / name, spec=SPEC, preprocess=PRE).shape == (1, SPEC.n_samples)
    assert printable(name) == "grosse caisse \\xe9t\\xe9.wav"
    assert printable("kick\nwith a newline.wav") == "kick\\nwith a newline.wav"


def test_a_folder_tree_deeper_than_the_path_limit_is_walked_and_its_end_skipped(tmp_path):
    from trainer.data.ingest import scan_root

    root = tmp_path / "kicks"
    root.mkdir()
    write_kick = badfiles.write(root / "kick.wav", badfiles.kick(), subtype="PCM_16")
    try:
        unreachable = badfiles._deep_tree(root / "deep")  # ~1360 levels: more than Python's recursion limit
        layout, items, ignored, refused = scan_root(root)
        assert (layout, [item.path for item in items], ignored) == ("flat", [write_kick], 0)
        [(item, skip)] = refused
        assert badfiles.relative(item.path, root) == unreachable and skip.reason == "unreachable"
        assert "more than the system can open" in skip.detail and "\n" not in skip.detail
    finally:
        badfiles.remove(root)


def test_odd_but_valid_files_become_clean_examples(bad_corpus):
    for name in bad_corpus.good:
        audio = load_one_shot(bad_corpus.root / name, spec=SPEC, preprocess=PRE)
        assert audio.shape == (1, SPEC.n_samples) and audio.dtype == np.float32, name
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 10 ** (PRE.peak_dbfs / 20) + 1e-6, name


def test_a_ten_minute_file_is_rejected_from_its_header_without_decoding(tmp_path):
    # Its samples are NaN: decoding first would report "non-finite". "too-long" proves the header decided.
    path = tmp_path / "ten minutes of nan.wav"
    with soundfile.SoundFile(str(path), "w", 8000, 1, subtype="FLOAT") as handle:
        for _ in range(10):
            handle.write(np.full(60 * 8000, np.nan, np.float32))
    start = time.perf_counter()
    with pytest.raises(SkipFile) as caught:
        load_one_shot(path, spec=SPEC, preprocess=PRE)
    assert caught.value.reason == "too-long" and "10.0 min" in caught.value.detail
    assert time.perf_counter() - start < 0.5
