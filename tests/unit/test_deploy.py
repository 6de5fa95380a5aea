"""deploy/: the recipe's settings exist, its health checks use /ready, and the ports line up."""

import re
from pathlib import Path

import yaml

from chains.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {f"HFCHAIN_{name.upper()}" for name in Settings.model_fields}


def hfchain_names(text: str) -> set[str]:
    return set(re.findall(r"\bHFCHAIN_[A-Z0-9_]+", text))


def test_every_hfchain_variable_in_the_recipe_is_a_setting():
    for name in ("compose.yaml", "Dockerfile", "README.md"):
        unknown = hfchain_names((DEPLOY / name).read_text()) - SETTINGS
        assert not unknown, f"deploy/{name} names unknown settings: {sorted(unknown)}"


def test_compose_runs_replicas_on_postgresql_behind_the_balancer():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert set(services) == {"postgres", "model", "hfchain", "lb"}
    env = services["hfchain"]["environment"]
    assert env["HFCHAIN_SESSIONS_URL"].startswith("postgresql+psycopg://")
    assert env["HFCHAIN_BACKEND"] == "endpoint" and env["HFCHAIN_ENDPOINT_URL"] == "http://model:80"
    assert services["lb"]["depends_on"]["hfchain"]["condition"] == "service_healthy"
    assert services["hfchain"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_image_serves_on_the_port_the_balancer_uses_and_checks_ready():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "HFCHAIN_PORT=8000" in dockerfile and "EXPOSE 8000" in dockerfile
    assert re.search(r"HEALTHCHECK .*\n.*/ready", dockerfile)
    assert "server hfchain:8000" in (DEPLOY / "nginx.conf").read_text()
