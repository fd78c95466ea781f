"""`trainer fit`: quality, CVAE, resume after SIGKILL, divergence, checkpoints, TensorBoard, config, CLI."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.errors import ConfigError, KickspaceError
from runtime.spec import SpectrogramSpec
from tests.signals import simple_kick
from trainer import cli
from trainer.checkpoint import load_checkpoint, load_model, save_checkpoint
from trainer.config import TrainConfig, dumps_toml, load_run_config, load_toml, parse_overrides
from trainer.data.arrays import TrainingArrays, split_indices
from trainer.fit import TrainingDiverged, fit, lr_at
from trainer.objective import ObjectiveConfig
from trainer.spec import waveform_to_features
from trainer.vae import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
SPEC = SpectrogramSpec(sample_rate=8000, n_fft=128, hop_length=32, win_length=128, n_mels=32, frames=32)
MODEL = ModelConfig(input_shape=SPEC.shape, widths=(16, 32), latent=8)
OBJECTIVE = ObjectiveConfig(beta=1e-5, beta_warmup_steps=100, free_bits=0.25)
QUIET = TrainConfig(batch_size=8, lr=5e-3, patience=0, progress=False, media_every=0, threads=1)


def kick_features(n: int, *, seed: int = 0) -> np.ndarray:
    """Log-mel features ``[n, 1, 32, 32]`` of pitch-swept sine kicks with varied pitch, decay and level."""
    rng = np.random.default_rng(seed)
    audio = np.stack([simple_kick(sample_rate=SPEC.sample_rate, seconds=SPEC.duration,
                                  start_hz=rng.uniform(150, 600), end_hz=rng.uniform(40, 120),
                                  decay_s=rng.uniform(0.02, 0.12), click=0.0, amplitude=rng.uniform(0.2, 0.9))
                      for _ in range(n)])
    return waveform_to_features(audio, SPEC).numpy()


def hat_features(n: int, *, seed: int = 0) -> np.ndarray:
    """Log-mel features of short high-passed noise bursts (a second, clearly different class)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SPEC.n_samples) / SPEC.sample_rate
    noise = np.diff(rng.standard_normal((n, SPEC.n_samples + 1)), axis=1)
    audio = 0.5 * noise * np.exp(-t / rng.uniform(0.005, 0.02, (n, 1)))
    return waveform_to_features(audio.astype(np.float32), SPEC).numpy()


def spec_table() -> dict:
    return {k: v for k, v in SPEC.to_dict().items() if v is not None}


# ---------------------------------------------------------------------------------------------- pure helpers
def test_split_is_stratified_deterministic_and_disjoint() -> None:
    labels = np.array([0] * 40 + [1] * 20 + [-1] * 10)
    train, val = split_indices(len(labels), labels, val_fraction=0.1, seed=1)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
    assert [int((labels[val] == k).sum()) for k in (0, 1, -1)] == [4, 2, 1]
    again = split_indices(len(labels), labels, val_fraction=0.1, seed=1)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(split_indices(len(labels), labels, val_fraction=0.1, seed=2)[1], val)


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(lr=1.0, lr_schedule="cosine", lr_warmup_steps=10, lr_min=0.0)
    assert lr_at(0, cfg, 110) == pytest.approx(0.1)
    assert lr_at(9, cfg, 110) == pytest.approx(1.0)
    assert lr_at(60, cfg, 110) == pytest.approx(0.5)
    assert lr_at(110, cfg, 110) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- done-when (small)
