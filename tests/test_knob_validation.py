"""The shaping knobs validated (``trainer axes``): the report's contents, the latent axes kept behind ``--latent``,
effect sizes in IQRs of real kicks, and each knob turning its own descriptor up on synthetic kicks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.spec import get_spec
from tests.analysis_fixtures import tiny_run  # noqa: F401  (session fixture)
from trainer import cli as trainer_cli
from trainer.analysis import knobs
from trainer.analysis.run import to_audio
from trainer.data import synth
from trainer.shaping import KNOBS
from trainer.spec import waveform_to_features


# ------------------------------------------------------------------------------------------------ effect sizes
def test_sizes_are_the_change_over_the_knob_range_in_real_kick_iqrs():
    values = np.linspace(-1, 1, 5)
    swept = np.zeros((2, 3, 5, len(knobs.reference.KNOBS)))
    sub, punch = knobs.reference.KNOBS.index("sub"), knobs.reference.KNOBS.index("punch")
    swept[0, :, :, sub] = 6.0 * values  # sub: 12 dB over the knob's range
    swept[0, :, :, punch] = 0.01 * values  # a tiny monotone side effect: rho 1, size ~0
    swept[1, :, :, punch] = 3.0 * values
    real = np.random.default_rng(0).normal(size=(400, len(knobs.reference.KNOBS)))
    real[:, sub] *= 4.0
    check = knobs.validate(values, {"librosa": swept}, controls=("sub", "punch"), kinds=("mean", "real", "random"),
                           real={"librosa": real})
    fig = check["figures"]["librosa"]
    iqr = knobs.spread(real)
    assert fig["iqr"]["sub"] == pytest.approx(iqr[sub]) and iqr[sub] == pytest.approx(4 * 1.349, rel=0.15)
    assert fig["size"]["sub"]["sub"] == pytest.approx(12.0 / iqr[sub]) == fig["knobs"]["sub"]["size"]
    assert fig["matrix"]["sub"]["punch"] == pytest.approx(1.0) and abs(fig["size"]["sub"]["punch"]) < 0.02
    assert fig["size"]["punch"]["punch"] == pytest.approx(6.0 / iqr[punch])
    assert check["size_unit"] == knobs.SIZE_UNIT and check["real_kicks"] == {"librosa": 400}
    assert check["meets_target"] == {"librosa": False}  # no new pass/fail: the cross-talk rho still counts
    text = knobs.markdown(check)
    assert f"Size by `librosa`: descriptor at knob +1 minus at -1, in {knobs.SIZE_UNIT}" in text
    assert "| sub | librosa | 1 | 3/3 |" in text


def test_spread_skips_missing_values_and_constant_columns():
    real = np.array([[1.0, 5.0, np.nan], [2.0, 5.0, np.nan], [3.0, 5.0, 1.0], [np.nan, 5.0, np.nan]])
    iqr = knobs.spread(real)
    assert iqr[0] == pytest.approx(1.0) and np.isnan(iqr[1]) and np.isnan(iqr[2])
    sizes = knobs.sizes(np.array([1.0, 0.0, -1.0]), np.ones((1, 3, 3)) * [[[4.0], [0.0], [2.0]]], iqr)
    assert sizes[0, 0] == pytest.approx(2.0) and np.isnan(sizes[0, 1])  # +1 is values' largest, wherever it sits


# ------------------------------------------------------------------------------------------------ to_audio
def test_to_audio_with_knobs_at_zero_is_the_plain_render_and_refuses_a_wrong_shape():
    from runtime.errors import KickspaceError
    from tests.analysis_fixtures import SPEC

    kicks = np.stack([synth.render_kick(p, sample_rate=SPEC.sample_rate, seconds=SPEC.n_samples / SPEC.sample_rate)
                      for p in synth.sample_params(3, seed=5)])
    features = waveform_to_features(kicks[:, None], SPEC).numpy()
    plain = to_audio(features, SPEC, n_iter=4)
    np.testing.assert_allclose(to_audio(features, SPEC, n_iter=4, controls=np.zeros((3, len(KNOBS)))), plain,
                               atol=1e-6)
    louder_click = np.zeros((3, len(KNOBS)))
    louder_click[:, KNOBS.index("click")] = 1.0
    assert not np.allclose(to_audio(features, SPEC, n_iter=4, controls=louder_click), plain, atol=1e-3)
    with pytest.raises(KickspaceError, match=r"controls: must be \[3, 5\]"):
        to_audio(features, SPEC, controls=np.zeros((3, 4)))


# ------------------------------------------------------------------------------------------- trainer axes
def test_trainer_axes_validates_the_shaping_knobs_by_default(tiny_run, capsys):  # noqa: F811
    out = tiny_run.folder / "knob_check"
    args = ["axes", str(tiny_run.folder), "--data", str(tiny_run.train_root), "--out", str(out), "--anchors", "2",
            "--random", "1", "--values", "5", "--gl-iters", "4", "--no-cache"]
    assert trainer_cli.main(args) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()[-len(KNOBS) - 2:]  # after the ingest summary: a line per knob, verdict, files
    assert [line.split()[0] for line in lines[:len(KNOBS)]] == list(KNOBS) and "own rho" in lines[0]
    assert lines[len(KNOBS)].startswith("meets the target: own")
    assert f"wrote {out / 'knobs.json'}" in printed and not (out / "axes.json").exists()
    saved = json.loads((out / "knobs.json").read_text())
    check = saved["validation"]
    assert saved["knobs"] == list(KNOBS) and check["implementations"] == ["own", "librosa"]
    assert check["anchors"] == ["mean", "real", "real", "random"] and len(check["values"]) == 5
    assert check["size_unit"] == knobs.SIZE_UNIT and check["real_kicks"] == {"own": 64, "librosa": 64}
    for name in ("own", "librosa"):
        fig = check["figures"][name]
        assert sorted(fig["matrix"]) == sorted(KNOBS) == sorted(fig["size"])
        assert set(fig["matrix"]["sub"]) == set(fig["size"]["sub"]) >= set(KNOBS)
        for knob, f in fig["knobs"].items():  # one rho per sweep, per anchor
            assert len(f["rho"]) == 4 and all(-1.0 <= r <= 1.0 for r in f["rho"]) and "size" in f
        assert sorted(fig["knobs"]) == sorted(KNOBS)
    text = (out / "knobs.md").read_text()
    assert "# Shaping knobs of" in text and "### Cross-talk by `own`" in text and "Size by `librosa`" in text
    assert f"{saved['examples']} corpus sounds encoded" in text and "{" not in text.split("\n\n")[1]
    assert trainer_cli.main([*args, "--methods", "pinv"]) == 2  # latent methods only with --latent
    assert "--methods" in capsys.readouterr().err


def test_trainer_axes_latent_still_derives_the_latent_axes(tiny_run, capsys):  # noqa: F811
    out = tiny_run.folder / "latent_axes"
    assert trainer_cli.main(["axes", str(tiny_run.folder), "--data", str(tiny_run.train_root), "--out", str(out),
                             "--latent", "--methods", "pinv", "--anchors", "1", "--random", "0", "--values", "3",
                             "--gl-iters", "4", "--no-cache"]) == 0
    saved = json.loads((out / "axes.json").read_text())
    assert saved["method"] == "pinv" and saved["export"] and not (out / "knobs.json").exists()
    assert "method pinv; wrote" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- direction on synth kicks
@pytest.fixture(scope="module")
def synth_sweep() -> dict[str, np.ndarray]:
    """Synthetic kicks at the kick spec, each knob at -1 and +1 (others 0), read by both implementations:
    ``{name: [len(KNOBS), 2, n, D]}``."""
    spec = get_spec("kick")
    params = synth.sample_params(8, seed=11)
    audio = np.stack([synth.render_kick(p, sample_rate=spec.sample_rate, seconds=spec.n_samples / spec.sample_rate)
                      for p in params])
    features = waveform_to_features(audio[:, None], spec).numpy()
    controls = np.zeros((len(KNOBS), 2, len(params), len(KNOBS)), np.float32)
    for k in range(len(KNOBS)):
        controls[k, 0, :, k], controls[k, 1, :, k] = -1.0, 1.0
    repeated = np.broadcast_to(features, (len(KNOBS), 2, *features.shape)).reshape(-1, *features.shape[1:])
    rendered = to_audio(repeated, spec, n_iter=16, controls=controls.reshape(-1, len(KNOBS))).mean(axis=1)
    return {name: describe(rendered, spec.sample_rate).reshape(len(KNOBS), 2, len(params), -1)
            for name, describe in knobs.default_implementations().items()}


@pytest.mark.parametrize(("knob", "implementation"), [
    (k, name) for name in ("own", "librosa") for k in KNOBS])
def test_each_knob_turns_its_own_descriptor_up_on_synth_kicks(synth_sweep, knob, implementation):
    read = synth_sweep
    j = knobs.columns(implementation).index(knob)
    low, high = read[implementation][KNOBS.index(knob), :, :, j]
    assert np.all(high > low), (knob, implementation, low.round(3).tolist(), high.round(3).tolist())
