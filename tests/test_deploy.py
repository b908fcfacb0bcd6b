"""deploy/ checked offline, without Docker or a cluster: the Kubernetes manifests against the
schemas kubernetes-validate ships, the compose file against the Compose specification's schema
(vendored by check-jsonschema) and for what a schema cannot see (references, pinned images,
files each process is told to read), the Dockerfile read as text, and every setting named in
deploy/ one that hallflow (settings.py) or Temporal's environment configuration reads."""

import json
import re
import shlex
import tomllib
from functools import cache
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from temporalio.envconfig import ClientConfigProfile

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
KEYS_SCRIPT = DEPLOY / "compose" / "keys.sh"
GENERATED = DEPLOY / "compose" / "keys"  # what keys.sh writes, git-ignored

# The oldest Kubernetes the manifests are written for (deploy/README.md).
KUBERNETES = "1.33.0"
NOT_MANIFESTS = {"kustomization.yaml", "temporal-values.yaml"}
EXAMPLE_ONLY = {"secrets.example.yaml"}  # placeholders: never applied, so not in the kustomization

# Temporal's environment configuration, as the SDK and the temporal CLI read it (security/connection.py).
ENVCONFIG = {
    "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE",
    "TEMPORAL_TLS", "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_CODEC_ENDPOINT", "TEMPORAL_CODEC_AUTH",
}
ENVCONFIG_PREFIX = "TEMPORAL_GRPC_META_"
# Set for Temporal's own Web UI image, not read by hallflow.
TEMPORAL_UI_SETTINGS = {"TEMPORAL_CODEC_INCLUDE_CREDENTIALS"}
# Process-level variables a hallflow container may carry besides settings (deploy/entrypoint.sh).
PROCESS_VARIABLES = {"PGPASSWORD_FILE"}

PINNED_IMAGE = re.compile(r"^[\w./-]+:(?P<tag>v?\d+(\.\d+)+[\w.-]*)(@sha256:[0-9a-f]{64})?$")
SETTING_NAME = re.compile(r"(?<![A-Za-z0-9_])(?:HALLFLOW|TEMPORAL)_[A-Z0-9_]*[A-Z0-9]")

# What each hallflow process must find on disk, by the setting that names the file.
NEEDS = {
    "worker": {"HALLFLOW_DATA_KEYS_FILE", "HALLFLOW_WORKER_KEY", "HALLFLOW_KEYS_FILE", "PGPASSWORD_FILE"},
    "codec-server": {"HALLFLOW_DATA_KEYS_FILE", "HALLFLOW_CODEC_TOKEN_FILE"},
    "admin-setup": {"HALLFLOW_DATA_KEYS_FILE"},
}
NEEDS_TEMPORAL = {"worker", "admin-setup"}  # the codec server never talks to Temporal


def load_all(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and GENERATED not in p.parents and p.name != ".env")


@cache
def manifests() -> tuple:
    return tuple(
        (path.name, doc) for path in sorted(K8S.glob("*.yaml")) if path.name not in NOT_MANIFESTS for doc in load_all(path)
    )


