"""``runtime``: command-line edge of the realtime synth (onnxruntime + numpy + rtmidi + sounddevice, never torch)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from runtime.bounce import DEFAULT_RATE, FORMATS
from runtime.errors import ConfigError
from runtime.command import run_command
from runtime.logs import add_log_flags, say
from runtime.scheduling import REALTIME_PRIORITY


def list_ports() -> str:
    """Audio devices (sounddevice numbering) and MIDI input ports of every available MIDI API, as text."""
    lines = ["Audio devices (use --device NUMBER or a name substring):"]
    try:
        import sounddevice as sd

        lines.append(str(sd.query_devices()) or "  (none)")
    except OSError as err:  # PortAudio missing
        lines.append(f"  unavailable: {err} (install libportaudio2)")
    import rtmidi

    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_display_name(api)
        try:
            ports = rtmidi.MidiIn(api).get_ports()
        except (rtmidi.SystemError, rtmidi.RtMidiError) as err:
            lines.append(f"MIDI inputs ({name}): unavailable: {err}")
            continue
        lines.append(f"MIDI inputs ({name}):")
        lines.extend(f"  {i}: {port}" for i, port in enumerate(ports))
        if not ports:
            lines.append("  (none)")
    from runtime.jack_session import listing

    return "\n".join(lines + listing())


def build_parser() -> argparse.ArgumentParser:
    """The ``runtime`` argument parser."""
    parser = argparse.ArgumentParser(prog="runtime", description="Kickspace realtime MIDI drum synth.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("list", help="print audio devices and MIDI input ports",
                       description="Print the audio devices PortAudio sees (with their numbers) and the MIDI input "
                                   "ports of every MIDI API python-rtmidi was built with (ALSA, JACK).")
    p.set_defaults(handler=lambda args: print(list_ports()) or 0)
    _add_play(sub)
    _add_render(sub)
    for command in sub.choices.values():
        add_log_flags(command)
    return parser


def _add_play(sub) -> None:
    p = sub.add_parser(
        "play", help="play a preset live from MIDI (a pad hit fires a kick, CC knobs shape it)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Play a preset live: note-ons fire the preset's pads, CC knobs move the model's shaping controls or "
            "its named latent axes (the render worker re-renders in the background; the next hit has the new "
            "sound), program changes switch presets. With a JACK server running this is one JACK client with a "
            "MIDI input CLIENT:midi_in and outputs CLIENT:out_0/out_1 (each note sounds from its own frame in the "
            "cycle that carries it; the latency it adds, none, is reported to JACK); elsewhere PortAudio plays it and "
            "python-rtmidi reads a MIDI input CLIENT-midi:in. The status view shows knobs, notes, render times, xruns "
            "and the output peak; keys: l = MIDI learn (the next moved CC binds to the chosen axis), r = a new random "
            "sound on the pad played last (drawn where the model's real training sounds lie), s = save the "
            "current sound (WAV + preset), q = quit. SIGUSR1 saves too; SIGUSR2 prints every thread's stack. "
            "Ctrl-C stops cleanly (exit status 0). If the audio stops under it (the JACK server quits or dies, the "
            "device goes away) it says so and exits with status 1.", 79),
        epilog="examples:\n"
               "  runtime play --preset presets/kicks                      # virtual MIDI input, default device\n"
               "  runtime play --preset presets/kicks --midi-port nanoKONTROL --device 2\n"
               "  jackd --no-realtime -d dummy -r 48000 -p 128 &  runtime play --preset presets/kicks --connect\n"
               "  runtime play --preset presets/kicks --pad 37=my_kick.wav --learn punch\n"
               "  runtime play --preset presets/kicks --osc-port 9000   # TouchOSC: /kickspace/knob/sub 0..1\n"
               "  runtime play --preset presets/kicks --fallback-render out/demo-kicks.wav   # as make play\n"
               "`runtime list` shows the audio devices and MIDI ports; without any device use `runtime render`.")
    p.add_argument("--preset", required=True, metavar="PATH", help="preset JSON file, or a folder holding preset.json")
    _add_play_connection_flags(p)
    _add_play_session_flags(p)
    p.set_defaults(handler=_play)


def _add_play_connection_flags(p: argparse.ArgumentParser) -> None:
    """``runtime play``'s MIDI, audio device and JACK flags."""
    p.add_argument("--midi-port", metavar="NAME", default=None,
                   help="connect to the MIDI port whose name contains NAME (or its number in `runtime list`); "
                        "default: leave the input CLIENT:midi_in (on JACK) or the virtual port CLIENT-midi:in for "
                        "other programs to connect to")
    p.add_argument("--midi-api", choices=("auto", "jack", "alsa"), default="auto",
                   help="MIDI system (default auto: the player's own JACK client's input on JACK, else ALSA; alsa on "
                        "JACK: python-rtmidi's ALSA input beside the JACK client)")
    p.add_argument("--device", metavar="NAME|NUMBER", default=None,
                   help="audio output device: its number in `runtime list` or a name substring (default: the "
                        "default output, JACK when a server runs)")
    p.add_argument("--blocksize", type=int, default=0, metavar="FRAMES",
                   help="frames per audio callback through PortAudio (default 0: the device's own period); the JACK "
                        "client always runs at the server's period")
    p.add_argument("--samplerate", type=int, default=None, metavar="HZ",
                   help="output rate (default: the device's; on JACK it must be the server's rate)")
    p.add_argument("--channel", type=int, default=None, metavar="1-16",
                   help="listen to this MIDI channel only (overrides the preset's midi_channel; default: the "
                        "preset's, or all)")
    p.add_argument("--connect", action="store_true",
                   help="on JACK: connect the outputs to the system playback ports (default: leave them unconnected)")
    p.add_argument("--client-name", default="kickspace", metavar="NAME",
                   help="JACK client name (default kickspace; without JACK, the MIDI client NAME-midi)")


