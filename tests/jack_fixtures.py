"""A real JACK server for realtime tests and benchmarks, plus the parts that talk to ``runtime play`` through it.

- :class:`JackServer` / the session fixture :func:`jack_server`: ``jackd --no-realtime -d dummy -r 48000 -p 128``
  under a unique server name (``JACK_DEFAULT_SERVER`` is set for this process and its children, so a JACK server
  someone else runs is never touched), waited on until it accepts clients, stopped at the end. Its log is kept: the
  server's own xruns (``JackTimedDriver::Process XRun``) and the clients it blames (``JackEngine::XRun: client = X
  was not finished, state = S``) are the context for a client's underflow count. ``KICKSPACE_JACK_REALTIME=1``
  starts it with ``-R`` instead (realtime scheduling, where the system allows it). Skips, saying why, when ``jackd``
  is not on PATH. In jackd2's (default) asynchronous mode a MIDI client that misses a cycle leaves its previous
  buffer in place, so a reader gets those events twice, and a reader that misses a cycle loses that cycle's
  events: :meth:`JackServer.midi_misses` counts those cycles, the most a MIDI count can be off by that is JACK's
  doing (seen in CI: 164 notes played of 160 sent, 46 CCs of 48). Synchronous mode (``-S``) was measured as the
  alternative and is worse here: beside a busy process the dummy driver then missed 1 cycle in 6.
- :class:`Recorder`: a JACK client (the ``JACK-Client`` package) recording audio inputs and the MIDI events it
  receives, both indexed by JACK frame time, so note -> onset latency is measured in frames on one clock.
- :class:`Sender`: a python-rtmidi JACK MIDI output (a second client, no mocks).
- :class:`PlayerProcess`: ``python -m runtime play`` as a subprocess against the server: one JACK client (ports
  ``NAME:midi_in``, ``NAME:out_0``, ``NAME:out_1``).
- :class:`Rig`: a player and a recorder wired together, and the session fixture :func:`sender` (one per process).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RATE, PERIOD = 48000, 128
ROOT = Path(__file__).resolve().parents[1]


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the test process dies (Linux), so no jackd or player outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class JackServer:
    """A jackd dummy server (``rate`` Hz, ``period`` frames) under the unique name ``name``.

    With ``set_env`` (the default) :meth:`start` makes it this process's default server (``JACK_DEFAULT_SERVER``)
    until :meth:`stop`; a private server for one test passes ``set_env=False`` and hands :attr:`env` to its clients.

    JACK keeps at most 8 servers in its shared-memory registry (``/dev/shm/jack-shm-registry``) and a jackd killed
    with SIGKILL leaves its entry there (the 9th server then fails with "Too many servers already active"): after
    :meth:`kill`, :meth:`stop` starts a server of the same name once more, which takes the dead entry over, and stops
    it cleanly, which frees it.
    """

    def __init__(self, log_dir: str | Path, *, name: str | None = None, rate: int = RATE, period: int = PERIOD,
                 realtime: bool | None = None, set_env: bool = True) -> None:
        self.name = name or f"kickspace-test-{os.getpid()}"
        self.set_env = set_env
        self.killed = False
        self.rate, self.period = rate, period
        if realtime is None:
            realtime = os.environ.get("KICKSPACE_JACK_REALTIME", "") == "1"
        self.realtime = realtime
        self.log_path = Path(log_dir) / f"jackd-{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self._old_env: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self, timeout: float = 20.0) -> "JackServer":
        mode = ["-R"] if self.realtime else ["--no-realtime"]
        cmd = ["jackd", "-n", self.name, *mode, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=_die_with_parent)
        if self.set_env:
            self._old_env = os.environ.get("JACK_DEFAULT_SERVER")
            os.environ["JACK_DEFAULT_SERVER"] = self.name
        import jack

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                jack.Client("kickspace-probe", no_start_server=True, servername=self.name).close()
                return self
            except jack.JackError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"jackd did not accept clients within {timeout} s: {self.log()[-2000:]}")
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server (a crash: no client is told); :meth:`stop` still has to run afterwards."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.killed = True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.set_env:
            if self._old_env is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._old_env
        if getattr(self, "_log", None):
            self._log.close()
        if self.killed:
            self._release_registry_entry()
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{self.name}_*"):
            leftover.unlink(missing_ok=True)  # semaphores of clients that outlived this (uniquely named) server

    def _release_registry_entry(self) -> None:
        """After SIGKILL: start and cleanly stop a server of the same name, which frees its JACK registry entry."""
        self.killed, set_env = False, self.set_env
        self.set_env = False
        try:
            self.start()
            self.stop()
        except RuntimeError:
            pass  # the entry stays taken; the message of the next server that fails to start says why
        finally:
            self.set_env = set_env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def xrun_report(self, since: int = 0) -> dict:
        """Xruns in the log after character ``since``: the driver's own, and per blamed client and state."""
        text = self.log()[since:]
        blamed = collections.Counter(
            f"{m.group(1)} ({m.group(2)})"
            for m in re.finditer(r"JackEngine::XRun: client = (\S+) was not finished, state = (\w+)", text))
        return {"driver": text.count("JackTimedDriver::Process XRun"), "clients": dict(blamed),
                "late_finish": len(re.findall(r"JackEngine::XRun: client \S+ finished after", text))}

    def blamed(self, clients: list[str], since: int = 0) -> int:
        """Cycles after log character ``since`` that the server found one of ``clients`` (JACK client names) not
        finished at (triggered but not yet running, or still running): the xruns those clients caused.

        jackd2 checks every active client at the start of each cycle and logs the ones that were triggered and had
        not finished; a client that had not been triggered yet (waiting on a late client before it in the graph) is
        not blamed. Each blamed cycle is notified to every client as an xrun, which is why a client's own xrun count
        cannot tell its own misses from the others'."""
        return sum(n for key, n in self.xrun_report(since)["clients"].items() if key.split(" (")[0] in clients)

    def midi_misses(self, clients: list[str], since: int = 0) -> int:
        """Cycles after log character ``since`` that any of ``clients`` (JACK client names) did not finish in time:
        each can repeat (a late sender) or drop (a late reader) one cycle's MIDI events."""
        return self.blamed(clients, since)

    def log_size(self) -> int:
        return len(self.log())