def test_vae_beats_mean_spectrogram_without_posterior_collapse(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    summary = fit(TrainingArrays(kick_features(96)), out=tmp_path / "run", spec=SPEC, model=MODEL,
                  objective=OBJECTIVE, train=dataclasses.replace(QUIET, epochs=40))
    best = summary["best"]
    assert best["val_recon"] <= 0.2 * summary["baseline_mean_spectrogram_mse"]
    assert best["latent_active_units"] >= MODEL.latent / 4
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["best_epoch"] == summary["best_epoch"] and saved["epochs"] == 40


def test_control_model_learns_its_standardisation_and_to_predict_the_controls(tmp_path: Path) -> None:
    from trainer.descriptors import DESCRIPTORS
    from trainer.batches import standard_controls

    torch.set_num_threads(1)
    features = kick_features(64, seed=3)
    rng = np.random.default_rng(0)
    descriptors = rng.uniform(0.2, 1.0, size=(64, len(DESCRIPTORS)))
    # "decay" is the log-mean level of the kick's second half: something the encoder can read from the features
    descriptors[:, DESCRIPTORS.index("decay")] = np.exp(features[:, 0, :, 16:].mean(axis=(1, 2)))
    model = dataclasses.replace(MODEL, controls=("decay",))
    summary = fit(TrainingArrays(features, descriptors=descriptors), out=tmp_path / "run", spec=SPEC, model=model,
                  objective=dataclasses.replace(OBJECTIVE, control_weight=1.0),
                  train=dataclasses.replace(QUIET, epochs=30))
    net, _, _ = load_model(tmp_path / "run" / "best.pt")
    config = net.config
    train_values = np.log(descriptors[:, DESCRIPTORS.index("decay")])
    assert config.control_mean[0] == pytest.approx(train_values.mean(), abs=0.05)  # from the training split
    assert config.control_std[0] == pytest.approx(train_values.std(), rel=0.2)
    with torch.no_grad():
        code, _ = net.encode_code(torch.as_tensor(features))
    truth = standard_controls(config, descriptors)[:, 0]
    assert np.corrcoef(code[:, -1].numpy(), truth)[0, 1] > 0.8  # the encoder head predicts the control
    with pytest.raises(ConfigError, match=r"model\.controls: \['decay'\] need the audio's descriptors"):
        fit(TrainingArrays(features), out=tmp_path / "run2", spec=SPEC, model=model, objective=OBJECTIVE,
            train=dataclasses.replace(QUIET, epochs=1))
    with pytest.raises(ConfigError, match=r"descriptors: must be \[64, 8\]"):
        TrainingArrays(features, descriptors=descriptors[:, :3])


def test_cvae_samples_differ_by_class(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    kicks, hats = kick_features(48, seed=1), hat_features(48, seed=2)
    arrays = TrainingArrays(np.concatenate([kicks, hats]), np.repeat([0, 1], 48), None, ("kick", "hat"))
    model = dataclasses.replace(MODEL, n_classes=2)
    fit(arrays, out=tmp_path / "cvae", spec=SPEC, model=model, objective=OBJECTIVE,
        train=dataclasses.replace(QUIET, epochs=15, n_media=2))
    net, _, ckpt = load_model(tmp_path / "cvae" / "best.pt")
    assert ckpt.classes == ["kick", "hat"]
    gen = torch.Generator().manual_seed(0)
    drawn = {label: net.sample(32, label, generator=gen).mean(dim=0).numpy() for label in (0, 1)}
    means = {0: kicks.mean(axis=0), 1: hats.mean(axis=0)}
    for label in (0, 1):  # each class's samples sit closer to its own class mean than to the other's
        own = np.mean((drawn[label] - means[label]) ** 2)
        other = np.mean((drawn[label] - means[1 - label]) ** 2)
        assert own < 0.25 * other
    assert sorted(p.name for p in (tmp_path / "cvae" / "samples").glob("prior_*")) == [
        "prior_hat_00.wav", "prior_hat_01.wav", "prior_kick_00.wav", "prior_kick_01.wav"]


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_holds_configs_loads_weights_only_and_refuses_configless(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(TrainingArrays(kick_features(24)), out=out, spec=SPEC, model=MODEL, objective=OBJECTIVE,
        train=dataclasses.replace(QUIET, epochs=2), run_config={"train": {"epochs": 2}})
    raw = torch.load(out / "last.pt", weights_only=True)
    assert raw["format_version"] == 1 and raw["epoch"] == 2 and raw["config"] == {"train": {"epochs": 2}}
    assert set(raw["train_config"]) == {"train", "objective"} and raw["optimizer_state"]["state"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.model_config == MODEL and ckpt.spec == SPEC and len(ckpt.history) == 2
    model, spec, _ = load_model(out / "last.pt")
    assert spec == SPEC and not model.training
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    del raw["model_config"]
    torch.save(raw, tmp_path / "bare.pt")
    with pytest.raises(KickspaceError, match="lacks model_config"):
        load_checkpoint(tmp_path / "bare.pt")
    save_checkpoint(tmp_path / "copy.pt", ckpt)
    assert load_checkpoint(tmp_path / "copy.pt").step == ckpt.step


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    arrays = TrainingArrays(kick_features(24))
    kwargs = dict(spec=SPEC, model=MODEL, objective=OBJECTIVE)
    fit(arrays, out=tmp_path / "a", train=dataclasses.replace(QUIET, epochs=3), **kwargs)
    fit(arrays, out=tmp_path / "b", train=dataclasses.replace(QUIET, epochs=1), **kwargs)
    with pytest.raises(KickspaceError, match="--resume"):
        fit(arrays, out=tmp_path / "b", train=dataclasses.replace(QUIET, epochs=3), **kwargs)
    fit(arrays, out=tmp_path / "b", train=dataclasses.replace(QUIET, epochs=3), resume=True, **kwargs)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b.epoch == 3 and b.step == a.step
    assert all(torch.allclose(a.model_state[k], b.model_state[k], atol=1e-6) for k in a.model_state)


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_good(tmp_path: Path) -> None:
    arrays = TrainingArrays(kick_features(24))
    out = tmp_path / "run"
    fit(arrays, out=out, spec=SPEC, model=MODEL, objective=OBJECTIVE, train=dataclasses.replace(QUIET, epochs=1))
    before = load_checkpoint(out / "last.pt")
    with pytest.raises(TrainingDiverged, match="non-finite loss.*last good checkpoint"):
        fit(arrays, out=out, spec=SPEC, model=MODEL, objective=OBJECTIVE, resume=True,
            train=dataclasses.replace(QUIET, epochs=5, lr=1e30, grad_clip=0.0))
    after = load_checkpoint(out / "last.pt")
    assert after.epoch == before.epoch == 1
    assert all(torch.equal(before.model_state[k], after.model_state[k]) for k in before.model_state)


def test_early_stopping_on_validation_reconstruction(tmp_path: Path) -> None:
    summary = fit(TrainingArrays(kick_features(24)), out=tmp_path / "run", spec=SPEC, model=MODEL,
                  objective=OBJECTIVE, train=dataclasses.replace(QUIET, epochs=20, lr=1e-12, patience=2))
    assert summary["stopped"] == "early_stopping" and summary["epochs"] == 3


# ---------------------------------------------------------------------------------------------- TensorBoard
def test_tensorboard_events_are_readable_by_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    fit(TrainingArrays(kick_features(24)), out=out, spec=SPEC, model=MODEL, objective=OBJECTIVE,
        train=dataclasses.replace(QUIET, epochs=2, media_every=1, n_media=2, log_every=1, griffin_lim_iters=4))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/recon", "train/kl", "train/kl_free_bits", "train/total", "train/beta", "train/lr",
                "val/recon", "val/recon_ratio", "latent/active_units", "latent/mu_std", "latent/logvar_mean",
                "latent_kl_per_dim/07", "train_step/recon", "perf/samples_per_s"):
        assert tag in tags["scalars"], tag
    assert len(events.Scalars("val/recon")) == 2
    assert {"spectrogram/0", "spectrogram/1"} <= set(tags["images"])
    assert {"reconstruction/0", "reconstruction/1"} <= set(tags["audio"])
    assert events.Audio("reconstruction/0")[0].sample_rate == SPEC.sample_rate


# ---------------------------------------------------------------------------------------------- config
def test_config_layers_and_unknown_keys(tmp_path: Path) -> None:
    assert parse_overrides(["train.lr=1e-3", "model.widths=[8,16]", "data.spec=nsynth"]) == {
        "train": {"lr": 1e-3}, "model": {"widths": [8, 16]}, "data": {"spec": "nsynth"}}
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 0.01\nepochs = 3\n[model]\nlatent = 8\n")
    run = load_run_config(path, ["train.lr=0.002", "model.latent=4"])
    assert run.train.lr == 0.002 and run.train.epochs == 3 and run.model_config(run.data.resolve_spec()).latent == 4
    for bad, key in ((["train.lrr=1"], "train.lrr"), (["optim.lr=1"], "optim"), (["model.input_shape=[1,2,3]"],
                                                                                 "model.input_shape")):
        with pytest.raises(ConfigError, match=key):
            load_run_config(None, bad)
    assert load_toml_round_trip(run.to_dict()) == run.to_dict()


def load_toml_round_trip(data: dict) -> dict:
    import tomllib

    return tomllib.loads(dumps_toml(data))


@pytest.mark.parametrize("name", ["kick", "timbre"])
def test_shipped_configs_resolve_to_the_seed_models(name: str) -> None:
    run = load_run_config(ROOT / "configs" / f"{name}.toml")
    spec = run.data.resolve_spec()
    model = run.model_config(spec, n_classes=11)
    expected = {"kick": ((16, 32, 64, 128), 16, (1, 128, 128)), "timbre": ((16, 32, 64), 32, (1, 80, 128))}[name]
    assert (model.widths, model.latent, model.input_shape) == expected
    assert load_toml(ROOT / "configs" / f"{name}.toml")["model"]["preset"] == name


# ---------------------------------------------------------------------------------------------- CLI + SIGKILL
def write_npz_run(tmp_path: Path, *, epochs: int, n: int = 48, widths: tuple[int, ...] = (16, 32), latent: int = 8,
                  **train: object) -> tuple[Path, Path]:
    """A .npz of ``n`` tiny kick spectrograms and a TOML run config for them (``train`` overrides [train] keys)."""
    data = tmp_path / "data.npz"
    np.savez(data, features=kick_features(n))
    config = tmp_path / "tiny.toml"
    config.write_text(dumps_toml({
        "data": {"spec": spec_table()},
        "model": {"preset": "kick", "widths": list(widths), "latent": latent},
        "objective": OBJECTIVE.to_dict(),
        "train": {**QUIET.to_dict(), "epochs": epochs, "batch_size": 4, "lr": 1e-3, **train}}))
    return data, config


def test_cli_fit_writes_the_run_folder(tmp_path: Path) -> None:
    data, config = write_npz_run(tmp_path, epochs=2)
    out = tmp_path / "runs" / "tiny"
    assert cli.main(["fit", str(data), "--config", str(config), "--out", str(out), "--set", "train.epochs=1"]) == 0
    assert {"config.toml", "last.pt", "best.pt", "summary.json", "tensorboard", "samples"} <= {
        p.name for p in out.iterdir()}
    assert load_toml(out / "config.toml")["train"]["epochs"] == 1
    assert load_checkpoint(out / "last.pt").config["train"]["epochs"] == 1
    assert cli.main(["fit", str(data), "--out", str(out), "--resume", "--set", "train.epochs=2"]) == 0
    assert load_checkpoint(out / "last.pt").epoch == 2
    assert cli.main(["fit", str(data), "--out", str(tmp_path / "x"), "--set", "train.bogus=1"]) == 2


def test_sigkill_then_resume_continues_with_optimizer_state(tmp_path: Path) -> None:
    data, config = write_npz_run(tmp_path, epochs=1000)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "fit", str(data), "--config", str(config),
                             "--out", str(out), "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "last.pt").exists() and load_checkpoint(out / "last.pt").epoch >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = load_checkpoint(out / "last.pt")  # whatever the kill interrupted, the file on disk is whole
    epoch, steps_per_epoch = killed.epoch, killed.step // killed.epoch
    adam_step = int(next(iter(killed.optimizer_state["state"].values()))["step"])
    assert adam_step == killed.step and epoch >= 2
    assert cli.main(["fit", str(data), "--out", str(out), "--resume", "--no-progress",
                     "--set", f"train.epochs={epoch + 2}"]) == 0
    resumed = load_checkpoint(out / "last.pt")
    assert resumed.epoch == epoch + 2 and len(resumed.history) == epoch + 2
    assert resumed.history[:epoch] == killed.history
    assert int(next(iter(resumed.optimizer_state["state"].values()))["step"]) == (epoch + 2) * steps_per_epoch


# ---------------------------------------------------------------------------------------------- hostile input
@pytest.mark.parametrize("failure", ["ENOSPC", "torch-writer"])
def test_a_full_disk_is_one_line_naming_the_file_and_the_last_checkpoint_survives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, failure: str) -> None:
    data, config = write_npz_run(tmp_path, epochs=1, n=16)
    out = tmp_path / "run"
    assert cli.main(["fit", str(data), "--config", str(config), "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()

    def full_disk(obj: object, path: str | Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert cli.main(["fit", str(data), "--out", str(out), "--resume", "--set", "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("trainer fit:")]
    assert line.startswith(f"trainer fit: error: cannot write {out / 'last.pt'}: the disk is full (")
    assert line.endswith("free some space and run again (the previous last.pt is untouched)")
    assert (out / "last.pt").read_bytes() == before and load_checkpoint(out / "last.pt").epoch == 1
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_a_full_disk_under_tensorboard_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from torch.utils.tensorboard import SummaryWriter

    data, config = write_npz_run(tmp_path, epochs=1, n=16)
    events = tmp_path / "run" / "tensorboard" / "events.out.tfevents"

    def full_disk(self: SummaryWriter) -> None:  # TensorBoard's writer thread re-raises its failed write so
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(events))

    monkeypatch.setattr(SummaryWriter, "flush", full_disk)
    assert cli.main(["fit", str(data), "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"trainer fit: error: the disk is full writing {events} (No space left on device); free some space "
        "and run again")


def test_resume_removes_the_temporaries_a_killed_checkpoint_write_left(tmp_path: Path, capsys) -> None:
    data, config = write_npz_run(tmp_path, epochs=1, n=16)
    out = tmp_path / "run"
    assert cli.main(["fit", str(data), "--config", str(config), "--out", str(out)]) == 0
    stale = [".last.k3j_9a2b.tmp.pt", ".best.0qz81x_c.tmp.pt", ".summary.ab12cd34.tmp.json"]
    others = [".last.notours.tmp.pt", ".mine.k3j_9a2b.tmp.pt", "last.k3j_9a2b.tmp.pt", "notes.tmp.pt"]
    for name in stale + others:
        (out / name).write_bytes(b"half written" * 1000)
    assert cli.main(["fit", str(data), "--out", str(out), "--resume", "--set", "train.epochs=2"]) == 0
    assert sorted(p.name for p in out.iterdir() if "tmp" in p.name) == sorted(others)  # only the run's own
    assert "removed 3 half-written temporary files left by a killed run" in capsys.readouterr().err


def test_a_malicious_checkpoint_is_refused_in_one_line_that_never_suggests_unsafe_loading(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"format_version": 1, "model_state": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02garbage" * 50)
    for name in ("evil.pt", "junk.pt"):
        with pytest.raises(KickspaceError) as caught:
            load_checkpoint(tmp_path / name)
        message = str(caught.value)
        assert "\n" not in message and "False" not in message and "weights_only" not in message
        assert message.startswith(f"{tmp_path / name}: ")
    with pytest.raises(KickspaceError, match=r"refused: .*unsupported GLOBAL posix\.system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_fit_over_the_bad_corpus_finishes_and_names_every_skip(tmp_path: Path, capfd) -> None:
    from tests import badfiles
    from runtime.files import printable

    corpus = badfiles.build_corpus(tmp_path / "one shots", unreadable=False)
    try:
        config = tmp_path / "tiny.toml"
        config.write_text(dumps_toml({
            "data": {"spec": spec_table()}, "model": {"preset": "kick", "widths": [8, 16], "latent": 4},
            "objective": OBJECTIVE.to_dict(), "train": {**QUIET.to_dict(), "epochs": 1, "batch_size": 4}}))
        out = tmp_path / "run"
        assert cli.main(["fit", str(corpus.root), "--config", str(config), "--out", str(out), "--no-cache",
                         "--no-progress"]) == 0
        err = capfd.readouterr().err
        assert load_checkpoint(out / "last.pt").epoch == 1
        lines = [line for line in err.splitlines() if line.startswith("skip: ")]
        for name in corpus.bad:  # each skip named, on its own line
            assert sum(line.startswith(f"skip: {printable(corpus.root / name)}: ") for line in lines) == 1, name
        assert len(lines) == len(corpus.bad)
    finally:
        badfiles.remove(corpus.root)


def test_consistency_term_trains_the_decoder_through_a_frozen_critic() -> None:
    from trainer.batches import Batch
    from trainer.fit import make_critic, train_step
    from trainer.vae import build_model

    torch.manual_seed(0)
    config = dataclasses.replace(MODEL, controls=("decay", "punch"), control_mean=(0.0, 0.0), control_std=(1.0, 1.0))
    model = build_model(config)
    objective = dataclasses.replace(OBJECTIVE, consistency_weight=0.5)
    assert make_critic(build_model(MODEL), objective) is None  # no controls, no term
    assert make_critic(model, dataclasses.replace(objective, consistency_weight=0.0)) is None
    critic = make_critic(model, objective)
    assert all(not p.requires_grad for p in critic.parameters())
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    batch = Batch(torch.as_tensor(kick_features(8)), None, None, torch.randn(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    parts = train_step(model, optimizer, batch, step=0, objective=objective, grad_clip=0.0, critic=critic)
    assert float(parts.consistency) > 0 and parts.total.requires_grad is False
    assert model.from_latent.weight.grad is not None and model.control_proj[0].weight.grad.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in critic.state_dict().items())
