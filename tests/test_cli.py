"""Console scripts and ``python -m`` entry points exist and their help is useful."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer import cli as trainer_cli


@pytest.mark.parametrize("module", ["trainer", "runtime"])
def test_python_dash_m_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"usage: {module}" in out.stdout


@pytest.mark.parametrize("command", ["synth", "ingest"])
def test_trainer_subcommand_help_describes_the_job(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        trainer_cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: trainer {command}" in text and len(text) > 400


def test_runtime_list_names_both_sides():
    # a subprocess: PortAudio initialised inside pytest would abort at exit if a JACK server seen here later stops
    out = subprocess.run([sys.executable, "-m", "runtime", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Audio devices" in out.stdout and "MIDI inputs" in out.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert trainer_cli.main(["ingest", str(tmp_path), "--spec", "no-such-spec"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trainer ingest: error: spec: unknown spec name 'no-such-spec'") and "\n" not in err