def _add_play_session_flags(p: argparse.ArgumentParser) -> None:
    """``runtime play``'s flags for what happens during a run: learn, own samples, saving, the audio thread, the
    status view, statistics, the fallback render and OSC."""
    p.add_argument("--learn", metavar="AXIS", default=None,
                   help="MIDI learn at start: the first CC you move binds to AXIS (e.g. punch)")
    p.add_argument("--pad", action="append", default=[], metavar="NOTE=WAV",
                   help="play your own sample on NOTE, placed in the latent space by the model's encoder "
                        "(repeatable; the knobs move it like any pad)")
    p.add_argument("--save-dir", default="kickspace-saves", metavar="DIR",
                   help="where 'save current sound' writes its WAV and preset (default ./kickspace-saves)")
    p.add_argument("--max-voices", type=int, default=16, help="voices sounding at once (default 16)")
    p.add_argument("--rt-priority", type=int, default=REALTIME_PRIORITY, metavar="N",
                   help=f"SCHED_FIFO priority the audio thread asks for when the JACK server did not make it "
                        f"realtime (where the system allows it: root or an rtprio limit; default "
                        f"{REALTIME_PRIORITY}, as jackd -R gives its clients; 0: leave it an ordinary thread)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no status view (headless); one summary line at exit (log lines stay at their default level: "
                        "the start and summary lines show; -v adds debug lines)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--stats-json", default=None, metavar="FILE",
                   help="write the run's counters and timings (xruns, render and knob->ready times, RSS) as JSON")
    p.add_argument("--fallback-render", default=None, metavar="WAV",
                   help="where PortAudio is missing or finds no output device: say why in one line, render the "
                        "demo groove through the preset to this WAV (or .flac) at 48 kHz plus its spectrogram "
                        "(same name, .png), print the command that enables live play here, and exit 0 "
                        "(make play passes out/demo-kicks.wav); default: exit 2 with the error")
    p.add_argument("--fallback-midi", default=None, metavar="FILE",
                   help="the MIDI file --fallback-render renders (default: the shipped presets/grooves/demo.mid)")
    p.add_argument("--osc-port", type=int, default=None, metavar="PORT",
                   help="also take OSC over UDP on this port (TouchOSC, Open Stage Control): /kickspace/knob/AXIS "
                        "0..1, /kickspace/pad/NOTE velocity, /kickspace/learn/AXIS, /kickspace/save, or your "
                        "controller's own addresses bound by learn (README, OSC); default: no OSC")
    p.add_argument("--osc-host", default="0.0.0.0", metavar="ADDRESS",
                   help="the interface --osc-port listens on (default 0.0.0.0: every one, so a tablet on the "
                        "network reaches it; 127.0.0.1: this machine only)")


def _play(args: argparse.Namespace) -> int:
    from runtime.play import PlayConfig, parse_pad, play

    pads = dict(parse_pad(text) for text in args.pad)
    config = PlayConfig(preset=args.preset, midi_port=args.midi_port, midi_api=args.midi_api, device=args.device,
                        blocksize=args.blocksize, samplerate=args.samplerate, channel=args.channel,
                        connect=args.connect, client_name=args.client_name, learn=args.learn, pads=pads,
                        save_dir=args.save_dir, quiet=args.quiet, duration=args.duration,
                        stats_json=args.stats_json, max_voices=args.max_voices,
                        rt_priority=args.rt_priority, fallback_render=args.fallback_render,
                        fallback_midi=args.fallback_midi, osc_port=args.osc_port, osc_host=args.osc_host)
    return play(config)


