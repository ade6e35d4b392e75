"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas, offline
(kubernetes-validate), and the properties an operator relies on, checked on the files."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.cli import DRAIN_SECONDS

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
VERSION = "1.34.0"  # the schema version the manifests are checked against (offline)


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in documents() if d["kind"] == kind]
    if name is not None:
        found = [d for d in found if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    kinds = set()
    for name, doc in documents():
        try:
            kubernetes_validate.validate(doc, VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} ({doc['kind']} {doc['metadata']['name']}): {exc}")
        kinds.add(doc["kind"])
    assert kinds >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Secret",
        "ConfigMap",
        "Ingress",
    }


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "replicas"), "three"), (("spec", "template", "spec", "unknownField"), True)],
    ids=["wrong type", "unknown field"],
)
def test_the_validator_refuses_a_broken_deployment(path: tuple[str, ...], value: Any):
    """The check above can fail: a wrong type and an unknown field are both refused."""
    broken = copy.deepcopy(one("Deployment"))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_the_deployment_drains_runs_unprivileged_and_probes_the_admin_port():
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pause + DRAIN_SECONDS
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {p["port"] for p in probes.values()} == {"admin"}
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_admin_port_is_reachable_from_monitoring_only():
    policy = one("NetworkPolicy", "line-auth-bff-ingress")
    by_port: dict[str, list[str]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            namespaces = [
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for peer in rule["from"]
            ]
            by_port.setdefault(port["port"], []).extend(namespaces)
    assert by_port == {"http": ["ingress-nginx"], "admin": ["monitoring"]}


def test_the_entry_host_has_no_tls_and_the_bff_host_has():
    entry = one("Ingress", "line-auth-bff-entry")["spec"]
    bff = one("Ingress", "line-auth-bff")["spec"]
    assert "tls" not in entry
    assert bff["tls"][0]["hosts"] == [bff["rules"][0]["host"]]


def test_the_config_map_and_secret_hold_only_settings_the_bff_knows(tmp_path: Path):
    """`check-config` with exactly the pod's environment: no unknown name, no invalid value;
    the only fatal problems are the secret example's placeholders."""
    environ = {**one("ConfigMap")["data"], **one("Secret")["stringData"]}
    run = subprocess.run(
        [sys.executable, "-m", "service", "check-config"],
        env={"PATH": os.environ["PATH"], **environ},
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
    )
    lines = (run.stdout + run.stderr).splitlines()
    assert run.returncode != 0, lines
    unexpected = ("unknown setting", "invalid", "is empty", "another site")
    assert not [line for line in lines if any(u in line for u in unexpected)], lines
    fatal = sorted(line.split()[1].rstrip(":") for line in lines if line.startswith("FATAL"))
    assert fatal == ["BFF_APPS__SHOP__CLIENT_SECRET", "BFF_SESSION_KEYS"], lines