class _Shared:
    """One object per test process behind a session fixture that several test modules import.

    pytest makes a separate session fixture for every module that imports one (seen here: two ``jack_server``
    fixtures started two jackd of one name, the second failed while the first answered its readiness probe, and
    two senders of one name sent to the wrong port). So the first user makes the object and the last one closes it.
    """

    def __init__(self) -> None:
        self.value = None
        self.users = 0

    def acquire(self, make):
        if self.users == 0:
            self.value = make()
        self.users += 1
        return self.value

    def release(self, close) -> None:
        self.users -= 1
        if self.users == 0:
            value, self.value = self.value, None
            close(value)


_server, _sender = _Shared(), _Shared()


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A running jackd dummy server at 48 kHz / 128 frames for the whole session (skips if jackd is missing)."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not on PATH: install jackd2 (apt-get install jackd2) to run the realtime tests")
    try:
        import jack  # noqa: F401
    except OSError as err:
        pytest.skip(f"libjack is not loadable ({err}): install jackd2")
    server = _server.acquire(lambda: JackServer(tmp_path_factory.mktemp("jack")).start())
    try:
        yield server
    finally:
        _server.release(JackServer.stop)


class Recorder:
    """Records ``sources`` (audio output ports) and MIDI from a MIDI input port, indexed by JACK frame time.

    ``audio[i]`` is the sample at frame ``t0 + i`` (``t0`` = the first cycle's frame time); cycles the client missed
    stay zero and False in ``seen``. ``events`` holds ``(frame - t0, bytes)``; ``xrun_frames`` the frame (same
    origin, as JACK estimates it when it tells this client) of every server xrun.
    """

    def __init__(self, name: str, seconds: float, *, channels: int = 1) -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.inputs = [self.client.inports.register(f"in_{i}") for i in range(channels)]
        self.midi = self.client.midi_inports.register("midi_in")
        self.audio = np.zeros((int(seconds * self.client.samplerate), channels), np.float32)
        self.seen = np.zeros(self.audio.shape[0], bool)
        self.events: list[tuple[int, bytes]] = []
        self.t0: int | None = None
        self.cycles = 0
        self.xruns = 0
        self.xrun_frames: list[int] = []
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, _delay) -> None:
        self.xruns += 1
        if self.t0 is not None:
            self.xrun_frames.append(self.client.frame_time - self.t0)

    def disturbed(self, frame: int, *, before: int = 4 * PERIOD, after: int = 8 * PERIOD) -> bool:
        """Whether a server xrun was reported from ``before`` frames before ``frame`` to ``after`` frames after it:
        a note there may reach any client a cycle or two late, whatever the player does."""
        return any(frame - before <= x <= frame + after for x in self.xrun_frames)

    def _process(self, frames: int) -> None:
        now = self.client.last_frame_time
        if self.t0 is None:
            self.t0 = now
        start = now - self.t0
        self.cycles += 1
        for offset, data in self.midi.incoming_midi_events():
            self.events.append((start + offset, bytes(data)))
        if 0 <= start and start + frames <= self.audio.shape[0]:
            for c, port in enumerate(self.inputs):
                self.audio[start:start + frames, c] = port.get_array()
            self.seen[start:start + frames] = True

    def connect_audio(self, sources: list[str]) -> None:
        for port, source in zip(self.inputs, sources):
            self.client.connect(source, port)

    def connect(self, source: str, destination: str) -> None:
        self.client.connect(source, destination)

    def port_latency(self, port: str, mode: int = 1) -> int:
        """Latency (max, frames) JACK reports for ``port``: playback (``mode`` 1) or capture (0)
        (:func:`runtime.jack_session.port_latency`: JACK-Client 0.5.7 has no call for it)."""
        from runtime.jack_session import port_latency

        return port_latency(self.client, port, mode)[1]

    def note_ons(self) -> list[tuple[int, int, int]]:
        """(frame, note, velocity) of every note-on recorded, once: under xruns this client was seen to get the same
        cycle's MIDI twice (the same note at the same frame), which no sender here produces on purpose."""
        notes = [(t, d[1], d[2]) for t, d in self.events if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2] > 0]
        return list(dict.fromkeys(notes))

    def note_frames(self) -> list[tuple[int, int]]:
        """(frame, velocity) of every note-on recorded (:meth:`note_ons`)."""
        return [(t, v) for t, _, v in self.note_ons()]

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class Sender:
    """A python-rtmidi MIDI output on JACK (a virtual port ``NAME:out``) that the test drives.

    Make one per process and reuse it: creating a second python-rtmidi JACK client after deleting the first hung in
    ``jack_client_open`` here (python-rtmidi 1.5.8, jackd 1.9.21).
    """

    def __init__(self, name: str) -> None:
        import rtmidi

        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.out.open_virtual_port("out")
        self.port = f"{name}:out"

    def note(self, note: int, velocity: int, channel: int = 0) -> None:
        self.out.send_message([0x90 | channel, note, velocity])

    def cc(self, control: int, value: int, channel: int = 0) -> None:
        self.out.send_message([0xB0 | channel, control, value])

    def note_off(self, note: int, channel: int = 0) -> None:
        self.out.send_message([0x80 | channel, note, 0])

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


