"""Static checks of deploy/ (issue 7): the files parse, every FECLUSTER_*
variable they set is a real ``fecluster node`` flag with a value of the right
type, ports agree with the defaults, and the image's entrypoint and health
check exist. No Docker, no Kubernetes needed."""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from frontend import procs
from frontend.config import Config, env_name
from tests.support import Fe

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
DEFAULTS = Config()
FE_SERVICES = ("fe1", "fe2", "fe3")
METRICS_PORT = 8030  # Doris's http_port, the default of `fecluster node --http-port` and `fecluster up`
FIELDS = {env_name(f.name): f for f in fields(Config)}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _manifests() if doc["kind"] == kind]


def _fe_deployment() -> dict[str, Any]:
    [deployment] = [d for d in _objects("Deployment") if d["metadata"]["name"] == "fecluster-fe"]
    return deployment


def _fe_container() -> dict[str, Any]:
    [container] = _fe_deployment()["spec"]["template"]["spec"]["containers"]
    return container


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _resolved(value: str) -> str:
    """Compose's ``${VAR:-default}``, as it would be with VAR unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _dockerfile():
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def _every_setting() -> list[tuple[str, str, str]]:
    """(where, FECLUSTER_* name, literal value or '' when it comes from elsewhere)."""
    found = []
    for name, service in _compose()["services"].items():
        found += [(f"compose {name}", k, _resolved(v)) for k, v in _environment(service).items()]
    for file, doc in _manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            for item in container.get("env", []):
                found.append((f"{file} {container['name']}", item["name"], item.get("value", "")))
    found += [("Dockerfile", k, v) for k, v in _dockerfile_env().items()]
    return [item for item in found if item[1].startswith("FECLUSTER_")]


def _fecluster() -> list[str]:
    script = Path(sys.executable).with_name("fecluster")
    return [str(script)] if script.exists() else [sys.executable, "-m", "frontend.cli"]


# ---------------------------------------------------------------- parsing


def test_compose_and_manifests_parse() -> None:
    compose = _compose()
    assert set(FE_SERVICES) | {"redis", "haproxy"} <= set(compose["services"])
    docs = _manifests()
    assert {doc["kind"] for _, doc in docs} >= {"Deployment", "Service", "Secret", "PodDisruptionBudget"}
    for file, doc in docs:
        assert doc.get("apiVersion") and doc["metadata"].get("name"), f"{file}: {doc.get('kind')} without name"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    images = {image["name"] for image in kustomization.get("images", [])}
    assert _fe_container()["image"].split(":")[0] in images


# ---------------------------------------------------------------- settings


def test_every_fecluster_variable_is_a_node_flag() -> None:
    settings = _every_setting()
    assert len(settings) > 10
    help_text = subprocess.run(
        [*_fecluster(), "node", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for where, name, value in settings:
        assert name in FIELDS, f"{where}: {name} is not a Config field ({sorted(FIELDS)})"
        assert f"env {name})" in re.sub(r"\s+", " ", help_text), f"{where}: `fecluster node --help` lacks {name}"
        if not value:
            continue
        kind = FIELDS[name].type
        if kind in ("int", "float"):
            {"int": int, "float": float}[kind](value)  # raises on a bad value
        elif kind == "bool":
            assert value.lower() in ("1", "0", "true", "false", "yes", "no", "on", "off"), f"{where}: {name}={value}"


def test_each_compose_fe_advertises_its_service_name() -> None:
    services = _compose()["services"]
    secrets = set()
    for name in FE_SERVICES:
        env = _environment(services[name])
        assert env["FECLUSTER_ADVERTISE_HOST"] == name
        assert env["FECLUSTER_REDIS_URL"].startswith("redis://redis:")
        secrets.add(env["FECLUSTER_CLUSTER_SECRET"])
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
    [secret] = secrets  # one shared secret, from the environment, with a default
    match = _INTERPOLATION.fullmatch(secret)
    assert match and match.group(1) == "FECLUSTER_CLUSTER_SECRET" and match.group(2)


def test_kubernetes_fe_env_and_secret() -> None:
    env = {item["name"]: item for item in _fe_container()["env"]}
    assert env["FECLUSTER_ADVERTISE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    ref = env["FECLUSTER_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in _objects("Secret")}
    assert ref["key"] in secrets[ref["name"]]["stringData"]


def test_stop_grace_covers_the_shutdown_grace() -> None:
    container = _fe_container()
    env = {item["name"]: item.get("value") for item in container["env"]}
    grace = float(env.get("FECLUSTER_SHUTDOWN_GRACE") or DEFAULTS.shutdown_grace)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pre_stop_s = float(pre_stop[1]) if pre_stop[0] == "sleep" else 0.0
    teardown = 2.0  # sessions closed, registry cleaned, lease released (Node.shutdown)
    pod = _fe_deployment()["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + grace + teardown + 1
    for name in FE_SERVICES:
        service = _compose()["services"][name]
        compose_grace = float(_environment(service).get("FECLUSTER_SHUTDOWN_GRACE", DEFAULTS.shutdown_grace))
        assert float(service["stop_grace_period"].rstrip("s")) >= compose_grace + teardown + 1


# ---------------------------------------------------------------- ports


def test_ports_match_the_config_defaults() -> None:
    mysql, grpc = DEFAULTS.mysql_port, DEFAULTS.grpc_port
    assert (mysql, grpc) == (9030, 9020)
    # Dockerfile
    exposed = {int(p) for word, rest in _dockerfile() if word == "EXPOSE" for p in rest.split()}
    env = _dockerfile_env()
    http = int(env["FECLUSTER_HTTP_PORT"])  # off by default; the image turns the page, REST and /metrics on
    assert http == METRICS_PORT and exposed == {mysql, grpc, http}
    assert (int(env["FECLUSTER_MYSQL_PORT"]), int(env["FECLUSTER_GRPC_PORT"])) == (mysql, grpc)
    # compose
    for name in FE_SERVICES:
        env = _environment(_compose()["services"][name])
        assert (int(env["FECLUSTER_MYSQL_PORT"]), int(env["FECLUSTER_GRPC_PORT"])) == (mysql, grpc)
        assert int(env["FECLUSTER_HTTP_PORT"]) == METRICS_PORT
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    assert re.search(rf"^\s*bind :{mysql}$", haproxy, re.M)
    for name in FE_SERVICES:
        assert re.search(rf"^\s*server {name} {name}:{mysql}\b", haproxy, re.M), f"haproxy lacks {name}:{mysql}"
        assert re.search(rf"^\s*server {name} {name}:{grpc}\b", haproxy, re.M), f"haproxy lacks {name}:{grpc}"
    assert re.search(r"^\s*balance roundrobin$", haproxy, re.M) and re.search(r"^\s*mode tcp$", haproxy, re.M)
    assert any(p.split(":")[-1] == str(mysql) for p in _compose()["services"]["haproxy"]["ports"])
    # the sessions page and REST through HAProxy, in rotation while /healthz says 200
    assert re.search(rf"^\s*bind :{METRICS_PORT}$", haproxy, re.M)
    for name in FE_SERVICES:
        assert re.search(rf"^\s*server {name} {name}:{METRICS_PORT}\b", haproxy, re.M), f"haproxy lacks {name} http"
    assert re.search(r"^\s*option httpchk GET /healthz$", haproxy, re.M)
    assert any(p.split(":")[-1] == str(METRICS_PORT) for p in _compose()["services"]["haproxy"]["ports"])
    # Kubernetes: named container ports, probes, Services
    container = _fe_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mysql": mysql, "grpc": grpc, "http": METRICS_PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc, probe
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert (int(env["FECLUSTER_MYSQL_PORT"]), int(env["FECLUSTER_GRPC_PORT"])) == (mysql, grpc)
    assert int(env["FECLUSTER_HTTP_PORT"]) == METRICS_PORT
    annotations = _fe_deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    services = {s["metadata"]["name"]: s["spec"] for s in _objects("Service")}
    client = {p["name"]: p for p in services["fecluster"]["ports"]}
    assert client["mysql"]["port"] == mysql and client["mysql"]["targetPort"] in ("mysql", mysql)
    assert client["http"]["port"] == METRICS_PORT and client["http"]["targetPort"] in ("http", METRICS_PORT)
    peers = services["fecluster-peers"]
    assert peers["clusterIP"] == "None"
    assert [(p["name"], p["port"]) for p in peers["ports"]] == [("grpc", grpc)]


def test_selectors_match_the_fe_pods() -> None:
    labels = _fe_deployment()["spec"]["template"]["metadata"]["labels"]
    selectors = [s["spec"]["selector"] for s in _objects("Service") if s["metadata"]["name"].startswith("fecluster")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in _objects("PodDisruptionBudget")]
    selectors.append(_fe_deployment()["spec"]["selector"]["matchLabels"])
    assert len(selectors) == 4
    for selector in selectors:
        assert selector.items() <= labels.items()


# ---------------------------------------------------------------- image


def test_entrypoint_is_the_fecluster_console_script() -> None:
    entrypoints = [yaml.safe_load(rest) for word, rest in _dockerfile() if word == "ENTRYPOINT"]
    assert entrypoints == [["fecluster", "node"]]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    module, _, func = project["scripts"]["fecluster"].partition(":")
    assert (module, func) == ("frontend.cli", "main")
    assert callable(getattr(importlib.import_module(module), func))
    froms = [rest for word, rest in _dockerfile() if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in _dockerfile() if word == "ARG" and "=" in rest)
    assert args.get("PYTHON", "").startswith("python:3.11-slim") and froms[-1] == "${PYTHON}"
    assert any(word == "USER" and not rest.startswith(("root", "0")) for word, rest in _dockerfile())


def test_dockerfile_copies_exist_and_pass_the_dockerignore() -> None:
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if pattern == "**" or fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    sources = []
    for word, rest in _dockerfile():
        if word == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert "README.md" in sources and "deploy/healthcheck.py" in sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert included(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
    assert not included("tests") and not included(".venv")
    healthcheck = next(rest for word, rest in _dockerfile() if word == "HEALTHCHECK")
    assert "/usr/local/lib/fecluster/healthcheck.py" in healthcheck


def test_healthcheck_script_asks_a_live_fe(fe: Fe) -> None:
    script = str(DEPLOY / "healthcheck.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FECLUSTER_")}
    ok = subprocess.run(
        [sys.executable, script, f"127.0.0.1:{fe.grpc_port}"], capture_output=True, text=True, timeout=30, env=env
    )
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stdout + ok.stderr
    env["FECLUSTER_GRPC_PORT"] = str(procs.free_port())  # nothing listens there
    down = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=30, env=env)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr, down.stdout + down.stderr


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_config_is_valid() -> None:
    out = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stdout + out.stderr
