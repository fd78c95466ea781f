"""`trainer cluster`: BIC picks the true number of blobs; the command writes centroids, projector and sounds."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tests.analysis_fixtures import tiny_run  # noqa: F401  (session fixture)
import pytest

from runtime.errors import KickspaceError
from trainer.analysis.cluster import PROJECTOR_COLUMNS, character, cluster, select_gmm
from trainer.descriptors import DESCRIPTORS


def test_bic_finds_three_separated_blobs() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]], dtype=float)
    mu = np.vstack([c + rng.standard_normal((40, 3)) for c in centres])
    fit = select_gmm(mu, max_components=6)
    assert fit.components == 3 and fit.counts == [1, 2, 3, 4, 5, 6]
    assert int(np.argmin(fit.bic)) == 2
    found = sorted(fit.centroids.round().tolist())  # back in the original (un-z-scored) space
    assert np.allclose(found, sorted(centres.tolist()), atol=1.0)
    assert sorted(np.bincount(fit.labels).tolist()) == [40, 40, 40]


def test_asked_component_count_is_used_and_the_bic_choice_still_reported() -> None:
    rng = np.random.default_rng(1)
    mu = rng.standard_normal((60, 3))  # one blob: the BIC prefers 1
    fit = select_gmm(mu, max_components=6, components=4)
    assert fit.components == 4 and fit.bic_components == 1 and len(fit.centroids) == 4
    assert sorted(set(fit.labels.tolist())) == [0, 1, 2, 3]
    with pytest.raises(KickspaceError, match="components: 13 clusters need 1 to 6"):
        select_gmm(mu[:30], max_components=20, components=13)


def test_character_names_what_a_group_stands_out_on() -> None:
    rng = np.random.default_rng(2)
    d = np.tile([-20.0, 0.4, -30.0, 2000.0, 0.3, 60.0, 0.5], (100, 1)) * rng.uniform(0.95, 1.05, (100, 7))
    long_deep = np.arange(10)
    d[long_deep, DESCRIPTORS.index("decay")] = 1.2   # four times as long as the rest
    d[long_deep, DESCRIPTORS.index("sub")] = -12.0   # 8 dB more sub
    clicky = np.arange(10, 20)
    d[clicky, DESCRIPTORS.index("click")] = -10.0
    assert character(long_deep, d) == "long deep"
    assert character(clicky, d) == "clicky"
    assert character(np.arange(20, 100), d, words=1) == "typical"


def test_cluster_command_writes_centroids_projector_and_sounds(tiny_run, tmp_path) -> None:  # noqa: F811
    report = cluster(tiny_run.run, tiny_run.train, out=tmp_path, max_components=4)
    saved = json.loads((tmp_path / "centroids.json").read_text())
    k, latent = saved["components"], tiny_run.run.model.config.latent
    assert k == report["components"] == len(saved["centroids"]) and 1 <= k <= 4
    assert sum(c["size"] for c in saved["centroids"]) == len(tiny_run.train)
    assert np.isclose(sum(c["weight"] for c in saved["centroids"]), 1.0)
    assert all(len(c["z"]) == latent for c in saved["centroids"])
    assert min(saved["bic"], key=saved["bic"].get) == str(k) == str(saved["bic_components"])
    assert all(c["name"] for c in saved["centroids"]) and len({c["name"] for c in saved["centroids"]}) == k
    wavs = sorted((tmp_path / "cluster_sounds").glob("cluster_*.wav"))
    assert len(wavs) == k and all(np.abs(sf.read(w)[0]).max() > 1e-3 for w in wavs)
    meta = next((tmp_path / "projector").rglob("metadata.tsv")).read_text().splitlines()
    assert meta[0].split("\t") == [*PROJECTOR_COLUMNS, "audio", "name"] and len(meta) == len(tiny_run.train) + 1
    first = meta[1].split("\t")
    assert first[0].startswith("c") and (tmp_path / "projector" / first[7]).is_file()
    assert list((tmp_path / "projector").rglob("sprite.png"))
    assert f"**{k} components**" in (tmp_path / "clusters.md").read_text()
    assert (tmp_path / "bic.png").stat().st_size > 1000
