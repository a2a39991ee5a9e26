"""Offline checks of the Ray cluster configs: cluster.yaml (AWS), infra/cluster-gcp.yaml (GCP)
and the KubeRay manifests in infra/kuberay/.

Cluster launcher configs are validated against the JSON schema that ships with the installed Ray
(``ray/autoscaler/ray-schema.json``) and then run through the launcher's own offline steps,
``ray.autoscaler._private.util.prepare_config`` (fills the provider's defaults, merges setup
commands, validates the docker section, fills per-node-type worker bounds) followed by
``validate_config`` (schema again plus the launcher's cross-field rules). The provider bootstrap
(``_bootstrap_config``: IAM, security groups, AMIs, GCP project) needs cloud credentials and is
not called.

The KubeRay CRDs' OpenAPI schemas do not ship in any installed package, so the manifests are
checked against the minimal structural schemas below, written from the required fields of the
ray.io/v1 RayCluster, RayJob and RayCronJob CRDs (KubeRay 1.6: RayCronJob requires
``spec.schedule`` and ``spec.jobTemplate``; a RayCluster spec needs ``headGroupSpec`` with a pod
template whose spec has ``containers``; worker groups need ``groupName`` and ``template``;
``authOptions.mode`` is ``disabled`` or ``token``), plus the project's own rules.

Each ``check_*`` function states one property; the tests run it on the real files, and
``test_checks_reject_broken_configs`` runs it on a broken copy to prove it can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_FILES = {"aws": ROOT / "cluster.yaml", "gcp": ROOT / "infra" / "cluster-gcp.yaml"}
KUBERAY_DIR = ROOT / "infra" / "kuberay"
KUBERAY_FILES = {
    "RayCluster": KUBERAY_DIR / "raycluster.yaml",
    "RayJob": KUBERAY_DIR / "rayjob.yaml",
    "RayCronJob": KUBERAY_DIR / "raycronjob.yaml",
}
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5")


def image_tag() -> str:
    return (ROOT / "infra" / "IMAGE").read_text().strip()


def pyproject_requirement(name: str) -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return next(r for r in reqs if r.name == name)


def dockerfile_ray_version() -> str:
    text = (ROOT / "infra" / "Dockerfile").read_text()
    match = re.search(r"^ARG\s+RAY_VERSION=(\S+)\s*$", text, re.MULTILINE)
    assert match, "infra/Dockerfile declares no ARG RAY_VERSION=<version>"
    return match.group(1)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


# ---------------------------------------------------------------------------------------------
# Ray cluster launcher configs
# ---------------------------------------------------------------------------------------------


def all_commands(cfg: dict) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    cmds = [c for k in keys for c in cfg.get(k) or []]
    for node in cfg.get("available_node_types", {}).values():
        cmds += node.get("initialization_commands") or []
        cmds += node.get("worker_setup_commands") or []
    return cmds


def check_ray_schema(cfg: dict) -> None:
    jsonschema.validate(cfg, ray_schema())


def check_launcher_own_validation(cfg: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["max_workers"] == 0


def check_image(cfg: dict) -> None:
    docker = cfg["docker"]
    assert docker["image"] == image_tag()
    for key in ("head_image", "worker_image"):
        assert docker.get(key, image_tag()) == image_tag(), key
    for name, node in cfg["available_node_types"].items():
        assert node.get("docker", {}).get("worker_image", image_tag()) == image_tag(), name


def check_ray_version_guard(cfg: dict) -> None:
    """The setup guard asserts the same Ray release as the image and pyproject."""
    prefixes = [
        m.group(1)
        for c in cfg["setup_commands"]
        for m in re.finditer(r"ray\.__version__\.startswith\('([^']+)'\)", c)
    ]
    assert prefixes, "no Ray version guard in setup_commands"
    for prefix in prefixes:
        assert dockerfile_ray_version().startswith(prefix), prefix


def check_head_is_cpu_only(cfg: dict) -> None:
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must advertise CPU: 0"
    assert head["resources"].get("GPU", 0) == 0
    node = head["node_config"]
    assert not node.get("guestAccelerators")
    instance = node.get("InstanceType", "")
    assert not instance.startswith(tuple(f + "." for f in GPU_INSTANCE_FAMILIES)), instance


def check_gpu_workers_autoscale(cfg: dict) -> None:
    workers = {
        name: node
        for name, node in cfg["available_node_types"].items()
        if name != cfg["head_node_type"]
    }
    assert workers, "no worker node type"
    for name, node in workers.items():
        gpus = node["resources"].get("GPU", 0)
        assert gpus >= 1, f"{name} requests no GPU"
        assert node.get("min_workers", 0) == 0, name
        assert 0 < node["max_workers"] <= cfg["max_workers"], name
        nc = node["node_config"]
        if cfg["provider"]["type"] == "gcp":
            count = sum(a["acceleratorCount"] for a in nc.get("guestAccelerators", []))
            assert count >= gpus, f"{name}: resources claim {gpus} GPU(s), VM attaches {count}"
            assert {"onHostMaintenance": "TERMINATE"} in nc.get("scheduling", []), name
        else:
            family = nc["InstanceType"].split(".")[0]
            assert family in GPU_INSTANCE_FAMILIES, nc["InstanceType"]


def check_provider(cfg: dict) -> None:
    provider = cfg["provider"]
    assert provider.get("region")
    assert provider.get("cache_stopped_nodes") is True


AUTH_OFF = re.compile(
    r"RAY_AUTH_MODE\s*=\s*(?!token\b)\S+|--no-auth|auth[-_]mode[\"'=\s:]+disabled", re.IGNORECASE
)


def check_auth_stays_on(cfg: dict) -> None:
    cmds = all_commands(cfg)
    for cmd in cmds:
        assert not AUTH_OFF.search(cmd), f"command turns token auth off: {cmd}"
    starts = [c for c in cmds if "ray start" in c]
    assert len(starts) >= 2, "no head/worker ray start commands"
    for cmd in starts:
        assert re.search(r"export RAY_AUTH_MODE=token\s*;[\s\S]*ray start", cmd), cmd
    assert "~/.ray/auth_token" in cfg["file_mounts"], "the auth token is not copied to nodes"


def _dashboard_hosts(cmd: str) -> list[str]:
    words = shlex.split(cmd.replace(";", " ; "))
    hosts = []
    for i, w in enumerate(words):
        if w.startswith("--dashboard-host="):
            hosts.append(w.split("=", 1)[1])
        elif w == "--dashboard-host" and i + 1 < len(words):
            hosts.append(words[i + 1])
    return hosts


def check_dashboard_on_localhost(cfg: dict) -> None:
    head_starts = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    assert head_starts and all("--head" in c for c in head_starts)
    for cmd in head_starts:
        assert _dashboard_hosts(cmd) == ["127.0.0.1"], cmd
    for cmd in all_commands(cfg):
        assert set(_dashboard_hosts(cmd)) <= {"127.0.0.1"}, cmd


def check_project_installed(cfg: dict) -> None:
    assert cfg["file_mounts"].get("~/sennflow") == ".", "the working tree is not synced"
    assert any(
        re.search(r"pip install\b.*\s-e\s+~/sennflow\b", c) for c in cfg["setup_commands"]
    ), "setup_commands do not install the synced project"
    assert ".venv" in cfg.get("rsync_exclude", [])


LAUNCHER_CHECKS = [
    check_ray_schema,
    check_launcher_own_validation,
    check_image,
    check_ray_version_guard,
    check_head_is_cpu_only,
    check_gpu_workers_autoscale,
    check_provider,
    check_auth_stays_on,
    check_dashboard_on_localhost,
    check_project_installed,
]


@pytest.mark.parametrize("check", LAUNCHER_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("cloud", sorted(LAUNCHER_FILES))
def test_launcher_config(cloud: str, check) -> None:
    check(load_yaml(LAUNCHER_FILES[cloud]))


def test_image_and_ray_versions_agree() -> None:
    ray_version = dockerfile_ray_version()
    assert pyproject_requirement("ray").specifier.contains(ray_version), ray_version
    tag = image_tag()
    assert ":" in tag.rsplit("/", 1)[-1] and not tag.endswith(":latest"), tag
    assert f"ray{ray_version}" in tag, "infra/IMAGE does not name the Ray release it carries"


# ---------------------------------------------------------------------------------------------
# KubeRay manifests
# ---------------------------------------------------------------------------------------------

_QUANTITY = {"type": ["string", "integer", "number"]}
_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string"},
        "resources": {
            "type": "object",
            "properties": {
                "limits": {"type": "object", "additionalProperties": _QUANTITY},
                "requests": {"type": "object", "additionalProperties": _QUANTITY},
            },
        },
    },
}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {"containers": {"type": "array", "minItems": 1, "items": _CONTAINER}},
        }
    },
}
_RAY_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}
RAY_CLUSTER_SPEC = {
    "type": "object",
    "required": ["headGroupSpec", "rayVersion"],
    "properties": {
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "authOptions": {
            "type": "object",
            "properties": {"mode": {"enum": ["disabled", "token"]}},
        },
        "headGroupSpec": {
            "type": "object",
            "required": ["template"],
            "properties": {
                "rayStartParams": _RAY_START_PARAMS,
                "serviceType": {"type": "string"},
                "template": _POD_TEMPLATE,
            },
        },
        "workerGroupSpecs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["groupName", "template"],
                "properties": {
                    "groupName": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 0},
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 0},
                    "rayStartParams": _RAY_START_PARAMS,
                    "template": _POD_TEMPLATE,
                },
            },
        },
    },
}
RAY_JOB_SPEC = {
    "type": "object",
    "required": ["entrypoint", "rayClusterSpec"],
    "properties": {
        "entrypoint": {"type": "string"},
        "shutdownAfterJobFinishes": {"type": "boolean"},
        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "backoffLimit": {"type": "integer", "minimum": 0},
        "rayClusterSpec": RAY_CLUSTER_SPEC,
    },
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
}


def _resource(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


KUBERAY_SCHEMAS = {
    "RayCluster": _resource("RayCluster", RAY_CLUSTER_SPEC),
    "RayJob": _resource("RayJob", RAY_JOB_SPEC),
    "RayCronJob": _resource(
        "RayCronJob",
        {
            "type": "object",
            "required": ["schedule", "jobTemplate"],
            "properties": {"schedule": {"type": "string"}, "jobTemplate": RAY_JOB_SPEC},
        },
    ),
}


def cluster_spec(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "RayCronJob":
        spec = spec["jobTemplate"]
    return spec.get("rayClusterSpec", spec)


def job_spec(doc: dict) -> dict:
    return doc["spec"]["jobTemplate"] if doc["kind"] == "RayCronJob" else doc["spec"]


def check_kuberay_schema(doc: dict) -> None:
    jsonschema.validate(doc, KUBERAY_SCHEMAS[doc["kind"]])


def check_kuberay_image(doc: dict) -> None:
    spec = cluster_spec(doc)
    head = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head[0]["image"] == image_tag()
    templates = [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec.get("workerGroupSpecs", [])
    ]
    for template in templates:
        for container in template["spec"]["containers"]:
            assert container["image"] == image_tag(), container["name"]


def check_kuberay_ray_version(doc: dict) -> None:
    version = cluster_spec(doc)["rayVersion"]
    assert version == dockerfile_ray_version()
    assert pyproject_requirement("ray").specifier.contains(version)


def check_kuberay_autoscaling_gpu_workers(doc: dict) -> None:
    spec = cluster_spec(doc)
    assert spec.get("enableInTreeAutoscaling") is True
    gpu_groups = []
    for group in spec.get("workerGroupSpecs", []):
        limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group)
    assert gpu_groups, "no worker group with an nvidia.com/gpu limit"
    for group in gpu_groups:
        assert group.get("minReplicas", 0) == 0 < group["maxReplicas"], group["groupName"]
        assert group.get("minReplicas", 0) <= group.get("replicas", 0) <= group["maxReplicas"]


def check_kuberay_head_takes_no_work(doc: dict) -> None:
    head = cluster_spec(doc)["headGroupSpec"]
    assert head.get("rayStartParams", {}).get("num-cpus") == "0"
    limits = head["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    assert "nvidia.com/gpu" not in limits


def check_kuberay_auth_and_exposure(doc: dict) -> None:
    spec = cluster_spec(doc)
    assert spec.get("authOptions", {}).get("mode") == "token"
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    for template in [head["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]:
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] == "RAY_AUTH_MODE":
                    assert env.get("value") == "token", container["name"]


def check_kuberay_job_runs_sennflow(doc: dict) -> None:
    if doc["kind"] == "RayCluster":
        return
    spec = job_spec(doc)
    assert spec.get("shutdownAfterJobFinishes") is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "sennflow" and argv[1] in {"sweep", "run"}, argv[:2]
    if argv[1] == "sweep":
        assert "search=asha" in argv
    assert "ray.address=auto" in argv, "the job must join the RayJob's cluster"
    # The overrides must compose with the project's Hydra config.
    if argv[1] == "sweep":
        from flows.sweep import compose_sweep

        compose_sweep(argv[2:])
    else:
        from flows.config import compose

        compose(argv[2:])


def check_kuberay_schedule(doc: dict) -> None:
    if doc["kind"] == "RayCronJob":
        assert doc["spec"]["schedule"] == "0 2 * * *"


KUBERAY_CHECKS = [
    check_kuberay_schema,
    check_kuberay_image,
    check_kuberay_ray_version,
    check_kuberay_autoscaling_gpu_workers,
    check_kuberay_head_takes_no_work,
    check_kuberay_auth_and_exposure,
    check_kuberay_job_runs_sennflow,
    check_kuberay_schedule,
]


@pytest.mark.parametrize("check", KUBERAY_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", sorted(KUBERAY_FILES))
def test_kuberay_manifest(kind: str, check) -> None:
    doc = load_yaml(KUBERAY_FILES[kind])
    assert doc["kind"] == kind
    check(doc)


# ---------------------------------------------------------------------------------------------
# Each check fails when its property breaks
# ---------------------------------------------------------------------------------------------


def _set(path: str, value):
    """A mutation that sets a dotted path ("a.b.0.c") in a document."""

    def mutate(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _replace_in_commands(key: str, old: str, new: str):
    def mutate(doc: dict) -> None:
        doc[key] = [c.replace(old, new) for c in doc[key]]

    return mutate


_KR_WORKER = "spec.rayClusterSpec.workerGroupSpecs.0"
BROKEN = [
    ("aws", check_ray_schema, _set("docker.unknown_option", True)),
    ("aws", check_launcher_own_validation, _set("head_node_type", "missing")),
    ("aws", check_image, _set("docker.image", "rayproject/ray:latest")),
    ("gcp", check_image, _set("docker.worker_image", "other:1")),
    ("aws", check_head_is_cpu_only, _set("available_node_types.head_cpu.resources", {"CPU": 4})),
    ("aws", check_gpu_workers_autoscale, _set("available_node_types.gpu_worker.resources", {})),
    ("aws", check_gpu_workers_autoscale, _set("available_node_types.gpu_worker.min_workers", 4)),
    ("gcp", check_gpu_workers_autoscale, _set("available_node_types.gpu_worker.max_workers", 0)),
    (
        "gcp",
        check_gpu_workers_autoscale,
        _set("available_node_types.gpu_worker.node_config.guestAccelerators", []),
    ),
    ("gcp", check_provider, _set("provider.cache_stopped_nodes", False)),
    (
        "aws",
        check_auth_stays_on,
        _replace_in_commands(
            "head_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"
        ),
    ),
    (
        "gcp",
        check_auth_stays_on,
        _replace_in_commands("worker_start_ray_commands", "export RAY_AUTH_MODE=token;", ""),
    ),
    (
        "aws",
        check_dashboard_on_localhost,
        _replace_in_commands("head_start_ray_commands", "127.0.0.1", "0.0.0.0"),
    ),
    (
        "aws",
        check_project_installed,
        _replace_in_commands("setup_commands", "-e ~/sennflow", "sennflow"),
    ),
    ("RayJob", check_kuberay_schema, _set("spec.rayClusterSpec.headGroupSpec", {})),
    ("RayCronJob", check_kuberay_schema, _set("apiVersion", "ray.io/v1alpha1")),
    (
        "RayCluster",
        check_kuberay_image,
        _set("spec.headGroupSpec.template.spec.containers.0.image", "rayproject/ray:2.60.0"),
    ),
    ("RayJob", check_kuberay_ray_version, _set("spec.rayClusterSpec.rayVersion", "2.59.0")),
    (
        "RayJob",
        check_kuberay_autoscaling_gpu_workers,
        _set(f"{_KR_WORKER}.template.spec.containers.0.resources.limits", {"cpu": "4"}),
    ),
    (
        "RayCluster",
        check_kuberay_autoscaling_gpu_workers,
        _set("spec.enableInTreeAutoscaling", False),
    ),
    (
        "RayJob",
        check_kuberay_auth_and_exposure,
        _set("spec.rayClusterSpec.authOptions.mode", "disabled"),
    ),
    (
        "RayCluster",
        check_kuberay_auth_and_exposure,
        _set("spec.headGroupSpec.serviceType", "LoadBalancer"),
    ),
    ("RayJob", check_kuberay_job_runs_sennflow, _set("spec.shutdownAfterJobFinishes", False)),
    ("RayJob", check_kuberay_job_runs_sennflow, _set("spec.entrypoint", "python train.py")),
    (
        "RayJob",
        check_kuberay_job_runs_sennflow,
        _set("spec.entrypoint", "sennflow sweep search=asha ray.address=auto no.such.key=1"),
    ),
    ("RayCronJob", check_kuberay_schedule, _set("spec.schedule", "0 3 * * *")),
    (
        "RayCluster",
        check_kuberay_head_takes_no_work,
        _set("spec.headGroupSpec.rayStartParams", {}),
    ),
]


@pytest.mark.parametrize(
    ("target", "check", "mutate"),
    BROKEN,
    ids=[f"{t}-{c.__name__}-{i}" for i, (t, c, _) in enumerate(BROKEN)],
)
def test_checks_reject_broken_configs(target: str, check, mutate) -> None:
    path = LAUNCHER_FILES.get(target) or KUBERAY_FILES[target]
    doc = load_yaml(path)
    check(doc)  # the real file passes ...
    broken = copy.deepcopy(doc)
    mutate(broken)
    with pytest.raises(Exception):  # noqa: B017  ... and the broken copy does not
        check(broken)