@pytest.fixture(scope="session")
def sender(jack_server):
    """One python-rtmidi JACK sender for the session (see :class:`Sender` on why not one per test or module)."""
    out = _sender.acquire(lambda: Sender("ks-sender"))
    try:
        yield out
    finally:
        _sender.release(Sender.close)


def write_test_preset(folder: Path, *, gain: float = 0.4, channels: int = 2, samples: int = 4096) -> Path:
    """A 48 kHz linear kick model ``samples`` long (tests/onnx_fixtures.py) and a preset playing it: pad 36 at the kick,
    CC 20 -> ``sub`` (-1..1, amplitude x0.5..x1.5), velocity curve 1 (gain = velocity / 127). The model has a
    preview decoder that sounds the same, so a moved knob goes through the player's preview and full renders."""
    from tests import onnx_fixtures as fx

    fx.linear_kick_model(folder / "model", sample_rate=RATE, samples=samples, encoder=True, preview=True,
                         preview_level=1.0)
    doc = {"format": "kickspace-preset", "format_version": 1, "name": "test-kicks", "model": "model",
           "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0}],
           "pads": [{"note": 36, "anchor": [1.0, 0.0, 0.0], "gain": gain}], "velocity": {"curve": 1.0},
           "output": {"gain": 1.0, "fade_ms": 2.0, "channels": channels}}
    path = folder / "preset.json"
    path.write_text(json.dumps(doc))
    return path


