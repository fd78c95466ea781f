"""Random sounds: the exported model's latent prior (metadata), export shipping it, and the runtime drawing from it
(``runtime render --random``, the ``r`` key, ``/kickspace/random``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from runtime import cli as runtime_cli
from runtime import model as M
from runtime.engine import Engine
from runtime.errors import ConfigError
from runtime.osc import Button, decode
from runtime.preset import Pad, default_preset
from runtime.prior import LatentPrior, standard_prior
from runtime.controls import Controller
from runtime.status import key_command
from runtime.worker import RenderWorker
from tests import onnx_fixtures as fx

RATE = 8000
COV = ((0.04, 0.0, 0.0), (0.0, 0.01, 0.0), (0.0, 0.0, 0.0))  # rank 2: a fit on fewer sounds than columns


def _prior() -> LatentPrior:
    return LatentPrior(mean=(1.0, 0.5, 0.0), cov=COV, sounds=48, method="a Gaussian fitted to encoder means")


def _model_with_prior(folder, prior: LatentPrior | None):
    """:func:`fx.linear_kick_model` (``z[0]`` scales a kick, ``z[1]`` adds a click) with ``prior`` in its metadata."""
    return fx.linear_kick_model(folder, sample_rate=RATE, prior=prior)


def test_the_prior_survives_the_metadata_and_draws_its_own_distribution():
    meta = fx.metadata(prior=_prior())
    again = M.ModelMetadata.from_json(meta.to_json())
    assert again == meta and again.random_prior().describe() == "a Gaussian fitted to 48 real sounds' codes"
    z = again.random_prior().sample(20_000, np.random.default_rng(0))
    assert z.shape == (20_000, 3) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), [1.0, 0.5, 0.0], atol=0.01)
    np.testing.assert_allclose(np.cov(z, rowvar=False), COV, atol=0.002)  # the flat direction stays flat
    standard = fx.metadata().random_prior()  # a model exported without one: N(0, I), and it says so
    assert standard == standard_prior(3) and "standard normal" in standard.describe()
    assert abs(float(standard.sample(20_000, np.random.default_rng(1)).std()) - 1.0) < 0.02


@pytest.mark.parametrize("field, value, message", [
    ("mean", [1.0, 2.0], "metadata.prior.mean"),
    ("mean", [1.0, float("nan"), 0.0], r"metadata.prior.mean\[1\]"),
    ("cov", [[1, 0, 0], [0, 1, 0]], "metadata.prior.cov"),
    ("cov", [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]], "symmetric"),
    ("cov", [[1, 0, 0], [0, -1, 0], [0, 0, 1]], "positive semi-definite"),
    ("sounds", -1, "metadata.prior.sounds"),
    ("colour", "red", "metadata.prior.colour"),
])
def test_a_bad_prior_fails_naming_the_field(field, value, message):
    data = json.loads(fx.metadata(prior=_prior()).to_json())
    data["prior"][field] = value
    with pytest.raises(ConfigError, match=message):
        M.ModelMetadata.from_json(json.dumps(data), source="decoder.onnx")


def _controller(folder, pads=(36, 37)):
    meta = M.read_metadata(folder / M.DECODER_FILE)
    preset = dataclasses.replace(default_preset(meta, folder), pads=tuple(Pad(n, anchor=(1.0, 0.0, 0.0)) for n in pads))
    engine = Engine(RATE, 128, channels=preset.output.channels)
    controller = Controller(preset, engine, RenderWorker(engine))
    controller.worker.render_now()
    return controller


def test_a_random_sound_replaces_one_pad_and_a_saved_preset_plays_it_again(tmp_path):
    controller = _controller(_model_with_prior(tmp_path / "m", _prior()))
    before = {n: controller.engine.pad_buffer(n).copy() for n in (36, 37)}
    line = controller.randomize(37, rng=np.random.default_rng(3))
    controller.worker.render_now()
    assert line == "pad 37: a new random sound, drawn from a Gaussian fitted to 48 real sounds' codes"
    drawn = controller.state.anchor(37)
    np.testing.assert_allclose(drawn, _prior().sample(1, np.random.default_rng(3))[0], rtol=1e-6)
    np.testing.assert_array_equal(controller.engine.pad_buffer(36), before[36])  # the other pad is untouched
    assert not np.allclose(controller.engine.pad_buffer(37), before[37])
    saved = controller.current_preset("mine")
    assert saved.pad(37).anchor == pytest.approx(tuple(drawn)) and saved.pad(36).anchor == (1.0, 0.0, 0.0)
    replay = _controller(tmp_path / "m")
    replay.switch(saved)
    replay.worker.render_now()
    np.testing.assert_allclose(replay.engine.pad_buffer(37), controller.engine.pad_buffer(37), atol=1e-6)


def test_render_random_writes_a_reproducible_pack_with_a_preset_per_sound(tmp_path, capsys):
    folder = _model_with_prior(tmp_path / "m", _prior())
    preset = default_preset(M.read_metadata(folder / M.DECODER_FILE), folder, name="kick").save(tmp_path / "kick.json")
    args = ["render", "--preset", str(preset), "--random", "3", "--seed", "5", "--rate", "0"]
    assert runtime_cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "3 random sounds on pad 36, seed 5, drawn from a Gaussian fitted to 48" in capsys.readouterr().out
    assert runtime_cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    wavs = sorted((tmp_path / "a").glob("*.wav"))
    assert [w.name for w in wavs] == [f"kick_random-s5-00{i}_pad36.wav" for i in (1, 2, 3)]
    sounds = [sf.read(w)[0] for w in wavs]
    for w, sound in zip(wavs, sounds):
        np.testing.assert_array_equal(sf.read(tmp_path / "b" / w.name)[0], sound)  # the same seed, the same pack
        assert np.isfinite(sound).all() and 0.05 < np.abs(sound).max() <= 1.0
    assert min(np.abs(a - b).max() for i, a in enumerate(sounds) for b in sounds[i + 1:]) > 1e-3  # all different
    again = tmp_path / "again.wav"
    assert runtime_cli.main(["render", "--preset", str(wavs[1].with_suffix(".json")), "--axes", "sub=0",
                             "--rate", "0", "--out", str(again)]) == 0
    np.testing.assert_array_equal(sf.read(again)[0], sounds[1])  # its preset plays it again
    assert runtime_cli.main([*args, "--out", str(tmp_path / "one.wav")]) == 2
    assert "--out: with --random it is a folder" in capsys.readouterr().err


def test_the_r_key_and_the_osc_address_ask_for_a_random_sound():
    assert key_command("r", ["sub"], None) == ("random", None)
    assert decode("/kickspace/random", []) == Button("random")
    assert decode("/kickspace/random", [1.0]) == Button("random") and decode("/kickspace/random", [0]) is None


def _class_prior() -> LatentPrior:
    snare = LatentPrior(mean=(-1.0, 2.0, 0.0), cov=((0.01, 0, 0), (0, 0.01, 0), (0, 0, 0.01)), sounds=12)
    return dataclasses.replace(_prior(), classes=(("snare", snare),))


def test_a_class_prior_draws_each_class_where_its_real_sounds_lie():
    meta = fx.metadata(labels=("kick", "snare"), prior=_class_prior())
    again = M.ModelMetadata.from_json(meta.to_json())
    assert again == meta
    snares = again.random_prior("snare").sample(5000, np.random.default_rng(0))
    np.testing.assert_allclose(snares.mean(axis=0), [-1.0, 2.0, 0.0], atol=0.01)
    kicks = again.random_prior("kick").sample(5000, np.random.default_rng(0))  # no Gaussian of its own: pooled
    np.testing.assert_allclose(kicks.mean(axis=0), [1.0, 0.5, 0.0], atol=0.01)
    assert again.prior.describe("snare") == "a Gaussian fitted to 12 real snare sounds' codes"
    assert again.prior.describe("kick") == "a Gaussian fitted to 48 real sounds' codes"


@pytest.mark.parametrize("classes, message", [
    ({"clap": {"mean": [0, 0, 0], "cov": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}}, r"metadata.prior.classes.clap"),
    ({"snare": {"mean": [0, 0], "cov": [[1, 0], [0, 1]]}}, r"metadata.prior.classes.snare.mean"),
    ({"snare": {**_prior().to_dict(), "classes": {"snare": _prior().to_dict()}}}, r"classes.snare.classes"),
    ([1, 2], r"metadata.prior.classes"),
])
def test_a_bad_class_prior_fails_naming_the_class_and_field(classes, message):
    data = json.loads(fx.metadata(labels=("kick", "snare"), prior=_prior()).to_json())
    data["prior"]["classes"] = classes
    with pytest.raises(ConfigError, match=message):
        M.ModelMetadata.from_json(json.dumps(data), source="decoder.onnx")


def test_a_random_sound_on_a_labelled_pad_comes_from_its_class(tmp_path):
    folder = fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, labels=("kick", "snare"), prior=_class_prior())
    meta = M.read_metadata(folder / M.DECODER_FILE)
    pads = (Pad(36, anchor=(1.0, 0.0, 0.0), label="kick"), Pad(38, anchor=(1.0, 0.0, 0.0), label="snare"))
    preset = dataclasses.replace(default_preset(meta, folder), pads=pads)
    engine = Engine(RATE, 128, channels=preset.output.channels)
    controller = Controller(preset, engine, RenderWorker(engine))
    line = controller.randomize(38, rng=np.random.default_rng(3))
    assert line == "pad 38: a new random sound, drawn from a Gaussian fitted to 12 real snare sounds' codes"
    np.testing.assert_allclose(controller.state.anchor(38), [-1.0, 2.0, 0.0], atol=0.4)
    controller.randomize(36, rng=np.random.default_rng(3))
    np.testing.assert_allclose(controller.state.anchor(36), _prior().sample(1, np.random.default_rng(3))[0], rtol=1e-6)
