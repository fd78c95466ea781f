"""Library code reports through ``logging``; the command lines show it on stderr, bare by default, with ``-q`` (warnings
and errors only) and ``-v`` (debug lines named by module) (issue 21 item 5, :mod:`runtime.logs`)."""

from __future__ import annotations

import ast
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from export import cli as export_cli
from trainer.phase import DEFAULT_INIT
from export.preset_folder import DEFAULT_ITERATIONS, DEFAULT_PREVIEW_ITERATIONS
from runtime import cli as runtime_cli
from runtime.logs import command_logging
from tests import onnx_fixtures as fx
from tests.badfiles import kick, write
from trainer import cli as trainer_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "export", "runtime")
# the command-line edges, which print a command's result (and runtime.logs.say, the one status-line printer)
CLI_MODULES = {"trainer/cli.py", "trainer/analysis/commands.py", "trainer/__main__.py", "export/cli.py",
               "export/__main__.py", "runtime/cli.py", "runtime/__main__.py", "runtime/logs.py"}
# designated output functions in library modules: what a command prints as its result
OUTPUT_FUNCTIONS = {("trainer/data/ingest.py", "_print_summary"),  # trainer ingest's table (stdout)
                    ("runtime/fallback.py", "render_instead")}  # make play's file and the live-play command (stdout)