def find(kind: str, name: str) -> dict:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name} in deploy/k8s, found {len(found)}"
    return found[0]


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), comments dropped and continued lines joined."""
    instructions, current = [], ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            current = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


@cache
def image_env() -> dict[str, str]:
    env = {}
    for word, rest in final_stage():
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def settings_env() -> set[str]:
    return {f"HALLFLOW_{name.upper()}" for name in Settings.model_fields}


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def hallflow_pods():
    """(component, pod spec, container) for each hallflow workload in deploy/k8s."""
    for _, doc in manifests():
        if doc["kind"] in ("Deployment", "Job"):
            spec = doc["spec"]["template"]["spec"]
            for container in spec["containers"]:
                yield doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"], spec, container


def container_env(container: dict) -> dict[str, str]:
    env = dict(image_env())
    for source in container.get("envFrom", []):
        env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def mounted_files(spec: dict, container: dict) -> set[str]:
    """Every file path the container sees through its volumes."""
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    paths = set()
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "projected" in volume:
            sources = [(s, "Secret", s["secret"]["name"]) for s in volume["projected"]["sources"]]
        elif "secret" in volume:
            sources = [(volume["secret"], "Secret", volume["secret"]["secretName"])]
        elif "configMap" in volume:
            sources = [(volume["configMap"], "ConfigMap", volume["configMap"]["name"])]
        else:
            continue
        for source, kind, name in sources:
            inner = source.get("secret", source)
            target = find(kind, name)
            keys = set(target.get("stringData", {})) | set(target.get("data", {}))
            items = inner.get("items") or [{"key": key, "path": key} for key in keys]
            for item in items:
                assert item["key"] in keys, f"{kind} {name} has no key {item['key']}"
                paths.add(f"{mount['mountPath']}/{item['path']}")
    return paths


def profile(text: str, name: str) -> ClientConfigProfile:
    return ClientConfigProfile.load(profile=name, config_source=text, disable_env=True, config_file_strict=True)


# --- every file ------------------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses():
    yamls = [p for p in deploy_files() if p.suffix in (".yaml", ".yml")]
    assert {p.name for p in yamls} >= {"docker-compose.yml", "temporal-values.yaml", "kustomization.yaml"}
    for path in yamls:
        assert load_all(path), f"{path.relative_to(ROOT)} is empty"


def test_every_setting_named_in_deploy_is_one_that_hallflow_or_temporal_reads():
    known_hallflow = settings_env()
    known_temporal = ENVCONFIG | TEMPORAL_UI_SETTINGS
    unknown = set()
    for path in deploy_files():
        for name in set(SETTING_NAME.findall(path.read_text(encoding="utf-8"))):
            if name.startswith("HALLFLOW_") and name not in known_hallflow:
                unknown.add(f"{path.relative_to(ROOT)}: {name}")
            if name.startswith("TEMPORAL_") and name not in known_temporal and not name.startswith(ENVCONFIG_PREFIX):
                unknown.add(f"{path.relative_to(ROOT)}: {name}")
    assert not unknown, "not a setting of settings.py nor of Temporal's environment configuration:\n" + "\n".join(
        sorted(unknown)
    )


def test_a_hallflow_container_is_given_only_settings_hallflow_reads():
    allowed = settings_env() | ENVCONFIG | PROCESS_VARIABLES
    given = {}
    for component, _, container in hallflow_pods():
        given[f"k8s {component}"] = set(container_env(container)) - set(image_env())
    for name, service in hallflow_services().items():
        given[f"compose {name}"] = set(service.get("environment", {}))
    given["image"] = {name for name in image_env() if name.startswith(("HALLFLOW_", "TEMPORAL_"))}
    for where, names in given.items():
        assert names <= allowed, f"{where}: {sorted(names - allowed)}"


def test_no_key_or_password_is_written_into_deploy():
    real_key = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|secret\s*=\s*\"[A-Za-z0-9+/]{16,}")
    for path in deploy_files():
        assert not real_key.search(path.read_text(encoding="utf-8")), f"{path.relative_to(ROOT)} holds key material"
    ignored = (ROOT / "deploy" / ".gitignore").read_text(encoding="utf-8").split()
    assert {"compose/keys/", ".env"} <= set(ignored)


# --- Dockerfile ------------------------------------------------------------------------------


def test_the_image_pins_its_base_and_runs_as_a_user_other_than_root():
    stages, bases = set(), []
    for word, rest in dockerfile():
        if word == "FROM":
            parts = rest.split()
            if parts[0] not in stages:
                bases.append(parts[0])
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    assert bases, "no FROM"
    for base in bases:
        assert PINNED_IMAGE.match(base), f"base image {base} is not pinned to a version"
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"


def test_the_image_is_built_from_the_package_alone_and_carries_no_key():
    copied = " ".join(rest for word, rest in dockerfile() if word in ("COPY", "ADD"))
    assert "COPY . " not in f"COPY {copied}" and " . " not in f" {copied} "
    for kept_out in ("var", "tests", ".venv", ".git"):
        assert not re.search(rf"(^|\s){re.escape(kept_out)}/?(\s|$)", copied), f"{kept_out} is copied into the image"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for package in setuptools["packages"]:
        assert f"{package}/" in copied.split(), f"package {package} is not copied"
    for module in setuptools["py-modules"]:
        assert f"{module}.py" in copied.split(), f"module {module}.py is not copied"
    assert any(word == "RUN" and "pip install ." in rest for word, rest in dockerfile())
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"var/", ".venv", "tests/", "*.key"} <= set(ignore)


def test_the_image_points_every_file_setting_at_its_data_or_at_a_mount():
    env = image_env()
    for name in ("HALLFLOW_CATALOG_FILE", "HALLFLOW_CALENDAR_DIR", "HALLFLOW_RISK_FILE", "HALLFLOW_ORG_FILE"):
        assert env[name].startswith("/opt/hallflow/data/"), name
        assert (ROOT / "data" / env[name].removeprefix("/opt/hallflow/data/")).exists(), f"{name}={env[name]}"
    for name in ("HALLFLOW_KEYS_FILE", "HALLFLOW_WORKER_KEY", "HALLFLOW_SIGNING_KEY", "HALLFLOW_DATA_KEYS_FILE",
                 "HALLFLOW_CODEC_TOKEN_FILE"):
        assert env[name].startswith(("/run/secrets/hallflow/", "/etc/hallflow/")), f"{name}={env[name]}"
    # In a container loopback is the container's own: probes and the UI must reach these.
    assert env["HALLFLOW_CODEC_HOST"] == env["HALLFLOW_METRICS_HOST"] == "0.0.0.0"
    entrypoint = [rest for word, rest in final_stage() if word == "ENTRYPOINT"][-1]
    assert "hallflow-entrypoint" in entrypoint and (DEPLOY / "entrypoint.sh").stat().st_mode & 0o111


# --- Kubernetes ------------------------------------------------------------------------------


def test_the_kubernetes_manifests_match_the_schemas_of_kubernetes():
    assert {doc["kind"] for _, doc in manifests()} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"
    }
    problems = []
    for name, doc in manifests():
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{name} {doc['kind']} {doc['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not problems, "\n".join(problems)


def test_the_kustomization_applies_every_manifest_but_the_example_keys():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    expected = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS - EXAMPLE_ONLY
    assert set(kustomization["resources"]) == expected
    assert [image["newTag"] for image in kustomization["images"] if image["name"] == "hallflow"] == [project_version()]


def test_the_example_keys_are_placeholders():
    for name, doc in manifests():
        if doc["kind"] == "Secret" or name in EXAMPLE_ONLY:
            assert name in EXAMPLE_ONLY, f"{doc['kind']} {doc['metadata']['name']} outside {EXAMPLE_ONLY}"
            assert "data" not in doc or doc["kind"] == "ConfigMap"
            values = doc.get("stringData") or doc.get("data")
            assert values and all(value.startswith("REPLACE_WITH_") for value in values.values()), doc["metadata"]["name"]


def test_each_pod_finds_every_file_its_settings_name():
    seen = set()
    for component, spec, container in hallflow_pods():
        seen.add(component)
        env, files_ = container_env(container), mounted_files(spec, container)
        for setting in NEEDS[component]:
            assert env.get(setting) in files_, f"{component}: {setting}={env.get(setting)} is not mounted"
        if component in NEEDS_TEMPORAL:
            assert "HALLFLOW_TEMPORAL_ADDRESS" not in env, f"{component}: it would override the profile's address"
            assert env["TEMPORAL_CONFIG_FILE"] in files_, f"{component}: no Temporal profile"
            text = find("ConfigMap", "hallflow-temporal-profile")["data"]["temporal.toml"]
            tls = profile(text, env["TEMPORAL_PROFILE"]).tls
            for path in (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key):
                assert str(path) in files_, f"{component}: the profile's {path} is not mounted"
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] and "/tmp" in mounts
        assert spec["securityContext"]["runAsNonRoot"] and spec["automountServiceAccountToken"] is False
        assert PINNED_IMAGE.match(container["image"]) and container["image"].endswith(f":{project_version()}")
    assert seen == set(NEEDS)


def test_the_temporal_profile_is_one_the_sdk_reads_with_a_client_certificate():
    text = find("ConfigMap", "hallflow-temporal-profile")["data"]["temporal.toml"]
    name = find("ConfigMap", "hallflow-settings")["data"]["TEMPORAL_PROFILE"]
    loaded = profile(text, name)
    assert loaded.address and loaded.namespace == "hallflow"
    assert loaded.tls and loaded.tls.client_cert and loaded.tls.client_private_key and loaded.tls.server_root_ca_cert
    mtls = find("Secret", "hallflow-temporal-mtls")
    assert mtls["type"] == "kubernetes.io/tls" and set(mtls["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}


def test_the_worker_probes_its_metrics_endpoint_and_the_codec_server_its_health():
    worker = find("Deployment", "hallflow-worker")["spec"]["template"]["spec"]["containers"][0]
    env = container_env(worker)
    port = {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"]
    assert env["HALLFLOW_METRICS_HOST"] == "0.0.0.0" and int(env["HALLFLOW_METRICS_PORT"]) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe

    codec = find("Deployment", "hallflow-codec-server")
    container = codec["spec"]["template"]["spec"]["containers"][0]
    env = container_env(container)
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert env["HALLFLOW_CODEC_HOST"] == "0.0.0.0" and int(env["HALLFLOW_CODEC_PORT"]) == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    service = find("Service", "hallflow-codec-server")["spec"]
    assert service["selector"].items() <= codec["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


def test_the_autoscaler_owns_the_worker_count():
    hpa = find("HorizontalPodAutoscaler", "hallflow-worker")["spec"]
    worker = find("Deployment", "hallflow-worker")
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hallflow-worker"}
    assert "replicas" not in worker["spec"], "a fixed count would be reset by every apply"
    assert worker["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    pdb = find("PodDisruptionBudget", "hallflow-worker")["spec"]
    assert pdb["minAvailable"] < hpa["minReplicas"]
    assert pdb["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]


def test_the_helm_values_run_temporal_on_postgresql_with_mtls_for_hallflow():
    text = (K8S / "temporal-values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    persistence = values["server"]["config"]["persistence"]
    for store in (persistence["defaultStore"], persistence["visibilityStore"]):
        assert persistence["datastores"][store]["sql"]["pluginName"] == "postgres12", store
    shards = persistence["numHistoryShards"]
    assert shards & (shards - 1) == 0, "a power of two"
    before = text[: text.index("numHistoryShards:")].splitlines()[-6:]
    assert sum(line.strip().startswith("#") for line in before) >= 5, "the shard count states its reason"
    assert {"name": "hallflow", "retention": "30d"} in values["server"]["config"]["namespaces"]["namespace"]
    for image in (values["server"]["image"], values["admintools"]["image"], values["web"]["image"]):
        assert PINNED_IMAGE.match(f"{image['repository']}:{image['tag']}"), image
    frontend = values["server"]["tls"]["frontend"]
    assert frontend["enabled"] and frontend["requireClientAuth"]
    hallflow = profile(find("ConfigMap", "hallflow-temporal-profile")["data"]["temporal.toml"], "hallflow")
    assert hallflow.tls.server_name == frontend["serverName"]
    codec = {e["name"]: e["value"] for e in values["web"]["additionalEnv"]}["TEMPORAL_CODEC_ENDPOINT"]
    assert codec.startswith("https://") and codec.count("/") == 2, "no token in the UI's codec endpoint"


# --- docker compose --------------------------------------------------------------------------


def hallflow_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if s["image"].startswith("hallflow:")}


def mounted(service: dict, kind: str) -> dict[str, str]:
    """target path -> the top-level secret or config it comes from."""
    targets = {}
    for entry in service.get(kind, []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = entry.get("target", source) if isinstance(entry, dict) else source
        targets[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return targets


def test_the_compose_file_matches_the_compose_specification():
    spec = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(spec)(spec)  # the draft its $schema names
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_compose_stack_has_what_the_deployment_needs():
    services = compose()["services"]
    images = {name: s["image"].split(":")[0] for name, s in services.items()}
    assert {"postgres", "temporalio/server", "temporalio/ui", "temporalio/admin-tools", "hallflow"} <= set(images.values())
    commands = {name: s["command"] for name, s in hallflow_services().items()}
    assert commands == {
        "hallflow-setup": ["python", "-m", "starter", "admin", "setup"],
        "worker": ["python", "-m", "worker"],
        "codec-server": ["python", "-m", "security.codec_server"],
    }
    assert services["worker"]["depends_on"]["hallflow-setup"]["condition"] == "service_completed_successfully"
    assert "TEMPORAL_CODEC_ENDPOINT" in services["temporal-ui"]["environment"]


def test_every_reference_in_the_compose_file_resolves():
    spec = compose()
    services = spec["services"]
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is no service"
        for kind in ("secrets", "configs"):
            for source in mounted(service, kind).values():
                assert source in spec.get(kind, {}), f"{name}: {kind} {source} is not declared"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in spec.get("volumes", {}), f"{name}: volume {source} is not declared"
    keys_script = KEYS_SCRIPT.read_text(encoding="utf-8")
    for kind in ("secrets", "configs"):
        for name, declared in spec[kind].items():
            path = (DEPLOY / declared["file"]).resolve()
            if GENERATED in path.parents:
                assert path.name in keys_script, f"{kind} {name}: keys.sh does not write {path.name}"
            else:
                assert path.exists(), f"{kind} {name}: {declared['file']} does not exist"
    for variable in set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text(encoding="utf-8"))):
        assert f"\n{variable}=" in keys_script, f"${{{variable}}}: keys.sh does not write it to deploy/.env"


def test_every_compose_image_is_pinned_to_a_version():
    for name, service in compose()["services"].items():
        image = service["image"]
        assert PINNED_IMAGE.match(image) and ":latest" not in image, f"{name}: {image}"
    for service in hallflow_services().values():
        assert service["image"] == f"hallflow:{project_version()}"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_each_hallflow_service_finds_every_file_its_settings_name():
    for name, service in hallflow_services().items():
        component = {"hallflow-setup": "admin-setup"}.get(name, name)
        env = {**image_env(), **service.get("environment", {})}
        files_ = set(mounted(service, "secrets")) | set(mounted(service, "configs"))
        for setting in NEEDS[component]:
            assert env.get(setting) in files_, f"{name}: {setting}={env.get(setting)} is not mounted"
        assert service["read_only"] and "/tmp" in service["tmpfs"]


def test_the_compose_health_checks_and_the_codec_endpoint_meet_the_processes():
    services = compose()["services"]
    worker = services["worker"]
    assert worker["environment"]["HALLFLOW_METRICS_HOST"] == "0.0.0.0"
    assert f":{worker['environment']['HALLFLOW_METRICS_PORT']}/metrics" in " ".join(worker["healthcheck"]["test"])
    codec = services["codec-server"]
    port = codec["environment"]["HALLFLOW_CODEC_PORT"]
    assert f":{port}/healthz" in " ".join(codec["healthcheck"]["test"])
    assert f"127.0.0.1:{port}:{port}" in codec["ports"]
    ui = services["temporal-ui"]
    assert ui["environment"]["TEMPORAL_CODEC_ENDPOINT"].startswith(f"http://localhost:{port}/")
    ui_port = ui["ports"][0].split(":")[1]
    assert f"http://localhost:{ui_port}" in codec["environment"]["HALLFLOW_CODEC_ORIGINS"].split(",")
    for service in services.values():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{published} is published beyond this machine"