def _add_render(sub) -> None:
    p = sub.add_parser(
        "render", help="render a MIDI file or a one-shot to a 24-bit WAV or FLAC (no audio device needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Render offline through the same engine as live play, to a DAW-ready file: 24-bit WAV (or FLAC) at 48 "
            "kHz unless --rate says otherwise. With --midi, every note-on fires "
            "its pad at its exact sample (the file's tempo map honoured), CC messages move the preset's knobs and "
            "program changes switch presets at their own time; note-offs are ignored (one-shots). With --axes, one "
            "hit of a pad at the given knob values (shaping controls or latent axes). With --random N, N new "
            "sounds drawn where the model's real training sounds lie (its prior), each with a preset that plays it "
            "again (--seed makes them reproducible). The same input always gives "
            "identical audio. Without a file name in --out the file names itself after the preset and the knob "
            "state (one-shot) or the MIDI file (groove), e.g. kicks_sub+0.80_decay-0.30_pad36.wav.", 79),
        epilog="examples:\n"
               "  runtime render --preset presets/kicks --midi song.mid --out song.wav\n"
               "  runtime render --preset presets/kicks --axes sub=0.8,decay=0.3 --out kick.wav\n"
               "  runtime render --preset presets/kicks --axes sub=0.8,decay=-0.3 --out bounces/ --format flac\n"
               "      # -> bounces/kicks_sub+0.80_decay-0.30_pad36.flac\n"
               "  runtime render --preset presets/kicks --random 20 --seed 7 --out pack/\n"
               "      # -> pack/kicks_random-s7-001_pad36.wav + .json ... (play one: runtime play --preset FILE.json)\n"
               "values are knob values: -1..1 for a shaping control (0 = unshaped), axis units for a latent axis "
               "(-1..1 spans the range measured on the training data).")
    p.add_argument("--preset", required=True, metavar="PATH",
                   help="preset JSON file, or a folder holding preset.json")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--midi", metavar="FILE", help="standard MIDI file to play (notes, CC, program changes)")
    what.add_argument("--axes", metavar="NAME=VALUE,...",
                      help="render one hit at these knob values (shaping controls or latent axes), e.g. "
                           "sub=0.8,decay=0.3 (others at their default)")
    what.add_argument("--random", type=int, metavar="N",
                      help="render N new random sounds (a sample pack), each beside a preset that plays it")
    p.add_argument("--seed", type=int, default=None,
                   help="with --random: the random seed (default: a new one, printed so the pack can be made again)")
    p.add_argument("--out", default=None, metavar="FILE|DIR",
                   help="output file (.wav or .flac, 24-bit PCM), or a folder (a path without suffix) where the "
                        "file names itself after preset and knobs (default: the current folder)")
    p.add_argument("--format", choices=tuple(FORMATS), default=None,
                   help="file format (default: from the --out suffix, else wav)")
    p.add_argument("--rate", type=int, default=DEFAULT_RATE, metavar="HZ",
                   help=f"output sample rate (default {DEFAULT_RATE}; 44100 and any other rate are resampled "
                        f"from the model's; 0: the model's own rate)")
    p.add_argument("--note", type=int, default=None,
                   help="with --axes or --random: the pad's MIDI note (default: the preset's first pad)")
    p.add_argument("--velocity", type=int, default=127,
                   help="with --axes or --random: hit velocity 1-127 (default 127)")
    p.add_argument("--blocksize", type=int, default=256, help="engine block size in frames (default 256)")
    p.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> int:
    from runtime import render
    from runtime.bounce import groove_name, one_shot_name, output_file, write_render
    from runtime.preset import load_preset

    if args.rate < 0:
        raise ConfigError("--rate", f"must be a rate in Hz, or 0 for the model's own, got {args.rate}")
    preset = load_preset(args.preset)
    rate = render.output_rate(preset, args.rate)
    if args.random is not None:
        return _render_random(args, preset, rate)
    if args.midi is not None:
        out, fmt = output_file(args.out, args.format, groove_name(preset, args.preset, args.midi))
        audio = render.render_midi(preset, args.midi, sample_rate=rate, blocksize=args.blocksize)
    else:
        axes = render.parse_axes(args.axes)
        note = preset.pads[0].note if args.note is None else args.note
        out, fmt = output_file(args.out, args.format, one_shot_name(preset, args.preset, axes, note, args.velocity))
        audio = render.render_one_shot(preset, axes, note=note, velocity=args.velocity, sample_rate=rate,
                                       blocksize=args.blocksize)
    say(write_render(out, audio, rate, fmt))
    return 0


def _render_random(args: argparse.Namespace, preset, rate: int) -> int:
    """``--random N``: N files (and their presets) in the ``--out`` folder, named after preset, seed and number."""
    import secrets

    from runtime import render
    from runtime.bounce import output_file, preset_label, write_render

    if args.out is not None and Path(args.out).suffix:
        raise ConfigError("--out", f"with --random it is a folder (N files go in it), got {args.out}")
    seed = secrets.randbelow(10**6) if args.seed is None else args.seed
    note = preset.pads[0].note if args.note is None else args.note
    sounds, source = render.render_random(preset, args.random, seed=seed, note=note, velocity=args.velocity,
                                          sample_rate=rate, blocksize=args.blocksize)
    say(f"{args.random} random sounds on pad {note}, seed {seed}, drawn from {source}")
    for audio, sound_preset in sounds:
        stem = f"{preset_label(preset, args.preset)}_{sound_preset.name}_pad{note}"
        out, fmt = output_file(args.out, args.format, stem)
        say(write_render(out, audio, rate, fmt))
        sound_preset.save(out.with_suffix(".json"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runtime`` console script; returns the exit status."""
    return run_command(build_parser().parse_args(argv), program="runtime")


if __name__ == "__main__":
    sys.exit(main())