def _prints(tree: ast.AST, path: str) -> list[str]:
    """``print(...)``, ``x.print(...)`` (rich) and ``sys.stdout/stderr.write(...)`` calls outside output functions."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name if function is None else function
        if isinstance(node, ast.Call) and (path, function) not in OUTPUT_FUNCTIONS:
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "print") or (isinstance(f, ast.Attribute) and f.attr == "print") \
                    or (isinstance(f, ast.Attribute) and f.attr == "write" and ast.unparse(f.value) in
                        ("sys.stdout", "sys.stderr")):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:60]}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def test_library_modules_never_print():
    found = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if path not in CLI_MODULES:
                found += _prints(ast.parse(file.read_text(), path), path)
    assert not found, "library code prints (log through logging.getLogger(__name__)):\n" + "\n".join(found)


def test_the_audio_callbacks_never_log():
    """The realtime paths (PortAudio callback, JACK process callback, the engine they run) hold no logger at all."""
    for name in ("runtime/portaudio_output.py", "runtime/jack_client.py", "runtime/output.py", "runtime/engine.py"):
        tree = ast.parse((ROOT / name).read_text())
        names = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Name, ast.Attribute))}
        assert not {"log", "logging", "logging.getLogger"} & names, name


# ------------------------------------------------------------------------------------------- one command per CLI
def _wav(path: Path) -> Path:
    sf.write(path, 0.1 * np.sin(np.arange(4410) / 7.0).astype(np.float32), 44100)
    return path


def test_trainer_spectrogram_quiet_hides_the_status_line_and_verbose_adds_debug(tmp_path, capsys):
    wav, png = _wav(tmp_path / "a.wav"), tmp_path / "a.png"
    assert trainer_cli.main(["spectrogram", str(wav), "--out", str(png)]) == 0
    default = capsys.readouterr()
    assert default.out == f"wrote {png}\n" and default.err == ""
    assert trainer_cli.main(["spectrogram", str(wav), "--out", str(png), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert trainer_cli.main(["spectrogram", str(wav), "--out", str(png), "-v"]) == 0
    verbose = capsys.readouterr()
    assert verbose.out == f"wrote {png}\n"
    assert verbose.err == ("trainer.analysis.plots: spectrogram of 4410 samples at 44100 Hz: 4096-point frames "
                           "every 512\n")


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logging")
    fx.linear_kick_model(root / "model", sample_rate=8000, samples=1024)
    doc = {"format": "kickspace-preset", "format_version": 1, "name": "kicks", "model": "model",
           "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0}],
           "pads": [{"note": 36, "anchor": [0.0, 0.0, 1.0]}], "output": {"channels": 1}}
    (root / "preset.json").write_text(json.dumps(doc))
    return root / "preset.json"


def test_runtime_render_quiet_hides_the_status_line_and_verbose_adds_debug(preset, tmp_path, capsys):
    args = ["render", "--preset", str(preset), "--axes", "sub=0.5", "--out", str(tmp_path / "k.wav")]
    assert runtime_cli.main(args) == 0
    default = capsys.readouterr()
    assert default.out.startswith(f"wrote {tmp_path / 'k.wav'} (") and default.err == ""
    assert runtime_cli.main(args + ["-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert runtime_cli.main(args + ["--verbose"]) == 0
    verbose = capsys.readouterr()
    assert verbose.out == default.out
    lines = verbose.err.splitlines()
    assert lines and all(line.startswith(f"runtime.model: {preset.parent / 'model'}/") for line in lines), lines
    assert any("decoder.onnx: onnxruntime session ready in " in line for line in lines), lines


def test_an_error_is_one_line_whatever_the_level(tmp_path, capsys):
    """-q keeps errors; -v puts its debug lines before the same one error line."""
    args = ["onnx", str(tmp_path / "no-run"), "--out", str(tmp_path / "out")]
    assert export_cli.main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("export onnx: error: ") and error.count("\n") == 1
    assert export_cli.main(args + ["-q"]) == 2
    assert capsys.readouterr().err == error
    assert export_cli.main(args + ["-v"]) == 2
    assert capsys.readouterr().err == (f"export.preset_folder: exporting {tmp_path / 'no-run'} (best.pt) to "
                                       f"{tmp_path / 'out'}: K={DEFAULT_ITERATIONS}, preview K="
                                       f"{DEFAULT_PREVIEW_ITERATIONS}, phase init {DEFAULT_INIT}\n" + error)


def test_a_skipped_file_is_still_its_one_line_and_quiet_keeps_it(tmp_path, capsys):
    root = tmp_path / "kicks"
    root.mkdir()
    write(root / "kick.wav", kick(seed=0), subtype="PCM_16")
    write(root / "silent.wav", np.zeros(4410, np.float32), subtype="PCM_16")
    args = ["ingest", str(root), "--no-cache"]
    for flags in ([], ["-q"]):
        assert trainer_cli.main(args + flags) == 0
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line]  # (rich ends a bar off a terminal with "\n")
        assert lines == [f"skip: {root / 'silent.wav'}: every sample is zero"], flags
        assert "kept" in captured.out  # the ingest table: the command's result, on stdout


def test_log_lines_go_above_a_running_progress_bar(capsys):
    """A rich progress bar redirects stderr through its console while it draws; the handler writes to whatever
    stderr is when the line arrives, so the line is printed by the bar's console above the bar, not through it."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    screen = io.StringIO()
    bar = Progress(console=Console(file=screen, force_terminal=True, width=80))
    with command_logging():
        with bar:
            bar.add_task("ingest", total=2)
            logging.getLogger("trainer.data.ingest").warning("skip: a.wav: every sample is zero")
    assert "skip: a.wav: every sample is zero" in screen.getvalue()
    assert capsys.readouterr().err == ""


def test_the_set_up_is_undone_after_a_command(capsys):
    before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in map(logging.getLogger, PACKAGES)]
    with command_logging(verbose=True):
        logging.getLogger("runtime.engine").debug("inside")
    assert capsys.readouterr().err == "runtime.engine: inside\n"
    assert [(lg.level, lg.propagate, list(lg.handlers)) for lg in map(logging.getLogger, PACKAGES)] == before
    logging.getLogger("runtime.engine").info("outside")  # no handler of ours any more: not shown
    assert capsys.readouterr().err == ""
    assert sys.stderr is not None


def test_runtime_play_quiet_keeps_its_meaning_headless_at_the_default_log_level():
    """``runtime play -q`` is ``--quiet`` (no status view); its start and summary lines still show (no log -q)."""
    args = runtime_cli.build_parser().parse_args(["play", "--preset", "p.json", "-q", "-v"])
    assert args.quiet is True and args.verbose is True and not hasattr(args, "log_quiet")
    render = runtime_cli.build_parser().parse_args(["render", "--preset", "p.json", "--axes", "sub=0", "-q"])
    assert render.log_quiet is True and not hasattr(render, "quiet")
