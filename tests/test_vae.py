"""The (C)VAE and its config: shapes, named seeds, config round trip, conditioning."""

from __future__ import annotations

import pytest
import torch

from runtime.errors import ConfigError
from trainer.vae import CONTROL_LOGVAR, MODEL_CONFIGS, ModelConfig, build_model, get_model_config

SMALL = ModelConfig(input_shape=(1, 32, 32), widths=(8, 16), latent=4)


@pytest.mark.parametrize("kernel", [3, 4, 5])
@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_encode_decode_sample_shapes(kernel: int, norm: str) -> None:
    model = build_model(ModelConfig(input_shape=(2, 32, 16), widths=(8, 16, 16), latent=6, kernel=kernel, norm=norm))
    x = torch.rand(3, 2, 32, 16) * 2 - 1
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 6)
    out = model(x)
    assert out.recon.shape == x.shape and out.z.shape == (3, 6)
    assert model.sample(5).shape == (5, 2, 32, 16)
    assert out.recon.abs().max() <= 1.0  # tanh output stays in the feature range


def test_named_seed_configs_match_the_issue() -> None:
    kick, timbre = get_model_config("kick"), get_model_config("timbre")
    assert kick.widths == (16, 32, 64, 128) and kick.latent == 16 and kick.input_shape == (1, 128, 128)
    assert timbre.widths == (16, 32, 64) and timbre.latent == 32 and timbre.input_shape == (1, 80, 128)
    model = build_model(timbre).eval()
    assert model.decode(torch.zeros(1, 32)).shape == (1, 1, 80, 128)
    with pytest.raises(ConfigError, match="model.preset"):
        get_model_config("nope")
    assert set(MODEL_CONFIGS) == {"kick", "timbre"}


def test_config_round_trip_and_field_errors() -> None:
    config = ModelConfig(input_shape=(1, 32, 32), widths=(8, 16), latent=4, n_classes=3, pitch_conditioning=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="model.depth"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 3})
    with pytest.raises(ConfigError, match="model.widths.*divisible by 8"):
        ModelConfig(input_shape=(1, 36, 32), widths=(8, 16, 32))
    with pytest.raises(ConfigError, match="model.norm"):
        ModelConfig(norm="layer")


def test_same_config_and_seed_give_the_same_weights() -> None:
    torch.manual_seed(3)
    a = build_model(SMALL).state_dict()
    torch.manual_seed(3)
    b = build_model(SMALL).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cvae_condition_reaches_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    config = ModelConfig(input_shape=(1, 32, 32), widths=(8, 16), latent=4, n_classes=2, pitch_conditioning=True)
    model = build_model(config).eval()
    with torch.no_grad():  # untrained embeddings are random, so a different label must change the output
        for emb in (model.condition.classes, model.condition.pitches):
            emb.weight.normal_()
    x, z = torch.rand(2, 1, 32, 32), torch.randn(2, 4)
    zero, one = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    assert not torch.allclose(model.decode(z, zero), model.decode(z, one))
    assert not torch.allclose(model.encode(x, zero)[0], model.encode(x, one)[0])
    assert not torch.allclose(model.decode(z, zero, torch.tensor([36, 36])), model.decode(z, zero, torch.tensor([60, 60])))
    unknown = model.decode(z, torch.tensor([-1, -1]))  # -1 = unlabelled -> the learned "unknown" row
    assert torch.allclose(unknown, model.decode(z, None))
    assert model.sample(3, label=1, pitch=40).shape == (3, 1, 32, 32)
    with pytest.raises(ConfigError, match="label"):
        model.decode(z, torch.tensor([2, 0]))


def test_plain_vae_has_no_condition_parameters() -> None:
    model = build_model(SMALL)
    assert not SMALL.conditional and SMALL.cond_dim == 0
    assert not any("condition" in name or ".cond." in name for name, _ in model.named_parameters())


# ------------------------------------------------------------------------------------- control conditioning
CONTROLLED = ModelConfig(input_shape=(1, 32, 32), widths=(8, 16), latent=4, controls=("decay", "punch"),
                         control_mean=(-2.0, 0.3), control_std=(0.5, 0.1))


def test_control_model_decodes_a_code_of_latent_plus_controls() -> None:
    torch.manual_seed(0)
    model = build_model(CONTROLLED).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert model.code_size == CONTROLLED.code_size == 6
    mu, logvar = model.encode(x)
    assert mu.shape == (3, 4)
    code_mu, code_logvar = model.encode_code(x)
    assert code_mu.shape == code_logvar.shape == (3, 6)
    torch.testing.assert_close(code_mu[:, :4], mu)
    assert torch.all(code_logvar[:, 4:] == CONTROL_LOGVAR)
    assert model.decode(code_mu).shape == (3, 1, 32, 32)
    out = model(x, controls=torch.zeros(3, 2))
    assert out.recon.shape == x.shape and out.controls.shape == (3, 2)
    assert model.sample(2).shape == (2, 1, 32, 32)
    with torch.no_grad():  # the control columns reach the output: two control values, two different sounds
        a = model.decode(torch.cat([mu, torch.full((3, 2), -2.0)], dim=1))
        b = model.decode(torch.cat([mu, torch.full((3, 2), 2.0)], dim=1))
    assert (a - b).abs().mean() > 1e-3


def test_control_model_refuses_a_code_without_controls() -> None:
    model = build_model(CONTROLLED)
    with pytest.raises(ConfigError, match=r"z: has 4 columns; this decoder takes 6 \(latent 4 \+ controls"):
        model.decode(torch.zeros(1, 4))
    with pytest.raises(ConfigError, match=r"controls: this model's decoder needs the controls \['decay', 'punch'\]"):
        model(torch.zeros(1, 1, 32, 32))


def test_control_fields_are_checked_by_name() -> None:
    assert ModelConfig.from_dict(CONTROLLED.to_dict()) == CONTROLLED
    with pytest.raises(ConfigError, match=r"model\.controls: unknown descriptor\(s\) \['boom'\]"):
        ModelConfig(controls=("boom",))
    with pytest.raises(ConfigError, match=r"model\.control_mean: needs one value per control \(2\), got 1"):
        ModelConfig(controls=("decay", "sub"), control_mean=(0.0,))
    with pytest.raises(ConfigError, match=r"model\.control_std: must be positive"):
        ModelConfig(controls=("decay",), control_mean=(0.0,), control_std=(0.0,))
