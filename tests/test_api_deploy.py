"""The front door in docker-compose and the Helm chart (tools as in tests/test_deploy.py)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.test_deploy import CHART, _compose_config, _ok, _run, _tool


def _objects(*args: str) -> list[dict[str, Any]]:
    out = _ok(_run(_tool("helm"), "template", "tb", str(CHART), "--namespace", "fleet", "--kube-version", "1.33.0",
                   *args))
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_compose_runs_the_api_with_a_health_check() -> None:
    api = _compose_config()["services"]["api"]
    assert api["command"][:2] == ["toolbag", "api"]
    assert api["environment"]["TOOLBAG_REDIS_URL"] == "redis://redis:6379/0"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert any(str(p.get("published") if isinstance(p, dict) else p).startswith(("8080", "127.0.0.1:8080"))
               for p in api["ports"])


def test_chart_renders_the_api_deployment_service_and_optional_hpa() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    deployment = objects[("Deployment", "tb-toolbag-api")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["toolbag", "api"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    service = objects[("Service", "tb-toolbag-api")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert ("HorizontalPodAutoscaler", "tb-toolbag-api") not in objects
    scaled = {(o["kind"], o["metadata"]["name"]): o for o in _objects("--set", "api.autoscaling.enabled=true")}
    assert "replicas" not in scaled[("Deployment", "tb-toolbag-api")]["spec"]
    assert scaled[("HorizontalPodAutoscaler", "tb-toolbag-api")]["spec"]["maxReplicas"] == 10
    assert not any(o["metadata"]["name"] == "tb-toolbag-api" for o in _objects("--set", "api.enabled=false"))


def test_chart_renders_an_optional_service_monitor_for_the_api() -> None:
    """Off by default; on, it scrapes the api Service's http port at /metrics (the front door serves it without
    a key), with the labels a Prometheus Operator selects on; a bad interval is refused by the values schema."""
    assert not any(o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "tb-toolbag-api" for o in _objects())
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _objects(
        "--set", "api.serviceMonitor.enabled=true", "--set", "api.serviceMonitor.labels.release=kps")}
    monitor = objects[("ServiceMonitor", "tb-toolbag-api")]
    service = objects[("Service", "tb-toolbag-api")]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http" and endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["fleet"]
    refused = _run(_tool("helm"), "template", "tb", str(CHART), "--set", "api.serviceMonitor.interval=soon")
    assert refused.returncode != 0 and "serviceMonitor/interval" in refused.stderr
    lint = _run(_tool("helm"), "lint", "--strict", str(CHART), "--set", "api.serviceMonitor.enabled=true")
    assert lint.returncode == 0, lint.stdout + lint.stderr
