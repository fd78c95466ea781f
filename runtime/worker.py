"""The render worker: turns the latest requested decoder inputs of each pad (latent rows, shaping controls) into an
immutable engine buffer.

Requests are keyed by pad note: a new request replaces a pending one for the same pad, so a knob swept through 100
values while a render runs costs one more render, of the latest value (stale requests are coalesced). All pending
pads of one model are decoded in one batched onnxruntime call (onnxruntime releases the GIL while it runs), except the
pad played last (:attr:`RenderWorker.focus`), which is decoded alone first and swapped in before the others: a knob
turned while playing one pad of a 4-pad kick costs one pad's render before it is heard, not four. With
``split_pads`` (live play) the other pads are decoded one per call and a pad whose newer request is already
pending is skipped, so a knob swept without pause never waits behind a whole kit of stale renders.

With ``preview`` (live play) new requests are rendered by the model's preview decoder first (the same model with
fewer Griffin-Lim iterations, ``decoder_preview.onnx``: about 40 % of the render time) and swapped in, then each
pad is rendered again by the full decoder, in this order: the pad played last's preview, its full render, the
other pads' previews, their full renders. A render in flight is cancelled when a request arrives (onnxruntime
``RunOptions.terminate``, :class:`~runtime.model.CancelToken`) and redone for the latest state, except the preview
of the pad played last (what the next hit plays). With ``settle_s`` (live play: :data:`KNOB_SETTLE_S`), while a
knob moves (a request came less than ``settle_s`` ago) the worker renders nothing but the previews of the pad played
last; the other pads and every full render wait until the knob has rested ``settle_s``. A full render costs more
than the gap between two CCs of a hand-turned knob, so started between them it was mostly cancelled, and each CC
first waited for the cancellation and shared the cores with it (benchmarks/README.md, "knob settle"). While a knob
moves, the player hears previews that follow it; when it rests, the full quality of the pad being played lands
``settle_s`` plus one full render later. Offline render
(:meth:`RenderWorker.render_now`) always renders at full quality. Each sound is made safe (finite, DC-blocked, a
short fade-out at its end), resampled from the model rate to the engine rate here, never in the audio callback,
and swapped into the engine by reference.

The worker runs in its own thread (:meth:`RenderWorker.start`) for live play, or synchronously in the caller's
thread (:meth:`RenderWorker.render_now`) for offline render, which makes offline output deterministic.

Sanitising and resampling are :mod:`runtime.dsp`'s.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from runtime.dsp import resample, sanitize
from runtime.engine import Engine
from runtime.model import CancelToken, ExportedModel, RenderCancelled

#: Live play: how long a knob must rest before the worker renders anything but the previews of the pad played last.
KNOB_SETTLE_S = 0.05


@dataclass(frozen=True, eq=False)
class PadRequest:
    """What one pad should sound like: latent rows ``z`` ``[layers, latent]`` (one per velocity layer) of ``model``,
    with class index ``label`` for a conditional model and the shaping controls' rows ``controls``
    ``[layers, len(model.metadata.controls)]`` for a model with shaping controls (None: every control at 0, and
    always None for a model without them)."""

    note: int
    model: ExportedModel
    z: np.ndarray
    label: int | None = None
    controls: np.ndarray | None = None


@dataclass
class RenderStats:
    """Counters a test or a status view can read: pads rendered (full quality), previews, decoder calls made,
    full-quality renders cancelled by a newer request, and pad renders whose decoder output held NaN or infinite
    samples (``nonfinite``; made safe before the engine got them), with one line per model, pad and decoder that did
    (``warnings``, said once)."""

    renders: int = 0
    previews: int = 0
    decode_calls: int = 0
    cancelled: int = 0
    nonfinite: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RenderWorker:
    """Renders pad requests into an :class:`~runtime.engine.Engine`.

    Parameters
    ----------
    engine : Engine
        Receives each finished buffer through ``set_pad_buffer``; its ``sample_rate`` is the target rate.
    fade_out_ms : float
        Raised-cosine fade over the end of every buffer (the decoder's last frame may not reach zero).
    dc_cutoff_hz : float
        Corner of the one-pole DC blocker applied to every buffer until its sound ends (:func:`~runtime.dsp.sanitize`).
    split_pads, preview : bool
        Live play: one pad per decoder call; new requests rendered by the preview decoder first (module docstring).
    settle_s : float
        With ``preview``: seconds without a new request before anything but the pad played last's previews renders
        (0: no wait).
    """

    def __init__(self, engine: Engine, *, fade_out_ms: float = 10.0, dc_cutoff_hz: float = 5.0,
                 split_pads: bool = False, preview: bool = False, settle_s: float = 0.0) -> None:
        self.engine = engine
        self.split_pads = bool(split_pads)
        self.preview = bool(preview)
        self.settle_s = float(settle_s)
        self._last_request = float("-inf")  # time.monotonic() of the latest request
        self.fade_out_ms = float(fade_out_ms)
        self.dc_cutoff_hz = float(dc_cutoff_hz)
        self.stats = RenderStats()
        #: Note of the pad played last (set by the note path; a plain attribute write): rendered first.
        self.focus: int | None = None
        self._pending: dict[int, PadRequest] = {}
        self._refine: dict[int, PadRequest] = {}   # previewed pads waiting for their full-quality render
        self._token: CancelToken | None = None       # of the full-quality render in flight
        self._generation = 0
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------ requests

    def request(self, requests: Iterable[PadRequest], *, replace: bool = False, stamp: float | None = None) -> None:
        """Ask for these pads' sounds; a pending request for the same pad is dropped (only the latest renders).

        In live play the render in flight is cancelled unless it is the preview of the pad played last; it is redone
        in its turn (see :meth:`_take`) unless a new request replaced it. ``replace=True`` drops every pending
        request first and discards renders already in flight (a preset switch: the old preset's sounds must not
        arrive after the new ones). ``stamp``: when the event that asked for these sounds arrived
        (``time.monotonic()`` seconds; None: now). It travels with the request so a timing subclass
        (:class:`runtime.live_worker.LiveWorker`) can measure knob -> ready from the event, not from this call;
        the plain worker does not use it.
        """
        with self._cond:
            if replace:
                self._pending = {}
                self._refine = {}
                self._generation += 1
            for req in requests:
                self._pending[req.note] = req
                self._refine.pop(req.note, None)
            self._last_request = time.monotonic()
            if self._token is not None:
                self._token.cancel()
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Pads waiting to be rendered (new requests and previews waiting for their full-quality render)."""
        with self._cond:
            return len(self._pending) + len(self._refine)

    def render_now(self) -> int:
        """Render every pending request at full quality in the calling thread; returns the number of pads rendered."""
        with self._cond:
            batch, generation = {**self._refine, **self._pending}, self._generation
            self._pending, self._refine = {}, {}
        self._render(batch, generation, preview=False)
        return len(batch)

    # ---------------------------------------------------------------------------------------------------- thread

    def start(self) -> None:
        """Start the background thread (live play)."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="kickspace-render", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread after the render in progress."""
        with self._cond:
            self._stopping = True
            if self._token is not None:
                self._token.cancel()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending or rendering (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._refine and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                picked = None
                while not self._stopping and (picked := self._take()) is None:
                    self._cond.wait(self._settle_left())
                if self._stopping:
                    return
                batch, preview = picked
                generation = self._generation
                self._busy = True
            try:
                self._render(batch, generation, preview=preview)
            except Exception as err:  # keep playing the old sounds; the status view shows the error
                self.stats.errors.append(f"render failed: {err}")

    def _take(self) -> tuple[dict[int, PadRequest], bool] | None:
        """The next batch (call under the lock) and whether it is new requests (rendered as previews when live);
        None when nothing may render now.

        Live, the pad played last goes alone and first: its new request, then its full-quality render; then the
        other pads' new requests, then their full renders. While a knob moves (:meth:`_settle_left`), only the pad
        played last's new request (before any pad is played: every new request). Otherwise everything pending in one
        batch.
        """
        if self.preview:
            if self.focus in self._pending:
                return {self.focus: self._pending.pop(self.focus)}, True
            if self._settle_left() and not (self.focus is None and self._pending):
                return None
            if self.focus in self._refine:
                return {self.focus: self._refine.pop(self.focus)}, False
        if self._pending:
            batch, self._pending = self._pending, {}
            return batch, self.preview
        if not self._refine:
            return None
        batch, self._refine = self._refine, {}
        return batch, False

    def _settle_left(self) -> float | None:
        """Seconds until the knob counts as resting (call under the lock): 0 when it rests or without ``settle_s``,
        None when nothing waits (the worker then sleeps until a request)."""
        if not self._pending and not self._refine:
            return None
        if not self.preview:
            return 0.0
        return max(0.0, self._last_request + self.settle_s - time.monotonic())

    # ------------------------------------------------------------------------------------------------- rendering

    def _render(self, batch: dict[int, PadRequest], generation: int, *, preview: bool = False) -> None:
        """Render ``batch`` group by group (:func:`render_groups`). ``preview``: a batch of new requests in live play
        (preview decoder where the model has one). Live, every decoder call but the new request of the pad played
        last (what the next hit plays) can be cancelled by a newer request and is then re-queued."""
        groups = render_groups(batch, focus=self.focus, split=self.split_pads)
        for i, reqs in enumerate(groups):
            if self._superseded(reqs):
                continue  # a newer request for these pads is pending: render that one instead
            quick = preview and reqs[0].model.has_preview
            urgent = preview and (reqs[0].note == self.focus or (self.focus is None and i == 0))
            token = None if urgent else self._arm(groups[i:], fresh=preview)
            if token is False:
                return  # newer requests are waiting: they go first, these were re-queued
            faults: list[int] = []
            try:
                sounds = render_sounds(reqs, self.engine.sample_rate, fade_out_ms=self.fade_out_ms,
                                       dc_cutoff_hz=self.dc_cutoff_hz, preview=quick, cancel=token,
                                       nonfinite=faults)
            except RenderCancelled:
                self.stats.cancelled += 1
                if generation == self._generation:
                    self._requeue(groups[i:], fresh=preview)
                return
            finally:
                self._token = None
            self.stats.decode_calls += 1
            if generation != self._generation:
                return  # a preset switch happened meanwhile: these sounds belong to the old preset
            for req, sound, bad in zip(reqs, sounds, faults):
                if bad:  # a broken render is not played at all, not even its finite part
                    sound = np.zeros_like(sound)
                    self._nonfinite(req, bad, preview=quick)
                self.engine.set_pad_buffer(req.note, sound[:, :, None])
            if quick:
                self.stats.previews += len(reqs)
                self._requeue([reqs], fresh=False)
            else:
                self.stats.renders += len(reqs)
            self._swapped([req.note for req in reqs], preview=quick)

    def _nonfinite(self, req: PadRequest, bad: int, *, preview: bool) -> None:
        """Count a render whose decoder output held ``bad`` NaN or infinite samples; say it once per model, pad and
        decoder (:attr:`RenderStats.warnings`)."""
        self.stats.nonfinite += 1
        decoder = "preview decoder" if preview else "decoder"
        line = f"{req.model.folder}: the {decoder} output NaN or infinite samples for pad {req.note}"
        if not any(w.startswith(line) for w in self.stats.warnings):
            self.stats.warnings.append(f"{line} ({bad} samples; the pad plays silence): the model is broken; "
                                       f"retrain or re-export it")

    def _arm(self, groups: list[list[PadRequest]], *, fresh: bool) -> "CancelToken | None | bool":
        """A cancel token for the decoder call about to start (live play only); ``False`` (after re-queueing
        ``groups``) when requests that go before it are waiting (see :meth:`_take`): for the pad played last, its
        own new request; for another pad, any."""
        if not self.preview:
            return None
        with self._cond:
            played_last = any(r.note == self.focus for r in groups[0])
            waiting = self.focus in self._pending if played_last else bool(self._pending)
            if waiting:
                self._requeue(groups, fresh=fresh)
                return False
            self._token = CancelToken()
            return self._token

    def _requeue(self, groups: list[list[PadRequest]], *, fresh: bool) -> None:
        """Queue these requests again, as new requests (``fresh``) or for their full-quality render, except for pads
        a newer request has replaced."""
        with self._cond:
            target = self._pending if fresh else self._refine
            for reqs in groups:
                for req in reqs:
                    if req.note not in self._pending and req.note not in self._refine:
                        target[req.note] = req
            self._cond.notify_all()

    def _superseded(self, reqs: list[PadRequest]) -> bool:
        with self._cond:
            return all(req.note in self._pending for req in reqs)

    def _swapped(self, notes: list[int], *, preview: bool = False) -> None:
        """Called after each group of new buffers is in the engine (a hook for timing); ``preview``: they are the
        preview decoder's, their full-quality renders follow."""


def render_groups(batch: dict[int, PadRequest], *, focus: int | None = None,
                  split: bool = False) -> list[list[PadRequest]]:
    """Decoder calls for ``batch``: the ``focus`` pad alone first (when it is in the batch), then the rest in note
    order, one call per pad with ``split``, else one batched call per model."""
    first = [[batch[focus]]] if focus in batch else []
    rest = [batch[note] for note in sorted(batch) if note != focus]
    if split:
        return first + [[req] for req in rest]
    by_model: dict[int, list[PadRequest]] = {}
    for req in rest:
        by_model.setdefault(id(req.model), []).append(req)
    return first + list(by_model.values())


def render_sounds(requests: list[PadRequest], sample_rate: int, *, fade_out_ms: float = 10.0,
                  dc_cutoff_hz: float = 5.0, preview: bool = False, cancel: CancelToken | None = None,
                  nonfinite: list[int] | None = None) -> list[np.ndarray]:
    """Decode the requests of one model in one batched call; one ``[layers, frames]`` float32 sound per request,
    finite, DC-blocked, faded out and resampled to ``sample_rate``. ``preview`` and ``cancel``: see
    :meth:`~runtime.model.ExportedModel.decode` (raises :class:`~runtime.model.RenderCancelled`). ``nonfinite``,
    when given, receives per request how many samples of the decoder's output were NaN or infinite (before
    :func:`~runtime.dsp.sanitize` made them safe)."""
    model = requests[0].model
    z = np.concatenate([np.atleast_2d(r.z) for r in requests]).astype(np.float32)
    rows = [np.atleast_2d(r.z).shape[0] for r in requests]
    labels = None
    if model.metadata.conditional:
        labels = np.concatenate([np.full(n, r.label, dtype=np.int64) for r, n in zip(requests, rows)])
    audio, _ = model.decode(z, label=labels, controls=_controls(requests, rows), preview=preview, cancel=cancel)
    if nonfinite is not None:
        bad = np.count_nonzero(~np.isfinite(audio.reshape(audio.shape[0], -1)), axis=1)
        nonfinite.extend(int(part.sum()) for part in np.split(bad, np.cumsum(rows)[:-1]))
    rate = model.metadata.sample_rate
    audio = sanitize(audio, rate, fade_out_ms=fade_out_ms, dc_cutoff_hz=dc_cutoff_hz)
    audio = resample(audio, rate, sample_rate).astype(np.float32)
    return np.split(audio, np.cumsum(rows)[:-1])


def _controls(requests: list[PadRequest], rows: list[int]) -> np.ndarray | None:
    """The shaping controls' rows of one batched decode, aligned with the concatenated z rows (``rows[i]`` per
    request; a request without them gets zeros), or None when no request has any (a model without controls)."""
    if all(r.controls is None for r in requests):
        return None
    width = len(requests[0].model.metadata.controls)
    parts = [np.zeros((n, width), np.float32) if r.controls is None
             else np.broadcast_to(np.atleast_2d(np.asarray(r.controls, np.float32)), (n, width))
             for r, n in zip(requests, rows)]
    return np.concatenate(parts)
