"""``runtime play --fallback-render FILE``: where live play cannot start, a file to hear instead, and the way to sound.

When PortAudio is missing or finds no output device (:class:`runtime.errors.AudioUnavailable`), the player says
why in one line, renders the demo groove (``--fallback-midi``, default :data:`DEMO_GROOVE`) through the preset
offline (:func:`runtime.render.render_midi`, 48 kHz, as ``runtime render`` does) to FILE plus a spectrogram PNG
beside it (:mod:`runtime.spectrogram_png`), and prints the one command that enables live play on this system
(:func:`live_play_command`: the distribution's PortAudio or JACK package, or the JACK server to start). It exits 0:
the user got a file. ``make play`` passes the option, so the README's first command always ends in sound or a file.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Callable

from runtime.bounce import DEFAULT_RATE, output_file, write_render
from runtime.errors import AudioUnavailable

log = logging.getLogger(__name__)

DEMO_GROOVE = Path(__file__).resolve().parents[1] / "presets" / "grooves" / "demo.mid"
INSTALL = {"apt": "sudo apt-get install", "dnf": "sudo dnf install", "pacman": "sudo pacman -S",
           "brew": "brew install"}
PORTAUDIO = {"apt": "libportaudio2", "dnf": "portaudio", "pacman": "portaudio", "brew": "portaudio",
             None: "PortAudio (libportaudio2 or portaudio)"}
JACK = {"apt": "jackd2", "dnf": "jack-audio-connection-kit", "pacman": "jack2", "brew": "jack",
        None: "a JACK server (jackd2 or jack2)"}
DISTRO_FAMILIES = {"debian": "apt", "ubuntu": "apt", "fedora": "dnf", "rhel": "dnf", "centos": "dnf",
                   "arch": "pacman", "manjaro": "pacman"}
PACKAGE_TOOLS = {"apt": "apt-get", "dnf": "dnf", "pacman": "pacman", "brew": "brew"}
JACK_DUMMY = "jackd --no-realtime -d dummy -r 48000 -p 128 &   then play again (no sound card: JACK's dummy driver)"
JACK_ALSA = "jackd -d alsa -r 48000 &   then play again"


def os_release(path: str | Path = "/etc/os-release") -> dict[str, str]:
    """The ``KEY=value`` pairs of an os-release file (empty when there is none)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip().strip("\"'") for key, _, value in pairs}


def package_manager(system: str, release: dict[str, str], which: Callable[[str], str | None]) -> str | None:
    """``apt``, ``dnf``, ``pacman`` or ``brew`` for this system (os-release ID/ID_LIKE first, then what is on
    PATH), or None."""
    if system == "Darwin":
        return "brew"
    for word in (release.get("ID", "") + " " + release.get("ID_LIKE", "")).split():
        if word in DISTRO_FAMILIES:
            return DISTRO_FAMILIES[word]
    return next((name for name, tool in PACKAGE_TOOLS.items() if which(tool)), None)


def _install(manager: str | None, *packages: dict) -> str:
    """The install command of ``packages`` (:data:`PORTAUDIO`, :data:`JACK`) for ``manager``."""
    if manager is None:
        return f"install {' and '.join(p[None] for p in packages)} with your package manager, then play again"
    return f"{INSTALL[manager]} {' '.join(p[manager] for p in packages)}   then play again"


def live_play_command(missing: str, *, system: str | None = None, release: dict[str, str] | None = None,
                      which: Callable[[str], str | None] = shutil.which, sound_card: bool | None = None,
                      replay: str = "runtime play ...") -> str:
    """The one command that enables live play here (``missing``: ``"portaudio"`` or ``"device"``).

    PortAudio missing: the distribution's package (apt ``libportaudio2``, dnf/pacman/brew ``portaudio``), on a
    Linux without a sound card and without jackd with the JACK server package too. No output device on Linux:
    PipeWire's JACK layer (``pw-jack`` before ``replay``, the play command) when installed, else a JACK server on
    the sound card (``jackd -d alsa``) or, without one, on the dummy driver (the graph runs: route the player to a
    recorder or over the network); the JACK package when jackd is missing. macOS/Windows: a device to choose in
    the system's sound settings. ``system``, ``release``, ``which`` and ``sound_card`` default to this
    machine's (tests pass others).
    """
    system = platform.system() if system is None else system
    release = os_release() if release is None else release
    sound_card = Path("/dev/snd").is_dir() if sound_card is None else sound_card
    manager = package_manager(system, release, which)
    if missing == "portaudio":
        without_jack = system == "Linux" and not sound_card and not which("jackd")
        return _install(manager, PORTAUDIO, JACK) if without_jack else _install(manager, PORTAUDIO)
    if system != "Linux":
        return "connect or enable an audio output device in the system's sound settings, then play again"
    if which("pw-jack"):
        return f"pw-jack {replay}   (through PipeWire's JACK layer)"
    if which("jackd"):
        return JACK_ALSA if sound_card else JACK_DUMMY
    return _install(manager, JACK)


def render_instead(preset: str | Path, error: AudioUnavailable, out: str | Path, *,
                   midi: str | Path | None = None) -> int:
    """Say why live play cannot start, render ``midi`` (default :data:`DEMO_GROOVE`) through ``preset`` to ``out``
    (WAV or FLAC by its suffix, 48 kHz) and ``out`` with ``.png`` (its spectrogram), print both paths and the
    command that enables live play; returns 0 (the exit status: the user has a file).

    Raises
    ------
    KickspaceError
        The preset, the MIDI file or the model is unusable (one line, as ``runtime render`` says it).
    """
    from runtime.render import render_midi
    from runtime.spectrogram_png import write_spectrogram_png

    midi = DEMO_GROOVE if midi is None else Path(midi)
    path, fmt = output_file(out, None, "demo")
    log.warning(f"runtime play: {error.reason}; rendering {_shown(midi)} offline instead")
    audio = render_midi(preset, midi, sample_rate=DEFAULT_RATE)
    line = write_render(path, audio, DEFAULT_RATE, fmt)
    png = write_spectrogram_png(path.with_suffix(".png"), audio, DEFAULT_RATE)
    print(f"{line}; spectrogram {png}", flush=True)
    command = live_play_command(error.missing, replay=f"runtime play --preset {preset}")
    print(f"to play live here: {command}", flush=True)
    return 0


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies under it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(path)
