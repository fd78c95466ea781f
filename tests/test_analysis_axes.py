"""Named latent axes: the decorrelation maths on known linear data, and the full command on the tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.errors import KickspaceError
from runtime.model import Axis
from tests.analysis_fixtures import tiny_control_run, tiny_run  # noqa: F401  (session fixtures)
from trainer.analysis.axes import CONTROLS, derive, load_axes, measure, scale_axes, Standardiser, axes
from trainer.descriptors import DESCRIPTORS


def _linear_world(n: int = 400, latent: int = 6, seed: int = 0):
    """Latents and descriptors that are exactly linear in them, with strongly correlated gradients."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)) * np.linspace(2.0, 0.5, latent)
    w = rng.standard_normal((len(DESCRIPTORS), latent))
    w[1] = 0.8 * w[0] + 0.2 * w[1]  # punch's gradient nearly parallel to sub's
    y = z @ w.T
    return z, (y - y.mean(0)) / y.std(0), w


def test_pinv_and_backward_decorrelate_where_the_gradient_does_not() -> None:
    z, y, _ = _linear_world()
    controls = [DESCRIPTORS.index(c) for c in CONTROLS]
    held = [DESCRIPTORS.index("pitch")]
    zc = z - z.mean(0)
    coef = np.linalg.lstsq(zc, y, rcond=None)[0].T  # exact linear map to standardised descriptors
    effect = {m: coef @ derive(z, y, method=m, controls=controls, held=held, ridge=1e-8)
              for m in ("gradient", "pinv", "backward")}
    for method in ("pinv", "backward"):  # one std of the own descriptor per unit step, nothing else
        moved = effect[method][controls + held]
        assert np.allclose(moved[: len(controls)], np.eye(len(controls)), atol=1e-3), method
        assert np.abs(moved[-1]).max() < 1e-3, f"{method} moves the held pitch"
    assert np.allclose(np.diag(effect["gradient"][controls]), 1.0, atol=1e-3)
    assert abs(effect["gradient"][controls[1], 0]) > 0.5  # sub's naive knob drags punch along


def test_scale_spans_the_data_range_and_is_capped() -> None:
    z, y, _ = _linear_world()
    u = derive(z, y, method="pinv", controls=[0, 1], held=[], ridge=1e-8)
    standard = Standardiser.fit(y)
    directions, scales, capped = scale_axes(u, z, standard.half_range[[0, 1]])
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    zc = z - z.mean(0)
    coef = np.linalg.lstsq(zc, y, rcond=None)[0].T
    for k in range(2):  # moving from knob -1 to +1 covers the 5-95% range of the descriptor (uncapped here)
        if not capped[k]:
            change = coef[k] @ (2 * scales[k] * directions[k]) * standard.std[k]
            assert np.isclose(change, standard.p95[k] - standard.p05[k], rtol=1e-3)
    tiny = scale_axes(u * 1e6, z, standard.half_range[[0, 1]])
    assert tiny[2].all() and np.all(tiny[1] < scales * 1e6)


def test_measure_reads_rho_and_cross_talk_from_sweeps() -> None:
    values = np.linspace(-1, 1, 9)
    swept = np.zeros((1, 2, 9, len(DESCRIPTORS)))
    swept[..., :] = [-30, -6, -20, 1000, 0.2, 60, 0.3, 0.4]
    own, other = DESCRIPTORS.index("sub"), DESCRIPTORS.index("pitch")
    swept[0, :, :, own] = -30 + 10 * values  # sub rises monotonically over 20 dB
    swept[0, :, :, other] = 60 * np.exp(0.1 * values)  # pitch (held, measured in log) moves a little
    data = np.tile(swept[0, 0, 0], (10, 1))
    data[:, own] = np.linspace(-40, -20, 10)
    data[:, other] = np.exp(np.linspace(np.log(40), np.log(80), 10))
    from trainer.descriptors import control_units

    result = measure(values, swept, Standardiser.fit(control_units(data)), controls=("sub",))[0]
    assert result["rho"] == 1.0 and result["rho_at_mean"] == 1.0
    assert np.isclose(result["span"], 20 / (np.percentile(data[:, own], 95) - np.percentile(data[:, own], 5)))
    log_width = np.ptp(np.percentile(np.log(data[:, other]), [5, 95]))
    assert np.isclose(result["cross_talk"]["pitch"], 0.2 / log_width, rtol=1e-6)
    assert result["rho_all"]["pitch"] == 1.0 and abs(result["cross_talk"]["click"]) < 1e-6
    assert result["max_cross_talk"] == result["cross_talk"]["pitch"]


