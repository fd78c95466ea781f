"""Knob validation: the independent descriptor implementation, sweep anchors, per-sweep rho and the rho matrix."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from runtime.errors import KickspaceError
from trainer.analysis import knobs, reference
from trainer.analysis.axes import CONTROLS
from trainer.data import synth

SR = 22050
BASE = synth.KickParams(start_hz=250.0, end_hz=55.0, sweep_s=0.015, decay_s=0.12, click_level=0.4, brightness=0.5,
                        noise_level=0.1, drive=0.3, sub_level=0.3)


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR)) / SR


def _ref(params: synth.KickParams) -> dict[str, float]:
    return reference.describe(synth.render_kick(params, sample_rate=SR), SR)


# ----------------------------------------------------------------------------------- the reference implementation
def test_reference_values_on_known_signals():
    t = _t(0.6)
    body, sub = np.sin(2 * np.pi * 200.0 * t), np.sin(2 * np.pi * 40.0 * t)
    assert reference.describe(body + sub, SR)["sub"] == pytest.approx(10 * np.log10(0.5), abs=0.5)
    assert reference.describe(np.sin(2 * np.pi * 2000.0 * t), SR)["brightness"] == pytest.approx(2000.0, rel=0.05)
    tau = 0.05  # 20 dB = ln(10) time constants
    assert reference.describe(body * np.exp(-t / tau), SR)["decay"] == pytest.approx(tau * np.log(10), rel=0.1)
    assert reference.describe(body, SR)["punch"] > -1.0 > -20.0 > reference.describe(sub, SR)["punch"]


def test_reference_knobs_move_the_way_their_names_say():
    low, high = {}, {}
    for field, name, a, b in [("sub_level", "sub", 0.0, 0.7), ("start_hz", "punch", 60.0, 400.0),
                              ("click_level", "click", 0.0, 1.0), ("brightness", "brightness", 0.1, 0.9),
                              ("decay_s", "decay", 0.05, 0.25)]:
        low[name] = _ref(dataclasses.replace(BASE, **{field: a}))[name]
        high[name] = _ref(dataclasses.replace(BASE, **{field: b}))[name]
    assert all(high[name] > low[name] for name in reference.KNOBS), (low, high)


@pytest.mark.parametrize("audio", [np.zeros(0), np.zeros(10), np.full(64, np.nan), np.zeros((2, 500))],
                         ids=["empty", "short", "nan", "stereo silence"])
def test_reference_silence_gives_the_documented_values(audio):
    assert reference.describe(audio, SR) == reference.SILENT


def test_reference_is_level_independent_and_batched_in_control_units():
    kick = synth.render_kick(BASE, sample_rate=SR)
    assert reference.describe(0.05 * kick, SR) == pytest.approx(reference.describe(kick, SR), rel=1e-6, abs=1e-6)
    batch = reference.describe_batch(np.stack([kick, kick[::-1] * 0]), SR)
    values = reference.describe(kick, SR)
    assert batch.shape == (2, 5)
    assert batch[0, reference.KNOBS.index("decay")] == pytest.approx(np.log(values["decay"]))
    assert batch[0, reference.KNOBS.index("sub")] == pytest.approx(values["sub"])


# --------------------------------------------------------------------------------------------------- anchors
def test_anchors_are_the_mean_encoded_sounds_pads_and_random_latents(tmp_path):
    z = np.random.default_rng(0).normal(size=(40, 3)) * [1.0, 2.0, 0.5]
    none = knobs.pad_anchors(tmp_path, code_size=3, classes=())
    assert none[0].shape == (0, 3) and none[1] is None
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "centroids.json").write_text(json.dumps({"centroids": [{"z": [1, 2, 3]},
                                                                                    {"z": [0, 0, 1]}]}))
    pads = knobs.pad_anchors(tmp_path, code_size=3, classes=())
    starts = knobs.choose_anchors(z, None, n_real=4, pads=pads, n_random=500, seed=0)
    assert starts.kinds == ("mean",) + ("real",) * 4 + ("pad",) * 2 + ("random",) * 500 and starts.labels is None
    np.testing.assert_allclose(starts.z[0], z.mean(axis=0))
    np.testing.assert_allclose(starts.z[5:7], [[1, 2, 3], [0, 0, 1]])
    assert all(any(np.allclose(row, other) for other in z) for row in starts.z[1:5])
    np.testing.assert_allclose(starts.z[7:].std(axis=0), z.std(axis=0), rtol=0.15)  # drawn like the codes
    (tmp_path / "analysis" / "centroids.json").write_text(json.dumps({"centroids": [{"z": [1, 2]}]}))
    with pytest.raises(KickspaceError, match=r"centroids\.json: centroids\[0\]\.z: must be 3 finite numbers"):
        knobs.pad_anchors(tmp_path, code_size=3, classes=())


def test_class_conditioned_pads_are_one_per_class_at_the_origin(tmp_path):
    z = np.random.default_rng(1).normal(size=(20, 2))
    labels = np.array([0] * 5 + [2] * 15)
    pads = knobs.pad_anchors(tmp_path, code_size=2, classes=("kick", "snare", "hat"))
    starts = knobs.choose_anchors(z, labels, n_real=3, pads=pads, n_random=2, seed=0)
    assert starts.kinds.count("pad") == 3 and np.all(starts.z[4:7] == 0.0)
    assert starts.labels[4:7].tolist() == [0, 1, 2]
    assert starts.labels[0] == 2 and starts.labels[-2:].tolist() == [2, 2]  # mean and random: the majority class


# ---------------------------------------------------------------------------------------------------- figures
def _sweeps(values: np.ndarray) -> dict[str, np.ndarray]:
    """Two knobs x 3 anchors: sub follows its knob except from the last anchor; punch drags sub along."""
    own = np.zeros((2, 3, len(values), len(reference.KNOBS)))
    own[..., :] = np.arange(len(reference.KNOBS))  # constant: rho 0
    sub, punch = reference.KNOBS.index("sub"), reference.KNOBS.index("punch")
    own[0, :, :, sub] = values
    own[0, 2, :, sub] = -values  # one sweep turns the wrong way
    own[1, :, :, punch] = values ** 3
    own[1, :, :, sub] = values  # cross-talk: punch moves sub as much as itself
    return {"librosa": own}


def test_validation_reports_rho_per_sweep_share_kinds_and_the_cross_talk_matrix():
    values = np.linspace(-1, 1, 7)
    check = knobs.validate(values, _sweeps(values), controls=("sub", "punch"), kinds=("mean", "real", "random"))
    sub = check["figures"]["librosa"]["knobs"]["sub"]
    assert sub["rho"] == [1.0, 1.0, -1.0] and sub["median"] == 1.0 and sub["share"] == pytest.approx(2 / 3)
    assert sub["by_kind"] == {"mean": 1.0, "real": 1.0, "random": -1.0} and sub["min"] == -1.0
    matrix = check["figures"]["librosa"]["matrix"]
    assert matrix["punch"]["sub"] == 1.0 and matrix["punch"]["punch"] == 1.0 and matrix["sub"]["click"] == 0.0
    assert check["worst_cross_talk"]["librosa"] == 1.0 and check["meets_target"] == {"librosa": False}
    text = knobs.markdown(check)
    assert "| sub | librosa | 1 | 2/3 |" in text and "### Cross-talk by `librosa`" in text


def test_a_mirrored_knob_is_read_backwards_by_every_implementation():
    values = np.linspace(-1, 1, 5)
    swept = _sweeps(values)
    swept["own"] = np.zeros((2, 3, 5, 8))
    swept["own"][0, :, :, 0] = -values
    knobs.flip(swept, 0)
    check = knobs.validate(values, swept, controls=("sub", "punch"), kinds=("mean", "real", "random"))
    assert check["figures"]["own"]["knobs"]["sub"]["rho"] == pytest.approx([1.0, 1.0, 1.0])
    assert check["figures"]["librosa"]["knobs"]["sub"]["rho"] == pytest.approx([-1.0, -1.0, 1.0])
    assert check["figures"]["librosa"]["knobs"]["punch"]["median"] == pytest.approx(1.0)  # knob 1 untouched


def test_an_implementation_without_a_descriptor_reports_none_for_it():
    values = np.linspace(-1, 1, 5)
    swept = _sweeps(values)["librosa"]
    swept[..., reference.KNOBS.index("punch")] = np.nan  # e.g. the timbral models have no click or decay model
    swept[1, 0, 2, reference.KNOBS.index("sub")] = np.nan  # one hit it failed on: that sweep counts in none
    fig = knobs.validate(values, {"timbral": swept}, controls=("sub", "punch"),
                         kinds=("mean", "real", "random"))["figures"]["timbral"]
    assert "punch" not in fig["knobs"] and "punch" not in fig["matrix"]["sub"]
    assert fig["knobs"]["sub"]["rho"] == pytest.approx([1.0, 1.0, -1.0])
    assert fig["matrix"]["punch"]["sub"] == pytest.approx(1.0)  # the median of the two sweeps that have it


# ------------------------------------------------------------------------------------- a tiny model's knobs
@pytest.fixture(scope="module")
def five_knob_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny decoder conditioned on all five knob descriptors, trained on synth kicks whose five matching synth
    parameters vary (tuning, sweep time, drive and noise fixed; decays short enough for the 0.5 s clip)."""
    import torch

    from runtime.spec import SpectrogramSpec
    from trainer.analysis.run import load_run
    from trainer.descriptors import describe_batch
    from trainer.config import TrainConfig
    from trainer.data.arrays import TrainingArrays
    from trainer.fit import fit
    from trainer.objective import ObjectiveConfig
    from trainer.spec import waveform_to_features
    from trainer.vae import ModelConfig

    torch.set_num_threads(1)
    spec = SpectrogramSpec(sample_rate=16000, n_fft=1024, hop_length=128, win_length=1024, n_mels=64, frames=64)
    rng = np.random.default_rng(0)
    params = [dataclasses.replace(p, decay_s=float(np.exp(rng.uniform(np.log(0.03), np.log(0.1)))), end_hz=90.0,
                                  sweep_s=0.015, drive=0.3, noise_level=0.05) for p in synth.sample_params(64, seed=3)]
    audio = np.stack([synth.render_kick(p, sample_rate=16000, seconds=spec.n_samples / 16000) for p in params])
    features = waveform_to_features(audio[:, None], spec).numpy()
    arrays = TrainingArrays(features, descriptors=describe_batch(audio, 16000))
    out = tmp_path_factory.mktemp("five_knobs") / "run"
    fit(arrays, out=out, spec=spec, objective=ObjectiveConfig(beta=1e-4, beta_warmup_steps=50, free_bits=0.1,
                                                            control_weight=0.01, consistency_weight=0.02),
        model=ModelConfig(input_shape=spec.shape, widths=(8, 16), latent=2, controls=CONTROLS),
        train=TrainConfig(epochs=40, batch_size=8, lr=3e-3, patience=0, progress=False, media_every=0, n_media=0,
                          threads=1))
    return load_run(out), arrays.features


