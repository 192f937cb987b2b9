"""deploy/: compose file and Kubernetes manifests parse, use Triton's ports and health paths,
and reference model names the repository builder generates."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from adinspect.serving.configs import ensemble_steps
from adinspect.serving.contracts import ensemble_model

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
DEMO_PRODUCT = "bottle"


def _generated_models(product: str) -> set[str]:
    return {step.model for step in ensemble_steps(product)} | {ensemble_model(product)}


def _models_in_paths(paths: list[str]) -> set[str]:
    return {m.group(1) for p in paths if (m := re.match(r"^/v2/models/([^/]+)/ready$", p))}


def _k8s(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if doc]


def test_compose_serves_the_repository_on_tritons_ports() -> None:
    compose = yaml.safe_load((DEPLOY / "gpu" / "docker-compose.yml").read_text())
    triton = compose["services"]["triton"]
    assert sorted(triton["ports"]) == sorted(f"{p}:{p}" for p in PORTS.values())
    assert "--model-repository=/models" in triton["command"]
    assert any(v.endswith(":/models:ro") and "model_repository" in v for v in triton["volumes"])
    health = triton["healthcheck"]["test"][-1]
    path = "/" + health.split("/", 3)[-1]
    assert _models_in_paths([path]) <= _generated_models(DEMO_PRODUCT) and _models_in_paths([path])


def test_k8s_deployment_probes_ports_and_volume() -> None:
    (deployment,) = _k8s("deployment.yaml")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == PORTS
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container["startupProbe"]["httpGet"]["path"]
    assert _models_in_paths([startup]) == {ensemble_model(DEMO_PRODUCT)}
    assert "--model-repository=/models" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    (pvc,) = _k8s("pvc.yaml")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_k8s_service_exposes_the_three_ports_of_the_pods() -> None:
    (service,) = _k8s("service.yaml")
    (deployment,) = _k8s("deployment.yaml")
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {name: (number, name) for name, number in PORTS.items()}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_docker_run_line_in_readme_matches_compose() -> None:
    readme = (DEPLOY / "README.md").read_text()
    run = readme[readme.index("docker run") :].split("```")[0]
    for port in PORTS.values():
        assert f"-p {port}:{port}" in run
    assert "/models:ro" in run and "--model-repository=/models" in run
