"""No usable default JWT secret (issue 11, item 1): outside development mode a missing,
short or known placeholder secret refuses the service with a clear message that names
the setting, never its value; `make run` keeps a random one per install (0600); compose
and the Kubernetes manifests cannot start on a placeholder."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from devtools.stack import local_jwt_secret
from shared.settings import InsecureSettingsError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _k8s_base_secret() -> str:
    return yaml.safe_load((K8S / "base" / "secret.yaml").read_text())["stringData"]["TB_JWT_SECRET"]


def _k8s_local_overlay() -> dict:
    return yaml.safe_load((K8S / "overlays" / "local" / "kustomization.yaml").read_text())


def _literals(generator: list[dict], name: str) -> dict[str, str]:
    entry = next(g for g in generator if g["name"] == name)
    return dict(literal.split("=", 1) for literal in entry["literals"])


@pytest.fixture(autouse=True)
def _no_ambient_secret(monkeypatch):
    """What the shell exports must not decide these tests."""
    for name in ("TB_JWT_SECRET", "JWT_SECRET", "TB_ENV", "ENV"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("secret", [
    "change-me-in-production",              # the old code default and compose fallback
    _k8s_base_secret(),                      # the base Secret's placeholder
    "x" * 31,                                # too short
    "REPLACE_ME-" + "a" * 40,                # long, but still a placeholder
])
def test_weak_secrets_refuse_outside_development(secret):
    with pytest.raises(ValidationError) as caught:
        Settings(jwt_secret=secret)
    message = str(caught.value.errors()[0]["msg"])
    assert "TB_JWT_SECRET" in message and ("32 bytes" in message or "placeholder" in message)


def test_the_local_overlay_secret_is_refused_outside_development():
    public = _literals(_k8s_local_overlay()["secretGenerator"], "therapybridge-secrets")["TB_JWT_SECRET"]
    with pytest.raises(ValidationError):
        Settings(jwt_secret=public)


def test_missing_secret_refuses_the_signing_service():
    settings = Settings()
    with pytest.raises(InsecureSettingsError, match="TB_JWT_SECRET is not set"):
        settings.jwt_signing_secret()


def test_a_random_secret_is_accepted():
    secret = secrets.token_urlsafe(32)
    assert Settings(jwt_secret=secret).jwt_signing_secret() == secret


def test_development_accepts_placeholders_and_invents_a_missing_secret():
    assert Settings(env="development", jwt_secret="change-me-in-production").jwt_signing_secret()
    invented = Settings(env="development").jwt_signing_secret()
    assert len(invented.encode()) >= 32 and invented != Settings(env="development").jwt_signing_secret()


def test_a_mistyped_mode_is_refused_not_taken_as_development():
    with pytest.raises(ValidationError):
        Settings(env="dev", jwt_secret="change-me-in-production")


def test_the_startup_message_names_the_setting_but_not_the_values():
    weak = "REPLACE_ME-very-private-value"
    with pytest.raises(SystemExit) as caught:
        load_settings("gateway", jwt_secret=weak, database_url="postgresql+asyncpg://u:db-password-xyz@h/db")
    text = str(caught.value.code)
    assert text.startswith("gateway: refusing to start") and "TB_JWT_SECRET" in text
    assert weak not in text and "db-password-xyz" not in text


def test_compose_requires_the_secret():
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app-env"]
    assert env["TB_JWT_SECRET"].startswith("${TB_JWT_SECRET:?"), env["TB_JWT_SECRET"]


def test_only_development_deployments_carry_public_secrets():
    overlay = _k8s_local_overlay()
    config = _literals(overlay["configMapGenerator"], "therapybridge-config")
    assert config.get("TB_ENV") == "development"
    base_config = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())["data"]
    assert base_config.get("TB_ENV", "production") == "production"


def test_make_run_keeps_one_random_secret_per_install(tmp_path):
    state = tmp_path / "var"
    first = local_jwt_secret(state)
    assert len(first.encode()) >= 32 and Settings(jwt_secret=first).jwt_signing_secret() == first
    assert local_jwt_secret(state) == first
    assert stat.S_IMODE(os.stat(state / "jwt_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert local_jwt_secret(tmp_path / "other") != first
