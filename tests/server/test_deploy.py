"""deploy/: the compose file and the Kubernetes manifests.

Every Kubernetes object of the base and of each overlay (rendered here the way kustomize merges
them: resources, then strategic-merge patches keyed by `name`) is validated against the
Kubernetes OpenAPI schemas shipped in the `kubernetes-validate` wheel (strict: unknown fields are
errors), offline. Then the properties the line needs are checked: rollout on a fixed GPU pool,
disruption budget, non-root, limits, pinned images, product-independent probes, restricted APIs,
the repository delivered by an init container, gRPC reachable from outside the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import needs_triton, running

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
OVERLAYS = ["nodeport", "loadbalancer", "object-store"]
# oldest and newest Kubernetes minor versions the manifests must be valid for
K8S_VERSIONS = ["1.29.0", "1.37.0"]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize applies it to these files: maps merge, lists of named maps
    merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in patch)
    ):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = _merge(merged[item["name"]], item) if item["name"] in merged else item
        return list(merged.values())
    return patch


def render(directory: Path) -> list[dict]:
    """The objects `kubectl apply -k directory` would create."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text())
        index = next(
            i
            for i, o in enumerate(objects)
            if (o["kind"], o["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
        )
        objects[index] = _merge(objects[index], patch)
    return objects


def _one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


@pytest.mark.parametrize("variant", ["base", *OVERLAYS])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(variant: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install '.[dev]'")
    directory = K8S / "base" if variant == "base" else K8S / "overlays" / variant
    objects = render(directory)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "PodDisruptionBudget"}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install '.[dev]'")
    deployment = _one(render(K8S / "base"), "Deployment")
    broken = _merge(deployment, {"spec": {"strategy": {"rollingUpdate": {"maxSurgee": 0}}}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    broken = _merge(deployment, {"spec": {"replicas": "three"}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_rollout_fits_a_fixed_gpu_pool_and_disruptions_take_one_replica() -> None:
    objects = render(K8S / "base")
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    pdb = _one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_pods_run_unprivileged_with_limits_and_pinned_images() -> None:
    pod = _one(render(K8S / "base"), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        name, _, tag = container["image"].rpartition(":")
        assert name and tag and tag != "latest", container["image"]
        assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    (triton,) = pod["containers"]
    limits, requests = triton["resources"]["limits"], triton["resources"]["requests"]
    assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == 1


def test_triton_probes_ports_and_restricted_apis() -> None:
    pod = _one(render(K8S / "base"), "Deployment")["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == PORTS
    # product-independent: --strict-readiness makes /v2/health/ready wait for every model
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    args = triton["args"]
    assert "--strict-readiness=true" in args and "--model-repository=/models" in args
    restricted = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "restricted" in a}
    assert set(restricted) == {"--grpc-restricted-protocol", "--http-restricted-api"}
    for value in restricted.values():
        groups, key = value.split(":", 1)
        assert "model-repository" in groups.split(",") and "inference" not in groups
        assert key == "admin-key=$(ADMIN_KEY)"
    env = {e["name"]: e for e in triton["env"]}
    assert env["ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "admin-key"


def test_repository_is_delivered_by_an_init_container_and_mounted_read_only() -> None:
    pod = _one(render(K8S / "base"), "Deployment")["spec"]["template"]["spec"]
    init, verify = pod["initContainers"]  # in this order: copy, then the manifest check
    (triton,) = pod["containers"]
    assert verify["command"] == ["python3", "-m", "adinspect.repository.integrity", "/models"]
    assert verify["image"] == triton["image"]  # the adinspect that built the models checks them
    writes = next(m for m in init["volumeMounts"] if m["mountPath"] == "/models")
    reads = next(m for m in triton["volumeMounts"] if m["mountPath"] == "/models")
    assert writes["name"] == reads["name"] and reads["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == reads["name"])
    assert "emptyDir" in volume
    dockerfile = (K8S / "repository.Dockerfile").read_text()
    assert "COPY model_repository /model_repository" in dockerfile and init["command"][-2:] == [
        "/model_repository/.",
        "/models/",
    ]
    cache = next(m for m in triton["volumeMounts"] if m["name"] == "trt-cache")
    from adinspect.repository.settings import RepositorySettings

    assert cache["mountPath"] == RepositorySettings().trt_cache_dir
    synced = _one(render(K8S / "overlays" / "object-store"), "Deployment")["spec"]["template"]["spec"]
    init, verify = synced["initContainers"]
    assert verify["name"] == "verify-repository"
    assert (
        init["command"][:3] == ["aws", "s3", "sync"]
        and init["securityContext"]["allowPrivilegeEscalation"] is False
    )


@pytest.mark.parametrize("overlay, kind", [("nodeport", "NodePort"), ("loadbalancer", "LoadBalancer")])
def test_camera_pcs_reach_grpc_only_through_the_line_service(overlay: str, kind: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    deployment = _one(objects, "Deployment")
    internal = _one(objects, "Service", "adinspect-triton")
    assert internal["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in internal["spec"]["ports"]} == {
        name: (number, name) for name, number in PORTS.items()
    }
    line = _one(objects, "Service", "adinspect-triton-line")
    assert line["spec"]["type"] == kind
    assert line["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert [(p["port"], p["targetPort"]) for p in line["spec"]["ports"]] == [(8001, "grpc")]


def test_compose_serves_the_repository_on_tritons_ports() -> None:
    compose = yaml.safe_load((DEPLOY / "gpu" / "docker-compose.yml").read_text())
    triton = compose["services"]["triton"]
    assert sorted(triton["ports"]) == sorted(f"{p}:{p}" for p in PORTS.values())
    assert "--model-repository=/models" in triton["command"]
    assert any(v.endswith(":/models:ro") and "model_repository" in v for v in triton["volumes"])
    assert triton["healthcheck"]["test"][-1].endswith("/v2/health/ready")


def test_docker_run_line_in_readme_matches_compose() -> None:
    readme = (DEPLOY / "README.md").read_text()
    run = readme[readme.index("docker run") :].split("```")[0]
    for port in PORTS.values():
        assert f"-p {port}:{port}" in run
    assert "/models:ro" in run and "--model-repository=/models" in run


@needs_triton
@pytest.mark.triton
def test_the_deployments_restricted_api_flags_on_a_real_tritonserver(
    identity_repository: Path, tmp_path: Path
) -> None:
    """Triton 2.51 accepts the deployment's exact flags; model-repository calls then need the key,
    inference, health and model config do not."""
    import json
    import urllib.error
    import urllib.request

    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    (triton,) = _one(render(K8S / "base"), "Deployment")["spec"]["template"]["spec"]["containers"]
    key = "k8s-test-key"
    flags = [a.replace("$(ADMIN_KEY)", key) for a in triton["args"] if "restricted" in a]
    with running(identity_repository, tmp_path / "triton.log", extra_args=flags) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.unload_model("identity")
        # Triton 2.51 prefixes the key's gRPC header (found by running it; deploy/README.md says so)
        grpc_header = {"triton-grpc-protocol-admin-key": key}
        index = client.get_model_repository_index(headers=grpc_header, as_json=True)
        assert [m["name"] for m in index["models"]] == ["identity"]
        index_url = f"{server.http_url}/v2/repository/index"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(index_url, data=b"{}", method="POST"), timeout=10)
        request = urllib.request.Request(index_url, data=b"{}", method="POST", headers={"admin-key": key})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert [m["name"] for m in json.loads(answer.read())] == ["identity"]
        assert client.is_server_ready() and client.get_model_config("identity", as_json=True)
        x = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
        x.set_data_from_numpy(np.ones((1, 3), np.float32))
        out = client.infer("identity", [x]).as_numpy("OUTPUT0")
        assert out.tolist() == [[1.0, 1.0, 1.0]]
