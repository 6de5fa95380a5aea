"""Settings: defaults, environment, .env, and errors that name the variable and the fix."""

import pytest
from typer.testing import CliRunner

from chains.settings import Settings, SettingsError, load_settings
from server.cli import app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HFCHAIN_BACKEND", "HFCHAIN_PORT", "HFCHAIN_ENDPOINT_URL", "HFCHAIN_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_run_the_embedded_model_locally():
    settings = load_settings()
    assert settings.backend == "local" and settings.model is None
    assert (settings.host, settings.port, settings.temperature) == ("127.0.0.1", 8000, 0.0)
    assert settings.cache_dir.name == "hfchain"


def test_environment_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("HFCHAIN_PORT=9001\nHFCHAIN_TEMPERATURE=0.5\n")
    monkeypatch.setenv("HFCHAIN_MODEL", "HuggingFaceTB/SmolLM2-360M-Instruct")
    settings = load_settings()
    assert (settings.port, settings.temperature) == (9001, 0.5)
    assert settings.model == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_hf_token_is_read_and_kept_secret(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    settings = load_settings()
    assert settings.hf_token.get_secret_value() == "hf_secret"
    assert "hf_secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HFCHAIN_PORT": "abc"}, "HFCHAIN_PORT"),
        ({"HFCHAIN_PORT": "70000"}, "HFCHAIN_PORT"),
        ({"HFCHAIN_BACKEND": "gpu"}, "HFCHAIN_BACKEND"),
        ({"HFCHAIN_DEVICE": "tpu"}, "HFCHAIN_DEVICE"),
        ({"HFCHAIN_TEMPERATURE": "-1"}, "HFCHAIN_TEMPERATURE"),
        ({"HFCHAIN_BACKEND": "endpoint"}, "set HFCHAIN_ENDPOINT_URL"),
        ({"HFCHAIN_ENDPOINT_URL": "http://x", "HFCHAIN_REPO_ID": "a/b"}, "only one"),
        ({"HFCHAIN_RUNTIME": "tensorrt"}, "HFCHAIN_RUNTIME"),
        ({"HFCHAIN_ONNX_PRECISION": "int8"}, "HFCHAIN_ONNX_PRECISION"),
        ({"HFCHAIN_RUNTIME": "onnx", "HFCHAIN_DTYPE": "float16"}, "HFCHAIN_ONNX_PRECISION=int4|fp32"),
        ({"HFCHAIN_RUNTIME": "onnx", "HFCHAIN_DEVICE": "cuda"}, "HFCHAIN_ONNX_PROVIDER=cuda"),
    ],
)
def test_invalid_values_name_the_variable(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=expected):
        load_settings()


def test_serve_refuses_to_start_with_bad_settings(monkeypatch):
    monkeypatch.setenv("HFCHAIN_PORT", "abc")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "HFCHAIN_PORT" in result.output


def test_serve_help_lists_every_setting():
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in Settings.model_fields:
        assert f"HFCHAIN_{name.upper()}" in result.output