#: How long a player may take to exit after Ctrl-C or ``q``: its shutdown joins threads with timeouts of its own
#: (status view, MIDI close, control thread, render worker), which a loaded 2-core runner stretches.
EXIT_TIMEOUT_S = 45.0


class PlayerProcess:
    """``python -m runtime play --preset PRESET --quiet`` as a subprocess on the current JACK server.

    ``env``: the environment (default this process's; a private server passes its :attr:`JackServer.env`).
    ``quiet=False`` with ``stdin`` a terminal (a pty's follower fd) runs the status view and its keys.
    Output (stdout and stderr, in order) goes to :attr:`log_path`.
    """

    def __init__(self, preset: Path, workdir: Path, *, client: str = "ks-play", extra: list[str] | None = None,
                 ready_timeout: float = 60.0, env: dict[str, str] | None = None, quiet: bool = True,
                 stdin: int | None = None) -> None:
        self.client = client
        self.log_path = workdir / f"{client}.log"
        self.stats_path = workdir / f"{client}-stats.json"
        cmd = [sys.executable, "-m", "runtime", "play", "--preset", str(preset), *(["--quiet"] if quiet else []),
               "--client-name", client, "--stats-json", str(self.stats_path), "--save-dir", str(workdir / "saves"),
               *(extra or [])]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=stdin,
                                     env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + ready_timeout
        while "kickspace: playing" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"runtime play did not start: {self.output()[-3000:]}")
            time.sleep(0.05)
        self.outputs = [f"{client}:out_0", f"{client}:out_1"]
        self.midi_in = f"{client}:midi_in"  # one JACK client: runtime.jack_client

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def interrupt(self, timeout: float = EXIT_TIMEOUT_S) -> tuple[int, dict]:
        """SIGINT (Ctrl-C); returns the exit status and the stats it wrote."""
        self.proc.send_signal(signal.SIGINT)
        rc = self.wait_exit(timeout)
        self._log.close()
        stats = json.loads(self.stats_path.read_text()) if self.stats_path.exists() else {}
        return rc, stats

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        """The exit status once the player has exited by itself. A player still running after ``timeout`` seconds
        is asked for every thread's stack (SIGUSR2: :func:`runtime.scheduling.dump_stacks_on`, into its log), then
        killed, and the test fails with the end of its log: where it hung, not only that it did."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR2)
            time.sleep(1.0)
            self.kill()
            raise AssertionError(f"runtime play did not exit within {timeout:g} s; its log, with every thread's "
                                 f"stack at the end:\n{self.output()[-6000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class Rig:
    """Player + recorder, wired: sender -> player MIDI in and recorder MIDI in, player outs -> recorder."""

    def __init__(self, preset: Path, workdir: Path, sender: Sender, name: str, seconds: float,
                 extra: list[str] | None = None) -> None:
        self.sender = sender
        self.player = PlayerProcess(preset, workdir, client=f"ks-{name}", extra=extra)
        # the JACK clients MIDI passes through on its way to the player (see JackServer.midi_misses)
        self.midi_clients = [sender.port.split(":")[0], self.player.midi_in.split(":")[0]]
        self.recorder_client = f"rec-{name}"
        try:
            self.recorder = Recorder(self.recorder_client, seconds, channels=2)
            self.recorder.connect_audio(self.player.outputs)
            self.recorder.connect(sender.port, self.player.midi_in)
            self.recorder.connect(sender.port, f"rec-{name}:midi_in")
        except BaseException:
            self.player.kill()
            raise
        time.sleep(0.3)

    def close(self) -> tuple[int, dict]:
        try:
            rc, stats = self.player.interrupt()
        finally:
            self.recorder.close()
        return rc, stats


def onsets_after(audio: np.ndarray, frames: list[int], *, window: int, threshold: float = 1e-3,
                 length: int = 4096) -> list[tuple[int | None, float]]:
    """For each note frame: (onset latency in frames, peak of the hit) from the first sample above ``threshold``
    within ``window`` frames after it; (None, 0.0) when nothing sounds there."""
    x = np.abs(audio[:, 0])
    out = []
    for f in frames:
        seg = x[f:f + window]
        hit = np.flatnonzero(seg > threshold)
        if hit.size == 0:
            out.append((None, 0.0))
            continue
        start = f + int(hit[0])
        out.append((int(hit[0]), float(x[start:start + length].max())))
    return out


def thread_scheduling(pid: int) -> list[tuple[int, int]]:
    """``(policy, realtime priority)`` of each thread of process ``pid``, from Linux /proc (``os.SCHED_*`` values;
    fields 41 and 40 of each thread's ``stat``)."""
    found = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()  # fields from the third on (the name may hold spaces)
        found.append((int(fields[38]), int(fields[37])))
    return found


def underflows_between(stats: dict, start: float, end: float) -> int:
    """Underflows ``runtime play`` stamped (``underflow_times`` in its stats, ``time.monotonic()``) from ``start`` to
    ``end``: a run's own, without those its harness caused by opening clients before it."""
    return sum(start <= t <= end for t in stats.get("underflow_times", []))


def sound_starts(audio: np.ndarray, *, seen: np.ndarray | None = None, threshold: float = 1e-3,
                 quiet: int = 1200, length: int = 4096) -> list[tuple[int, float]]:
    """Separate sounds in ``audio``: ``(first frame, peak)`` of each run above ``threshold`` split by at least
    ``quiet`` quiet frames; the peak is the maximum of channel 0 over ``length`` frames from the start.

    ``seen`` (:attr:`Recorder.seen`): only recorded frames count, loud or quiet, so a run of cycles the recorder
    missed neither splits one sound in two nor passes for silence between two.
    """
    seen = np.ones(audio.shape[0], bool) if seen is None else seen
    x = np.abs(audio[:, 0])
    loud = np.flatnonzero(seen & (x > threshold))
    if loud.size == 0:
        return []
    seen_before = np.cumsum(seen)  # recorded frames up to and including each index
    quiet_between = seen_before[loud[1:]] - seen_before[loud[:-1]] - 1
    starts = np.concatenate([loud[:1], loud[1:][quiet_between > quiet]])
    return [(int(f), float(x[f:f + length].max())) for f in starts]


def count_onsets(audio: np.ndarray, *, seen: np.ndarray | None = None, threshold: float = 1e-3,
                 quiet: int = 1200) -> int:
    """How many separate sounds :func:`sound_starts` finds in ``audio``."""
    return len(sound_starts(audio, seen=seen, threshold=threshold, quiet=quiet))


def groups(starts: list[tuple[int, float]], gap: int) -> list[list[float]]:
    """The peaks of :func:`sound_starts`, grouped where two starts lie more than ``gap`` frames apart: a test that
    plays N hits per state reads one group per state, whichever hits of it JACK dropped."""
    out: list[list[float]] = []
    for i, (frame, peak) in enumerate(starts):
        if i == 0 or frame - starts[i - 1][0] > gap:
            out.append([])
        out[-1].append(peak)
    return out