def test_axes_command_writes_exportable_verified_axes(tiny_run) -> None:  # noqa: F811
    out = tiny_run.folder / "analysis"
    report = axes(tiny_run.run, tiny_run.train, out=out, n_anchors=2, n_values=7, n_iter=8)
    saved = json.loads((out / "axes.json").read_text())
    latent = tiny_run.run.model.config.latent
    assert saved["method"] in saved["methods"] and set(saved["methods"]) == {"gradient", "pinv", "backward"}
    names = [a["name"] for a in saved["axes"]]
    assert sorted(names + list(saved["skipped"])) == sorted(CONTROLS) and len(names) >= 3
    assert len(saved["anchor"]) == latent
    for axis in saved["axes"]:
        assert np.isclose(np.linalg.norm(axis["direction"]), 1.0) and axis["scale"] > 0
        assert -1.0 <= axis["rho"] <= 1.0 and len(axis["rho_per_anchor"]) == 1 + 2 + 6  # mean, 2 encoded, 6 random
    # The kicks' click and brightness are easy to read off a spectrogram: some knob must follow its descriptor.
    assert max(a["rho"] for a in report["axes"]) >= 0.8
    exported, anchor = load_axes(out / "axes.json")
    for axis, entry in zip(exported, saved["export"]):
        again = Axis.from_dict(entry, where="axes", latent=latent)
        assert again == axis and "rho" in axis.effect
    assert anchor.shape == (latent,)
    text = (out / "axes.md").read_text()
    assert f"Method kept: **{saved['method']}**" in text and f"| {names[0]} |" in text
    # every sweep read by both implementations, with the full knob x descriptor matrix (cross-talk)
    check = saved["validation"]
    assert check["implementations"] == ["own", "librosa"] and check["anchors"] == ["mean"] + ["real"] * 2 + ["random"] * 6
    for name in ("own", "librosa"):
        figures = check["figures"][name]
        assert sorted(figures["knobs"]) == sorted(names) and sorted(figures["matrix"]) == sorted(names)
        assert all(len(f["rho"]) == 9 and 0.0 <= f["share"] <= 1.0 for f in figures["knobs"].values())
        assert {"sub", "punch", "click", "brightness", "decay"} <= set(figures["matrix"][names[0]])
    own = check["figures"]["own"]
    assert all(own["knobs"][n]["median"] == pytest.approx(a["rho"]) for n, a in zip(names, saved["axes"]))
    assert "## Knobs by each implementation" in text and "### Cross-talk by `librosa`" in text
    assert (out / "axes_sweeps.png").stat().st_size > 1000


def test_control_method_turns_the_descriptor_inputs_into_verified_axes(tiny_run, tiny_control_run) -> None:  # noqa: F811
    from trainer.analysis.axes import available_methods, derive_axes, prepare

    run = tiny_control_run
    config = run.model.config
    assert config.controls == ("brightness", "sub") and len(config.control_mean) == 2  # stats saved by fit
    assert available_methods(config, ("brightness", "sub"))[0] == "control"
    assert "control" not in available_methods(tiny_run.run.model.config)
    report = derive_axes(run, prepare(run, tiny_run.train), controls=("brightness", "sub"), methods=("control",),
                         n_anchors=3, n_values=7)
    bright = {a["name"]: a for a in report["axes"]}["brightness"]
    assert bright["direction"].tolist() == [0.0] * config.latent + [1.0, 0.0] and bright["scale"] > 0.5
    # span: the share of the data's 5-95 % range; the centroid counts the fundamental, which the synth's tone
    # filter (all the corpus's brightness varies) leaves alone, so a 12-epoch model spans about a quarter of it
    assert bright["rho"] >= 0.9 and bright["span"] > 0.2, report["axes"]
    with pytest.raises(KickspaceError, match="method 'control' needs a model whose decoder takes all of"):
        derive_axes(tiny_run.run, prepare(tiny_run.run, tiny_run.train), methods=("control",))


def test_flip_axis_mirrors_a_knob_that_turns_the_wrong_way() -> None:
    from trainer.analysis.axes import flip_axis

    values = np.linspace(-1, 1, 5)
    swept = np.zeros((1, 1, 5, len(DESCRIPTORS)))
    swept[0, 0, :, DESCRIPTORS.index("decay")] = np.exp(-values)  # decay falls as the knob rises
    swept[0, 0, :, DESCRIPTORS.index("sub")] = -20.0 + values
    standard = Standardiser.fit(np.random.default_rng(0).standard_normal((50, len(DESCRIPTORS))))
    result = measure(values, swept, standard, controls=("decay",))[0]
    result.update(direction=np.array([1.0, 0.0]))
    assert result["rho"] == pytest.approx(-1.0)
    flip_axis(result)
    again = measure(values, swept[:, :, ::-1], standard, controls=("decay",))[0]
    assert result["rho"] == pytest.approx(again["rho"]) == 1.0 and result["direction"].tolist() == [-1.0, 0.0]
    assert result["span"] == pytest.approx(again["span"]) and result["span"] > 0
    assert result["cross_talk"]["sub"] == pytest.approx(again["cross_talk"]["sub"])
