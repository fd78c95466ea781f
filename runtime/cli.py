"""``runtime``: command-line edge of the realtime synth (onnxruntime + numpy + rtmidi + sounddevice, never torch)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from runtime.errors import KickspaceError


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
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``runtime`` argument parser."""
    parser = argparse.ArgumentParser(prog="runtime", description="Kickspace realtime MIDI drum synth.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("list", help="print audio devices and MIDI input ports",
                       description="Print the audio devices PortAudio sees (with their numbers) and the MIDI input "
                                   "ports of every MIDI API python-rtmidi was built with (ALSA, JACK).")
    p.set_defaults(handler=lambda args: print(list_ports()) or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runtime`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KickspaceError as err:
        print(f"runtime {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
