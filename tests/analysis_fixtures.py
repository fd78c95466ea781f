"""One tiny trained run shared by the analysis tests: procedural kicks at 8 kHz, a small VAE, a few seconds.

The kicks come from :mod:`trainer.data.synth` (known, varied sub / drive / click / brightness / decay), so the
descriptors of the corpus and of the model's outputs are meaningful. Session-scoped: trained once per test run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from runtime.spec import SpectrogramSpec
from trainer.analysis.run import Run, load_corpus, load_run
from trainer.config import TrainConfig
from trainer.data import synth
from trainer.data.arrays import TrainingArrays
from trainer.data.ingest import Corpus
from trainer.fit import fit
from trainer.objective import ObjectiveConfig
from trainer.vae import ModelConfig

SPEC = SpectrogramSpec(sample_rate=8000, n_fft=128, hop_length=32, win_length=128, n_mels=32, frames=64)
MODEL = ModelConfig(input_shape=SPEC.shape, widths=(8, 16), latent=6)
OBJECTIVE = ObjectiveConfig(beta=1e-4, beta_warmup_steps=50, free_bits=0.1)
TRAIN = TrainConfig(epochs=12, batch_size=8, lr=3e-3, patience=0, progress=False, media_every=0, n_media=0,
                    threads=1)
N_TRAIN, N_HELD_OUT = 64, 16
#: The control-conditioned variant: the decoder also takes the brightness and sub of each kick (decay is no use at
#: this spec: most tiny kicks ring past its 0.26 s clip).
CONTROLLED = dataclasses.replace(MODEL, controls=("brightness", "sub"))


@dataclass(frozen=True)
class TinyRun:
    """The trained run, its training corpus and a held-out corpus (ingested through the run)."""

    folder: Path
    run: Run
    train: Corpus
    held_out: Corpus
    train_root: Path
    held_out_root: Path


def _corpus(root: Path, *, n: int, seed: int, cache: Path, run: Run | None = None) -> Corpus:
    synth.write_corpus(root, n=n, seed=seed, sample_rate=SPEC.sample_rate)
    if run is not None:
        return load_corpus(run, [root], cache_dir=cache)
    from trainer.data.audio import Preprocess
    from trainer.data.ingest import ingest

    return ingest([root], spec=SPEC, preprocess=Preprocess(), cache_dir=cache, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("analysis")
    cache = base / "cache"
    corpus = _corpus(base / "train_data", n=N_TRAIN, seed=1, cache=cache)
    fit(TrainingArrays(corpus.features), out=base / "run", spec=SPEC, model=MODEL, objective=OBJECTIVE, train=TRAIN)
    run = load_run(base / "run")
    held = _corpus(base / "held_out", n=N_HELD_OUT, seed=2, cache=cache, run=run)
    return TinyRun(folder=base / "run", run=run, train=load_corpus(run, [base / "train_data"], cache_dir=cache),
                   held_out=held, train_root=base / "train_data", held_out_root=base / "held_out")


@pytest.fixture(scope="session")
def tiny_control_run(tiny_run: TinyRun) -> Run:
    """The same corpus through a decoder conditioned on brightness and sub (``model.controls``)."""
    from trainer.descriptors import describe_batch

    torch.set_num_threads(1)
    corpus = tiny_run.train
    arrays = TrainingArrays(corpus.features, descriptors=describe_batch(corpus.audio, SPEC.sample_rate))
    out = tiny_run.folder.parent / "control_run"
    fit(arrays, out=out, spec=SPEC, model=CONTROLLED, objective=OBJECTIVE, train=TRAIN)
    return load_run(out)
