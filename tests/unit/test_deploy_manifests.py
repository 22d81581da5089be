"""Static checks of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s (kustomize),
Prometheus config + alert rules, Grafana provisioning + dashboard. Fast, no network, no Docker.

Metric names are parsed from shared/telemetry.py and the installed FastStream Prometheus
container, so an alert or panel on a renamed metric fails here instead of silently never firing.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
OVERLAYS = DEPLOY / "k8s" / "overlays"
WORKERS = ("transcriber", "diarizer", "joiner", "notes", "progress")

# Metrics that come from outside the project's code: Prometheus itself and kafka-exporter.
EXTERNAL_METRICS = {"up", "kafka_consumergroup_lag", "kafka_consumergroup_lag_sum"}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "irate", "increase", "delta", "deriv", "histogram_quantile", "max", "min",
    "avg", "count", "on", "ignoring", "and", "or", "unless", "clamp_min", "clamp_max", "abs", "le", "bool",
    "topk", "bottomk", "group_left", "group_right", "offset", "vector", "scalar", "time", "absent", "label_replace",
}


# --------------------------------------------------------------------------- helpers
def load_all(path: Path) -> list[dict]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def procfile() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, cmd = line.split(":", 1)
            out[name.strip()] = cmd.strip()
    return out


def project_metrics() -> set[str]:
    """Metric names declared in shared/telemetry.py (first argument of Counter/Gauge/Histogram)."""
    tree = ast.parse((ROOT / "shared" / "telemetry.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"Counter", "Gauge", "Histogram"}:
            if node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    assert names, "no metrics parsed from shared/telemetry.py"
    return names


def faststream_metrics() -> set[str]:
    import faststream.prometheus.container as container

    src = Path(container.__file__).read_text()
    names = {f"faststream_{m}" for m in re.findall(r'f"\{metrics_prefix\}_(\w+)"', src)}
    assert "faststream_received_processed_messages_total" in names
    return names


def exposed_series(names: set[str], histograms: set[str]) -> set[str]:
    """Series names Prometheus stores: counters get _total already in their name; histograms
    get _bucket/_sum/_count; prometheus_client also exposes _created."""
    out = set(names)
    for n in histograms:
        out |= {f"{n}_bucket", f"{n}_sum", f"{n}_count"}
    return out


def known_series() -> set[str]:
    ours = project_metrics()
    tree = ast.parse((ROOT / "shared" / "telemetry.py").read_text())
    ours_hist = {
        node.args[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Histogram" and node.args
    }
    fs = faststream_metrics()
    fs_hist = {n for n in fs if n.endswith(("_seconds", "_bytes"))}
    return exposed_series(ours, ours_hist) | exposed_series(fs, fs_hist) | EXTERNAL_METRICS


def metric_names_in(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names (not functions, keywords,
    label names inside {...} or by (...), or template variables)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)                    # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)                   # ranges
    expr = re.sub(r'"[^"]*"', "", expr)                      # strings
    expr = re.sub(r"\$\w+", "", expr)                        # grafana variables
    tokens = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d+(e\d+)?", t)}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def topics() -> set[str]:
    from shared.contracts.events import all_topics

    return set(all_topics())


# --------------------------------------------------------------------------- every YAML parses
def all_yaml_files() -> list[Path]:
    files = [ROOT / "docker-compose.yml", *DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]
    return sorted(set(files))


@pytest.mark.parametrize("path", all_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"


# --------------------------------------------------------------------------- Dockerfile
def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # A registry's python:3.11-slim by default; any Debian Python 3.11 base (the debootstrap
    # stand-in of deploy/podman/base-image.sh) through the build argument.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"' in text
    assert "torch.version.cuda is None" in text, "the build must refuse a CUDA torch"
    assert re.search(r"pip install (--no-deps )?\.", text)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "the image must run as a non-root user"
    for needed in ("alembic.ini", "migrations", "shared", "services", "docs/events"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", text, re.M), f"image lacks {needed}"
    copied = re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
    assert not any("devtools" in c or c.split()[0] in (".", "./") for c in copied), \
        "devtools/ is development-only and must not enter the image"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".venv" in ignore and ".git" in ignore and "devtools" in ignore
    # deploy/ stays out of the context except the local wheel folder the build stage reads
    assert "deploy" in ignore and "!deploy/wheels" in ignore
    assert (DEPLOY / "wheels" / "README.md").exists()
    assert "deploy/wheels/*.whl" in (ROOT / ".gitignore").read_text().splitlines()


def test_podman_override_replaces_only_what_cannot_run_here() -> None:
    """deploy/compose.podman.yml (deploy/smoke.sh): every service it names exists in the base
    file, runs the TherapyBridge image on the host network, and never redefines a list the
    base sets (podman-compose appends such lists instead of replacing them)."""
    base = compose()["services"]
    override = yaml.safe_load((DEPLOY / "compose.podman.yml").read_text())["services"]
    for name, svc in override.items():
        assert name in base, f"override names {name}, which docker-compose.yml lacks"
        assert "therapybridge:latest" in svc["image"], name
        assert svc["network_mode"] == "host", name
        for key in ("entrypoint", "ports", "healthcheck", "depends_on"):
            assert not (key in svc and key in base[name] and isinstance(base[name][key], (list, dict))), \
                f"{name}: overriding {key} would be merged, not replaced"
    for name in procfile():
        env = override[name]["environment"]
        assert env["TB_KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
        assert env["TB_DATABASE_URL"].startswith("postgresql+asyncpg://postgres@127.0.0.1:5432/")
        assert env["TB_BLOB_BACKEND"] == "local"
    ports = [override[n]["environment"]["TB_METRICS_PORT"] for n in WORKERS]
    assert len(set(ports)) == len(WORKERS), "host networking: every worker needs its own metrics port"
    # the stand-ins the base file's scripts call are executable and the base script calls them
    for tool in ("kafka-topics.sh", "kafka-broker-api-versions.sh"):
        assert (DEPLOY / "podman" / "kafka-bin" / tool).stat().st_mode & 0o111, tool
    assert "/opt/kafka/bin/kafka-topics.sh" in base["topic-init"]["command"][0]
    assert "./deploy/podman/kafka-bin:/opt/kafka/bin:ro" in override["topic-init"]["volumes"]


def test_smoke_script_and_make_target() -> None:
    script = (DEPLOY / "smoke.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert (DEPLOY / "smoke.sh").stat().st_mode & 0o111
    assert "-f docker-compose.yml -f deploy/compose.podman.yml" in script
    assert "trap teardown EXIT" in script and "down -v" in script
    assert "bench/results/containers.json" in script
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^smoke:.*\n\tdeploy/smoke\.sh", make, re.M)
    assert "make smoke" in (ROOT / "README.md").read_text()


# --------------------------------------------------------------------------- docker compose
def test_compose_has_every_service_and_infrastructure() -> None:
    services = compose()["services"]
    for name in procfile():
        assert name in services, f"{name} (Procfile) missing from docker-compose.yml"
    images = {name: s.get("image", "") for name, s in services.items()}
    for infra in ("apache/kafka", "postgres:15", "prom/prometheus", "grafana/grafana", "jaegertracing/", "minio/minio"):
        assert any(img.startswith(infra) for img in images.values()), f"no {infra} service"


def test_compose_commands_match_procfile() -> None:
    services = compose()["services"]
    for name, cmd in procfile().items():
        command = services[name]["command"]
        command = " ".join(command) if isinstance(command, list) else command
        assert command == cmd, f"{name}: compose runs {command!r}, Procfile says {cmd!r}"
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"


def test_compose_wiring() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["python", "-m", "shared.db.bootstrap"]
    assert "8000:8000" in services["gateway"]["ports"]
    for name in procfile():
        s = services[name]
        env = s["environment"]
        assert env["TB_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["TB_KAFKA_SESSION_TIMEOUT_MS"] == "45000"
        assert env["TB_KAFKA_FETCH_MAX_WAIT_MS"] == "100"
        assert env["TB_KAFKA_AUTO_OFFSET_RESET"] == "earliest"
        assert env["TB_OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger:")
        deps = s["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["topic-init"]["condition"] == "service_completed_successfully"
        if name != "gateway":
            assert env["TB_METRICS_PORT"] == "9100"
        assert any(str(v).startswith("blobs:") for v in s["volumes"]), f"{name} lacks the shared blob volume"
    for infra in ("kafka", "postgres"):
        assert services[infra].get("healthcheck"), f"{infra} has no healthcheck"


def test_compose_topic_init_creates_every_topic() -> None:
    init = compose()["services"]["topic-init"]
    declared = set(init["environment"]["TB_TOPICS"].split())
    assert declared == topics(), f"topic-init drifted from all_topics(): {declared ^ topics()}"
    assert int(init["environment"]["PARTITIONS"]) > 1


def test_prometheus_scrapes_every_service() -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in cfg["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert "gateway:8000" in targets
    for worker in WORKERS:
        assert f"{worker}:9100" in targets, f"Prometheus does not scrape {worker}"
    assert any(t.startswith("kafka-exporter:") for t in targets)
    # compose mounts the files it references
    prom = compose()["services"]["prometheus"]
    assert any("alerts.yml" in v for v in prom["volumes"])


# --------------------------------------------------------------------------- kubernetes
def kustomize_resources(directory: Path) -> list[Path]:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [directory / r for r in k.get("resources", [])]


@pytest.mark.parametrize("directory", [K8S_BASE, OVERLAYS / "local", OVERLAYS / "production"],
                         ids=lambda p: p.name)
def test_kustomize_resources_exist(directory: Path) -> None:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for res in kustomize_resources(directory):
        assert res.exists(), f"{directory.name}: resource {res} does not exist"
    for patch in k.get("patches", []):
        if "path" in patch:
            assert (directory / patch["path"]).exists()


def base_objects() -> list[dict]:
    objs = []
    for res in kustomize_resources(K8S_BASE):
        objs += load_all(res)
    return objs


def test_every_service_has_a_deployment_and_service() -> None:
    objs = base_objects()
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    pdbs = {o["metadata"]["name"] for o in objs if o["kind"] == "PodDisruptionBudget"}
    for name, cmd in procfile().items():
        assert name in deployments and name in services and name in pdbs, name
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert " ".join(container["command"]) == cmd
    assert any(o["kind"] == "Ingress" for o in objs)
    jobs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Job"}
    migrate = jobs["migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["python", "-m", "shared.db.bootstrap"]
    topic_env = {e["name"]: e.get("value") for e in jobs["kafka-topics"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert set(topic_env["TB_TOPICS"].split()) == topics()


def _workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["kind"] in ("Deployment", "Job")]


def test_deployments_have_probes_resources_and_run_as_non_root() -> None:
    for obj in _workloads(base_objects()):
        name = obj["metadata"]["name"]
        pod = obj["spec"]["template"]["spec"]
        pod_sec = pod.get("securityContext", {})
        assert pod_sec.get("runAsNonRoot") is True, f"{name}: pod not runAsNonRoot"
        assert pod_sec.get("runAsUser", 0) != 0
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"]:
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{name}: {kind} incomplete"
            sec = c.get("securityContext", {})
            assert sec.get("allowPrivilegeEscalation") is False, name
            assert sec.get("readOnlyRootFilesystem") is True, name
            assert "ALL" in sec.get("capabilities", {}).get("drop", []), name
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in tmp_volumes, f"{name}: read-only root needs an emptyDir /tmp"
            if obj["kind"] == "Deployment":
                for probe in ("readinessProbe", "livenessProbe"):
                    assert probe in c, f"{name}: no {probe}"


def test_probe_paths() -> None:
    deployments = {o["metadata"]["name"]: o for o in base_objects() if o["kind"] == "Deployment"}
    gw = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for worker in WORKERS:
        c = deployments[worker]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        port = int(env["TB_METRICS_PORT"])
        assert port == 9100
        assert c["readinessProbe"]["httpGet"]["path"] == "/metrics"
        named = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert named[c["readinessProbe"]["httpGet"]["port"]] == port


def _mi(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1000 / 1.048576 / 1000, "G": 1000 / 1.048576}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def test_memory_sized_from_measurements() -> None:
    deployments = {o["metadata"]["name"]: o for o in base_objects() if o["kind"] == "Deployment"}

    def mem(name: str, kind: str) -> float:
        return _mi(deployments[name]["spec"]["template"]["spec"]["containers"][0]["resources"][kind]["memory"])

    assert mem("transcriber", "requests") >= 500 and mem("transcriber", "limits") > mem("transcriber", "requests")
    assert mem("diarizer", "requests") >= 1024 and mem("diarizer", "limits") > mem("diarizer", "requests")


def test_keda_scales_every_worker_on_its_consumer_group() -> None:
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in base_objects() if o["kind"] == "ScaledObject"}
    assert set(scaled) == set(WORKERS)
    for worker, obj in scaled.items():
        trigger = obj["spec"]["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == worker
        assert int(trigger["metadata"]["lagThreshold"]) >= 1


def test_worker_consumer_groups_are_the_service_names() -> None:
    """The KEDA groups above must match the group each worker subscribes with: the one its
    declaration in shared/topology.py names (tests/unit/test_topology.py checks main.py
    subscribes from that declaration)."""
    from shared.topology import SERVICES

    for worker in WORKERS:
        assert SERVICES[worker].group == worker, f"{worker} does not subscribe as group {worker!r}"


def test_secret_placeholders_are_marked() -> None:
    secret = next(o for o in base_objects() if o["kind"] == "Secret")
    for key in ("TB_JWT_SECRET", "TB_DATABASE_URL", "TB_LLM_API_KEY"):
        assert "REPLACE_ME" in secret["stringData"][key]


def test_configmap_keys_are_settings() -> None:
    from shared.settings import ENV_PREFIX, Settings

    known = {f"{ENV_PREFIX}{n.upper()}" for n in Settings.model_fields} | {"TB_KAFKA_TOPIC_REPLICATION_FACTOR"}
    cm = next(o for o in base_objects() if o["kind"] == "ConfigMap")
    unknown = set(cm["data"]) - known
    assert not unknown, f"ConfigMap keys that are no setting: {unknown}"
    env = compose()["x-app-env"]
    assert not (set(env) - known), set(env) - known


KUSTOMIZE_DIRS = [K8S_BASE, OVERLAYS / "local", OVERLAYS / "production"]
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) not installed: `make system-deps`")


def kustomize_build(directory: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@needs_kubectl
@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda p: p.name)
def test_kustomize_builds(directory: Path) -> None:
    objs = kustomize_build(directory)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("Deployment") == len(procfile())
    assert all(o["metadata"].get("namespace") == "therapybridge" for o in objs if o["kind"] != "Namespace")
    if directory.name == "local":
        assert "ScaledObject" not in kinds and kinds.count("StatefulSet") == 2
        assert all(o["spec"]["replicas"] == 1 for o in objs if o["kind"] == "Deployment")
    if directory.name == "production":
        assert kinds.count("ScaledObject") == len(WORKERS)
        assert all(o["spec"]["replicas"] >= 2 for o in objs if o["kind"] == "Deployment")


# --------------------------------------------------------------------------- Kubernetes OpenAPI schemas
# Every object kustomize emits is checked against the Kubernetes API's OpenAPI schema as the
# official Python client's generated models carry it: every field must exist in the model (no
# misspelt or misplaced keys, which kubectl would reject or silently drop), every value must
# have the model's type, and the models' own constructors then check required fields and enums.
kube_client = pytest.importorskip("kubernetes.client")

# Custom resources have no model in the Kubernetes client: KEDA's ScaledObject is checked by hand.
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject")}
# resource.Quantity and IntOrString are "int or string" in the API; the client types quantities as str.
QUANTITY_MAPS = {"limits", "requests", "capacity", "hard"}


def model_class(api_version: str, kind: str):
    version = api_version.rsplit("/", 1)[-1]
    name = version[0].upper() + version[1:] + kind
    return getattr(kube_client, name, None)


def schema_errors(value, type_name: str, path: str) -> list[str]:
    """Where `value` departs from the client model type `type_name` (e.g. 'V1PodSpec', 'list[V1Container]')."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict["):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        if inner == "str" and path.rsplit(".", 1)[-1] in QUANTITY_MAPS:
            inner = "quantity"
        return [e for k, v in value.items() for e in schema_errors(v, inner, f"{path}.{k}")]
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "date": str,
              "quantity": (str, int, float)}
    if type_name == "object":
        return []
    if type_name in scalar:
        ok = isinstance(value, scalar[type_name]) and not (type_name in ("int", "float") and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    klass = getattr(kube_client, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} object, got {type(value).__name__}"]
    json_to_attr = {j: a for a, j in klass.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in json_to_attr:
            errors.append(f"{path}.{key}: no such field in {type_name}")
        elif item is not None:
            errors += schema_errors(item, klass.openapi_types[json_to_attr[key]], f"{path}.{key}")
    return errors


def validate_k8s_object(obj: dict) -> list[str]:
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    where = f"{kind}/{obj.get('metadata', {}).get('name')}"
    klass = model_class(api_version, kind)
    if klass is None:
        return [f"{where}: {api_version} {kind} is no Kubernetes API type"]
    errors = [f"{where} {e}" for e in schema_errors(obj, klass.__name__, "")]
    if not errors:
        try:  # the models' constructors enforce required fields and enum values
            kube_client.ApiClient()._ApiClient__deserialize(obj, klass.__name__)
        except (ValueError, TypeError) as exc:
            errors.append(f"{where}: {exc}")
    return errors


def test_schema_validation_rejects_broken_objects() -> None:
    """The validator itself: misspelt fields, wrong types and missing required fields fail."""
    good = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "x", "image": "x",
                                                           "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}}
    assert validate_k8s_object(good) == []
    misspelt = json.loads(json.dumps(good))
    misspelt["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy: no such field" in e for e in validate_k8s_object(misspelt))
    wrong_type = json.loads(json.dumps(good))
    wrong_type["spec"]["replicas"] = "two"
    assert any("replicas: expected int" in e for e in validate_k8s_object(wrong_type))
    missing = json.loads(json.dumps(good))
    del missing["spec"]["template"]["spec"]["containers"][0]["name"]
    assert any("name" in e and "None" in e for e in validate_k8s_object(missing))
    assert validate_k8s_object({"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "x"}})


def check_scaled_object(obj: dict) -> list[str]:
    spec = obj.get("spec", {})
    errors = [] if spec.get("scaleTargetRef", {}).get("name") else ["spec.scaleTargetRef.name missing"]
    for trig in spec.get("triggers", []) or [None]:
        if not (isinstance(trig, dict) and trig.get("type") and isinstance(trig.get("metadata"), dict)):
            errors.append(f"trigger without type/metadata: {trig}")
    return [f"ScaledObject/{obj['metadata']['name']}: {e}" for e in errors]


@needs_kubectl
@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda p: p.name)
def test_kustomize_output_matches_the_kubernetes_schemas(directory: Path) -> None:
    objs = kustomize_build(directory)
    assert objs
    errors = []
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            errors += check_scaled_object(obj)
        else:
            errors += validate_k8s_object(obj)
    assert not errors, "\n".join(errors)


def test_extras_match_the_kubernetes_schemas() -> None:
    extras = sorted((DEPLOY / "k8s" / "extras").glob("*.yaml"))
    assert extras
    errors = [e for path in extras for obj in load_all(path) for e in validate_k8s_object(obj)]
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- alerts
def alert_rules() -> list[dict]:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r for g in cfg["groups"] for r in g["rules"]]


def test_alert_rules_reference_existing_metrics() -> None:
    known = known_series()
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"].get("severity")
        unknown = metric_names_in(rule["expr"]) - known
        assert not unknown, f"{rule['alert']}: unknown metrics {unknown}"


def test_alert_thresholds_from_the_seeds() -> None:
    by_name = {r["alert"]: r for r in alert_rules()}
    breaker = by_name["TBCircuitBreakerOpen"]
    assert "tb_circuit_breaker_open" in breaker["expr"] and "== 1" in breaker["expr"]
    assert breaker["for"] == "1m" and breaker["labels"]["severity"] == "page"
    dlq = by_name["TBDeadLetterGrowth"]["expr"]
    assert "increase(tb_dlq_records_total[1h])" in dlq and "> 5" in dlq
    failed = by_name["TBFailedSessionsHigh"]["expr"]
    assert 'tb_sessions_total{status="failed"}' in failed and "0.10" in failed
    slow = by_name["TBTranscriptionSlow"]["expr"]
    assert "tb_stage_real_time_factor_bucket" in slow and "> 0.2" in slow
    assert "tb_consumer_lag" in by_name["TBConsumerLagHigh"]["expr"]


# --------------------------------------------------------------------------- grafana
def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "therapybridge.json").read_text())


def test_dashboard_queries_reference_existing_metrics() -> None:
    known = known_series()
    used: set[str] = set()
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            unknown = names - known
            assert not unknown, f"{panel['title']}: unknown metrics {unknown}"
            used |= names
    # the panels the operators asked for
    for needed in ("tb_sessions_total", "tb_stage_duration_seconds_bucket", "tb_stage_real_time_factor_bucket",
                   "tb_audio_seconds_processed_total", "tb_stage_failures_total", "tb_dlq_records_total",
                   "tb_circuit_breaker_open", "tb_llm_tokens_total", "tb_llm_cost_usd_total",
                   "tb_consumer_lag", "tb_events_published_total", "tb_http_requests_total", "tb_sessions_by_status",
                   "tb_outbox_backlog", "faststream_received_processed_messages_total"):
        assert needed in used, f"dashboard has no panel on {needed}"


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    prom = next(d for d in ds["datasources"] if d["type"] == "prometheus")
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]}
    assert uids == {prom["uid"]}
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "therapybridge.yaml").read_text())
    path = prov["providers"][0]["options"]["path"]
    graf = compose()["services"]["grafana"]
    assert any(v.endswith(f":{path}:ro") and "deploy/grafana/dashboards" in v for v in graf["volumes"])