@pytest.mark.slow
def test_every_knob_of_a_tiny_conditioned_model_turns_its_cited_descriptor_up(five_knob_run):
    from trainer.analysis.axes import AxesData, derive_axes
    from trainer.analysis.run import decode, describe_audio, encode, to_audio

    run, features = five_knob_run
    mu, _ = encode(run.model, features)
    data = AxesData(z=mu, descriptors=describe_audio(to_audio(decode(run.model, mu), run.spec, n_iter=16), run.spec),
                    labels=None)
    report = derive_axes(run, data, methods=("control",), n_anchors=3, n_values=5, n_iter=16, n_random=2)
    assert [a["name"] for a in report["axes"]] == list(CONTROLS) and not report["skipped"]
    assert not any(a.get("flipped") for a in report["axes"])  # up is up without mirroring any knob
    figures = report["validation"]["figures"]
    for knob in CONTROLS:  # from the mean, 3 encoded kicks and 2 random latents: never the wrong way
        assert min(figures["own"]["knobs"][knob]["rho"]) > 0.0, (knob, figures["own"]["knobs"][knob])
        # rho of 5 points moves in steps of 0.1; 0.8 (one swap) may come out as 0.7999999999999999
        assert figures["own"]["knobs"][knob]["median"] >= 0.8 - 1e-9, (knob, figures["own"]["knobs"][knob])
        assert figures["librosa"]["knobs"][knob]["median"] >= 0.5, (knob, figures["librosa"]["knobs"][knob])
