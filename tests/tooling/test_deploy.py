"""Static checks of ``deploy/``: every file parses, commands and schedules are the expected ones, the
shutdown timeouts outlast the worker's job-completion wait, and every metric that an alert or a
dashboard panel queries is one the code exports. No servers; promtool runs only when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from memcompress.metrics import Metrics, RunMetrics
from memcompress.settings import Settings
from memcompress.timing import PROBE_TIMEOUT_S
from memcompress.worker.http_endpoint import LIVENESS_PATH, READINESS_PATH

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "memcompress-dashboard.json"

KEY_FILES = (
    "README.md",
    "cron/memcompress.crontab",
    "systemd/memcompress-run-once.service",
    "systemd/memcompress-run-once.timer",
    "systemd/memcompress-worker@.service",
    "Dockerfile",
    "docker-compose.yml",
    "k8s/worker-deployment.yaml",
    "k8s/run-once-cronjob.yaml",
    "k8s/configmap.yaml",
    "k8s/secret.example.yaml",
    "k8s/migrate-job.yaml",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
    "grafana/memcompress-dashboard.json",
    "grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/memcompress.yml",
)
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(DEPLOY.rglob("*.json"))

JOB_COMPLETION_WAIT_S = Settings.model_fields["job_completion_wait_s"].default
# The image's health check: the worker's own /healthz, asked without starting the CLI.
HEALTH_CHECK = ["python", "-m", "memcompress.probe", "/healthz"]
RUN_ONCE = "memcompress run-once --limit 1000"
# Read by `memcompress run-once`, not part of Settings.
EXTRA_ENV = frozenset({"MEMCOMPRESS_PUSHGATEWAY_URL"})


def _rel(path: Path) -> str:
    return path.relative_to(DEPLOY).as_posix()


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _yaml(path: Path) -> Any:
    (doc,) = _yaml_docs(path)
    return doc


def _seconds(text: str | int) -> int:
    """``90``, ``"90"``, ``"90s"``, ``"1m30s"``, ``"1min 30s"`` -> seconds."""
    if isinstance(text, int):
        return text
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    parts = re.findall(r"(\d+)\s*(h|min|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s", "", value), f"bad duration {text!r}"
    scale = {"h": 3600, "min": 60, "m": 60, "s": 1}
    return sum(int(n) * scale[u] for n, u in parts)


# --- PromQL: which metric names does an expression read? ----------------------------------------------

PROMQL_AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split()  # noqa: SIM905
)
PROMQL_FUNCTIONS = PROMQL_AGGREGATIONS | frozenset(
    """abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
    clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg
    delta deriv double_exponential_smoothing end exp floor histogram_avg histogram_count
    histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
    hour idelta increase info irate label_join label_replace last_over_time ln log10 log2
    mad_over_time max_over_time min_over_time minute month pi predict_linear present_over_time
    quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
    sort_by_label_desc sort_desc sqrt start stddev_over_time stdvar_over_time sum_over_time tan tanh
    time timestamp vector year""".split()  # noqa: SIM905
)
PROMQL_KEYWORDS = frozenset(
    "and or unless by without on ignoring group_left group_right offset bool inf nan".split()  # noqa: SIM905
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers: their label names are not metrics
_RANGES = re.compile(r"\[[^\[\]]*\]")  # [5m], [$__rate_interval], subqueries [1h:5m]
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not glued to a number (1e-9, 26h), a Grafana variable ($x) or another identifier.
_IDENTIFIER = re.compile(r"(?<![\w.$:])([A-Za-z_:][\w:]*)(\s*\()?")


class PromQLRefs(NamedTuple):
    metrics: frozenset[str]
    functions: frozenset[str]


def promql_refs(expr: str) -> PromQLRefs:
    """The metric names and the function names an expression uses (label names, keywords, durations,
    numbers, strings and Grafana variables left out)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _GROUPING.sub(" ", text)  # `sum by (le) (x)` -> `sum  (x)`
    metrics: set[str] = set()
    functions: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if name.lower() in PROMQL_KEYWORDS:
            continue
        (functions if call else metrics).add(name)
    return PromQLRefs(frozenset(metrics), frozenset(functions))


def exported_series() -> frozenset[str]:
    """Every series name the code's registries expose, plus Prometheus' own ``up``.

    A labelled metric with no children yet has no samples, so the exposed names are also derived from the
    family type: a counter is exposed only as ``<name>_total`` (prometheus_client reports the family name
    without the suffix), a histogram as ``_bucket``/``_count``/``_sum``, a gauge under its own name."""
    names = {"up"}
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
    }
    for registry in (Metrics().registry, RunMetrics().registry):
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return frozenset(names)


EXPORTED = exported_series()


def unknown_refs(exprs: Iterator[str] | list[str]) -> dict[str, set[str]]:
    """``{"metrics": names not exported, "functions": names that are not PromQL functions}``."""
    metrics: set[str] = set()
    functions: set[str] = set()
    for expr in exprs:
        refs = promql_refs(expr)
        metrics |= refs.metrics - EXPORTED
        functions |= refs.functions - PROMQL_FUNCTIONS
    return {"metrics": metrics, "functions": functions}


def alert_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in config["groups"] for rule in group["rules"]]


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --- every file parses -----------------------------------------------------------------------------


def test_deploy_files_exist() -> None:
    found = {_rel(path) for path in DEPLOY.rglob("*") if path.is_file()}
    assert found, "deploy/ is empty"
    assert set(KEY_FILES) <= found
    assert {_rel(p) for p in YAML_FILES} >= {f for f in KEY_FILES if f.endswith((".yml", ".yaml"))}
    assert {_rel(p) for p in JSON_FILES} >= {f for f in KEY_FILES if f.endswith(".json")}


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    assert _yaml_docs(path), f"{_rel(path)} holds no document"


@pytest.mark.parametrize("path", JSON_FILES, ids=_rel)
def test_json_parses(path: Path) -> None:
    with path.open(encoding="utf-8") as file:
        assert json.load(file)


def test_readme_indexes_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    files = {_rel(path) for path in DEPLOY.rglob("*") if path.is_file()} - {"README.md"}
    assert {f for f in files if f"`{f}`" not in readme} == set()


# --- the metric-name extractor itself ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "metrics", "functions"),
    [
        ("up", {"up"}, set()),
        ('absent(up{job="memcompress-worker"} == 1)', {"up"}, {"absent"}),
        (
            "histogram_quantile(0.95, sum by (le, summarizer) "
            "(rate(memcompress_llm_request_duration_seconds_bucket[$__rate_interval])))",
            {"memcompress_llm_request_duration_seconds_bucket"},
            {"histogram_quantile", "sum", "rate"},
        ),
        (
            'sum(rate(a_total{outcome="failed", le="+Inf"}[15m])) without (instance) / '
            "on (job) group_left(summarizer) clamp_min(b_total offset 1h, 1e-9) > 26 * 3600",
            {"a_total", "b_total"},
            {"sum", "rate", "clamp_min"},
        ),
        ("max_over_time(g[26h:5m]) and bool c or (d)", {"g", "c", "d"}, {"max_over_time"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)")', {"x"}, {"label_replace"}),
        (
            "time() - max(memcompress_last_scan_timestamp_seconds)",
            {"memcompress_last_scan_timestamp_seconds"},
            {"time", "max"},
        ),
    ],
)
def test_promql_refs(expr: str, metrics: set[str], functions: set[str]) -> None:
    assert promql_refs(expr) == PromQLRefs(frozenset(metrics), frozenset(functions))


def test_extractor_flags_unknown_metrics_and_functions() -> None:
    found = unknown_refs(
        [
            'sum(rate(user_memory_compresions_total{outcome="failed"}[5m]))',  # misspelled
            "rat(memcompress_llm_requests_total[5m])",  # misspelled function
            "user_memory_compressions",  # a counter is exposed only with _total
            "memcompress_queue_depth_count",  # a gauge has no _count
            "user_memory_compression_duration_seconds_bucket + up",  # both fine
        ]
    )
    assert found == {
        "metrics": {
            "user_memory_compresions_total",
            "user_memory_compressions",
            "memcompress_queue_depth_count",
        },
        "functions": {"rat"},
    }


def test_exported_series_are_the_code_names() -> None:
    assert {
        "user_memory_compressions_total",
        "user_memory_compression_duration_seconds_bucket",
        "memcompress_llm_failures_total",
        "memcompress_queue_depth",
        "personalized_memory_worker_errors_total",
        "personalized_memory_worker_last_success_timestamp_seconds",
    } <= EXPORTED
    assert "user_memory_compressions" not in EXPORTED
    assert "memcompress_queue_depth_total" not in EXPORTED


# --- alerts ----------------------------------------------------------------------------------------

REQUIRED_ALERTS = {
    "MemoryWorkerHighErrors",
    "MemoryWorkerLongRunning",
    "MemoryWorkerNoRecentSuccess",
    "MemoryWorkerAbsent",
    "MemoryQueueBacklog",
    "MemoryDeadLettersGrowing",
}


def test_alerts_query_only_exported_metrics() -> None:
    rules = alert_rules(_yaml(ALERTS))
    assert rules
    assert unknown_refs([rule["expr"] for rule in rules]) == {"metrics": set(), "functions": set()}


def test_a_misspelled_metric_in_the_alerts_would_fail() -> None:
    broken = ALERTS.read_text(encoding="utf-8").replace("memcompress_queue_depth", "memcompress_queue_dept")
    rules = alert_rules(yaml.safe_load(broken))
    assert unknown_refs([rule["expr"] for rule in rules])["metrics"] == {"memcompress_queue_dept"}


def test_every_alert_has_severity_summary_and_runbook() -> None:
    rules = alert_rules(_yaml(ALERTS))
    assert all("alert" in rule for rule in rules), "alerts.yml is for alerting rules only"
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    seen = set()
    for rule in rules:
        name = rule["alert"]
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in {"info", "warning", "critical"}, name
        assert str(annotations.get("summary", "")).strip(), name
        assert annotations.get("runbook_url") == f"runbook.md#alert-{name.lower()}", name
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"two {name} rules with the same labels"
        seen.add(key)


def test_every_runbook_url_lands_on_a_runbook_section() -> None:
    headings = [
        line.lstrip("#").strip()
        for line in (ROOT / "runbook.md").read_text().splitlines()
        if line.startswith("#")
    ]
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    for rule in alert_rules(_yaml(ALERTS)):
        assert rule["annotations"]["runbook_url"].split("#", 1)[1] in anchors, rule["alert"]


def test_tl08_alert_thresholds() -> None:
    rules = alert_rules(_yaml(ALERTS))
    exprs: dict[str, str] = {}
    for rule in rules:
        exprs[rule["alert"]] = (exprs.get(rule["alert"], "") + " " + " ".join(rule["expr"].split())).strip()
    # TL-08's alerts as written: more than 5 errors in a run; a run longer than 30 minutes.
    assert exprs["MemoryWorkerHighErrors"] == "personalized_memory_worker_errors_total > 5"
    assert exprs["MemoryWorkerLongRunning"] == "personalized_memory_worker_duration_seconds_sum > 1800"
    # Our ratios beside them, over every user or run that did work.
    assert (
        "errors_total + personalized_memory_worker_users_processed_total" in exprs["MemoryWorkerErrorRatio"]
    )
    assert 'outcome=~"compressed|failed|conflict"' in exprs["MemoryCompressionErrorRatio"]
    assert "26 * 3600" in exprs["MemoryWorkerNoRecentSuccess"]
    assert "> 1000" in exprs["MemoryQueueBacklog"]
    backlog = next(rule for rule in rules if rule["alert"] == "MemoryQueueBacklog")
    assert _seconds(backlog["for"]) == 30 * 60


def test_promtool_accepts_and_unit_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    prometheus = DEPLOY / "prometheus"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ):
        done = subprocess.run(
            [promtool, *args], cwd=prometheus, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_alert_unit_test_series_are_exported() -> None:
    config = _yaml(DEPLOY / "prometheus" / "alerts.test.yml")
    series = [item["series"] for test in config["tests"] for item in test.get("input_series", [])]
    assert unknown_refs(series) == {"metrics": set(), "functions": set()}


# --- Prometheus and Grafana configuration -----------------------------------------------------------


def test_prometheus_scrapes_the_worker_and_the_pushgateway() -> None:
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert "alerts.yml" in config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_targets = [t for sc in jobs["memcompress-worker"]["static_configs"] for t in sc["targets"]]
    assert worker_targets and all(t.endswith(":9108") for t in worker_targets)
    assert jobs["pushgateway"]["honor_labels"] is True
    absent = next(rule for rule in alert_rules(_yaml(ALERTS)) if rule["alert"] == "MemoryWorkerAbsent")
    assert 'job="memcompress-worker"' in absent["expr"]


def test_dashboard_queries_only_exported_metrics() -> None:
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    assert exprs
    assert unknown_refs(exprs) == {"metrics": set(), "functions": set()}


def test_dashboard_covers_the_key_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = dashboard_exprs(dashboard)
    used = set().union(*(promql_refs(expr).metrics for expr in exprs))
    assert {
        "user_memory_compressions_total",
        "user_memory_compression_duration_seconds_bucket",
        "memcompress_llm_requests_total",
        "memcompress_llm_failures_total",
        "memcompress_llm_request_duration_seconds_bucket",
        "memcompress_queue_depth",
        "memcompress_jobs_in_progress",
        "memcompress_dead_letters_total",
        "memcompress_dead_letters_stored",
        "memcompress_events_folded_total",
        "memcompress_events_trimmed_total",
        "memcompress_last_scan_timestamp_seconds",
        "personalized_memory_worker_runs_total",
        "personalized_memory_worker_errors_total",
        "personalized_memory_worker_users_processed_total",
        "personalized_memory_worker_duration_seconds_sum",
        "personalized_memory_worker_last_success_timestamp_seconds",
    } <= used
    quantiles = " ".join(e for e in exprs if "user_memory_compression_duration_seconds_bucket" in e)
    assert "histogram_quantile(0.5," in quantiles
    assert "histogram_quantile(0.95," in quantiles


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = list(dashboard_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all({"h", "w", "x", "y"} <= panel["gridPos"].keys() for panel in panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_grafana_provisioning_matches_compose() -> None:
    (source,) = _yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    (provider,) = _yaml(DEPLOY / "grafana/provisioning/dashboards/memcompress.yml")["providers"]
    mounts = _compose()["services"]["grafana"]["volumes"]
    dashboard_mount = next(m for m in mounts if m.startswith("./grafana/memcompress-dashboard.json:"))
    assert Path(dashboard_mount.split(":")[1]).parent.as_posix() == provider["options"]["path"]


# --- docker --------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.startswith("#")))
    out = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def test_dockerfile() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"
    last_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [rest for keyword, rest in last_stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(
        k == "RUN" and "pip install -c deploy/constraints.txt '.[worker]'" in rest for k, rest in instructions
    )
    final = dict(last_stage)
    assert json.loads(final["ENTRYPOINT"]) == ["memcompress"]
    assert json.loads(final["CMD"]) == ["worker"]
    assert "9108" in final["EXPOSE"].split()
    check = final["HEALTHCHECK"]
    assert json.loads(check[check.index("CMD ") + 4 :]) == HEALTH_CHECK
    assert "docker build -f deploy/Dockerfile" in (DEPLOY / "README.md").read_text(encoding="utf-8")


def test_the_build_context_holds_every_file_the_dockerfile_copies() -> None:
    """Each COPY source (outside ``--from``) exists and is let through by the Dockerfile's .dockerignore."""
    let_through = {
        line[1:]
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources = [
        source
        for keyword, rest in _dockerfile_instructions()
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert "deploy/constraints.txt" in sources and "LICENSE" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in let_through, f"{source} is kept out of the build context"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, equals, version = line.partition("==")
            assert equals and version.strip(), f"not pinned exactly: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_image_constraints_pin_every_worker_dependency_within_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _pins()
    assert "memcompress" not in pins
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["worker"]]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"deploy/constraints.txt pins {name}=={pins[name]}, outside {requirement}"
        )
    assert {"hiredis", "pydantic-core"} <= pins.keys()  # transitive ones too: a full freeze


def _compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "docker-compose.yml")  # type: ignore[no-any-return]


def test_compose_services() -> None:
    services = _compose()["services"]
    assert {"mongo", "redis", "worker", "prometheus", "grafana", "migrate"} <= services.keys()
    assert services["mongo"]["image"] == "mongo:8"
    assert services["redis"]["image"] == "redis:7"
    worker = services["worker"]
    assert worker["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert worker["environment"]["MEMCOMPRESS_MONGODB_URI"] == "mongodb://mongo:27017"
    assert worker["environment"]["MEMCOMPRESS_REDIS_URL"] == "redis://redis:6379/0"
    assert {"mongo", "redis", "migrate"} <= set(worker["depends_on"])
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert _seconds(worker["stop_grace_period"]) > JOB_COMPLETION_WAIT_S
    assert services["migrate"]["command"] == ["migrate"]
    assert " ".join(["memcompress", *services["run-once"]["command"]]) == RUN_ONCE


def test_compose_bind_mounts_exist() -> None:
    services = _compose()["services"]
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert {
        "./prometheus/prometheus.yml",
        "./prometheus/alerts.yml",
        "./grafana/memcompress-dashboard.json",
    } <= set(sources)
    assert [s for s in sources if not (DEPLOY / s).exists()] == []


# --- Kubernetes ----------------------------------------------------------------------------------------


def _k8s() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _yaml_docs(path):
            name = doc.get("metadata", {}).get("name", path.name)
            objects[doc["kind"], name] = doc
    return objects


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container  # type: ignore[no-any-return]


def test_k8s_worker_deployment() -> None:
    objects = _k8s()
    deployment = objects["Deployment", "memcompress-worker"]
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["terminationGracePeriodSeconds"] > JOB_COMPLETION_WAIT_S
    container = _container(pod)
    # Liveness is the worker's event loop (/healthz: no store involved), readiness also Redis (/readyz).
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "metrics"}
    for probe in ("livenessProbe", "readinessProbe"):  # a probe's answer takes two checks at most
        assert container[probe]["timeoutSeconds"] > 2 * PROBE_TIMEOUT_S, probe
    assert {"name": "metrics", "containerPort": 9108, "protocol": "TCP"} in container["ports"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9108"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    refs = {(kind, ref["name"]) for item in container["envFrom"] for kind, ref in item.items()}
    assert refs == {("configMapRef", "memcompress-config"), ("secretRef", "memcompress-secrets")}
    assert ("ConfigMap", "memcompress-config") in objects
    assert ("Secret", "memcompress-secrets") in objects


def test_k8s_run_once_cronjob() -> None:
    cronjob = _k8s()["CronJob", "memcompress-run-once"]
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 2 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    container = _container(spec["jobTemplate"]["spec"]["template"]["spec"])
    assert " ".join([*container["command"], *container["args"]]) == RUN_ONCE
    assert "MEMCOMPRESS_PUSHGATEWAY_URL" in {env["name"] for env in container["env"]}


def test_k8s_migrate_job() -> None:
    job = _k8s()["Job", "memcompress-migrate"]
    container = _container(job["spec"]["template"]["spec"])
    assert [*container["command"], *container["args"]] == ["memcompress", "migrate"]


def test_k8s_configmap_values_are_strings_and_kustomization_resources_exist() -> None:
    objects = _k8s()
    data = objects["ConfigMap", "memcompress-config"]["data"]
    assert all(isinstance(value, str) for value in data.values())
    assert int(data["MEMCOMPRESS_JOB_COMPLETION_WAIT_S"]) < min(
        doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for (kind, _), doc in objects.items()
        if kind == "Deployment"
    )
    kustomization = _yaml(DEPLOY / "k8s" / "kustomization.yaml")
    assert all((DEPLOY / "k8s" / resource).is_file() for resource in kustomization["resources"])


def test_every_env_var_in_deploy_is_a_setting() -> None:
    """Settings ignore unknown variables, so a misspelt name in a deploy file would be silently lost."""
    names: set[str] = set()
    objects = _k8s()
    names |= objects["ConfigMap", "memcompress-config"]["data"].keys()
    names |= objects["Secret", "memcompress-secrets"]["stringData"].keys()
    for (kind, _), doc in objects.items():
        pod = (
            doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            if kind == "CronJob"
            else doc["spec"]["template"]["spec"]
            if kind in {"Deployment", "Job"}
            else None
        )
        if pod is not None:
            names |= {env["name"] for env in _container(pod).get("env", [])}
    for service in _compose()["services"].values():
        names |= {name for name in service.get("environment", {}) if name.startswith("MEMCOMPRESS_")}
    names |= set(re.findall(r"^#?(MEMCOMPRESS_\w+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE))
    assert len(names) > 10
    fields = {f"MEMCOMPRESS_{field.upper()}" for field in Settings.model_fields}
    assert names - fields - EXTRA_ENV == set()


def _commented_defaults() -> dict[str, str]:
    """``#MEMCOMPRESS_X=value`` lines of env.example (values unquoted)."""
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    return {
        name: value.strip("'")
        for name, value in re.findall(r"^#(MEMCOMPRESS_\w+)=(.*)$", text, re.MULTILINE)
        if name not in EXTRA_ENV
    }


def test_env_example_shows_the_defaults() -> None:
    """A commented-out line shows the setting's default (retention: archive), unless the setting has none
    (an endpoint, a key, a limit, a price): then it is an example."""
    defaults = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    shown = _commented_defaults()
    assert shown["MEMCOMPRESS_RETENTION"] == "archive"
    checked = 0
    for variable, value in shown.items():
        name = variable.removeprefix("MEMCOMPRESS_").lower()
        if Settings.model_fields[name].default is None or value == "":
            continue
        given = Settings(_env_file=None, **{name: value}).model_dump()[name]  # type: ignore[arg-type]
        assert given == defaults[name], (
            f"env.example shows {variable}={value}, the default is {defaults[name]}"
        )
        checked += 1
    assert checked >= 10


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 60:g} min"


def _thresholds(rule: dict[str, Any]) -> list[str]:
    """What the README's "fires when" must say of a rule: each threshold it compares with (a ratio as a
    percentage, a time as minutes or hours, a count as it is; "more than" for >, "at least" for >=)
    and how long it must hold (its ``for``)."""
    expr = " ".join(str(rule["expr"]).split())
    timed = "time()" in expr or "_seconds" in expr
    said = []
    for op, number in re.findall(r"(>=|>)\s*(\d+(?:\.\d+)?(?:\s*\*\s*\d+)?)", expr):
        value = eval(number, {})  # digits and "*" only: the regex allows nothing else
        if value == 0:
            continue
        words = "more than" if op == ">" else "at least"
        shown = f"{value * 100:g}%" if value < 1 else _duration(value) if timed else f"{value:g}"
        said.append(f"{words} {shown}")
    if "for" in rule:
        said.append(f"for {_duration(_seconds(rule['for']))}")
    return said


def _readme_alerts() -> dict[str, tuple[str, str]]:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Alerts") :].split("\n\n")[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {
        re.search(r"`(\w+)`", name).group(1): (fires.strip(), severity.strip())  # type: ignore[union-attr]
        for name, fires, severity in rows
    }


def test_the_readme_alerts_table_matches_the_rules() -> None:
    table = _readme_alerts()
    rules = alert_rules(_yaml(ALERTS))
    assert set(table) == {rule["alert"] for rule in rules}, "every rule in the table, and only they"
    for rule in rules:
        fires, severity = table[rule["alert"]]
        assert severity == rule["labels"]["severity"], rule["alert"]
        for words in _thresholds(rule):
            assert words in fires, f"{rule['alert']}: the README says {fires!r}, not {words!r}"


def test_the_alerts_table_check_catches_a_wrong_threshold() -> None:
    long_running = {"expr": "personalized_memory_worker_duration_seconds_sum > 1800"}
    assert _thresholds(long_running) == ["more than 30 min"]  # "more than 1 h" would fail
    high_errors = {"expr": "personalized_memory_worker_errors_total > 5", "for": "15m"}
    assert _thresholds(high_errors) == ["more than 5", "for 15 min"]
    ratio = {"expr": "a / b > 0.05 and sum(increase(c[15m])) >= 5"}
    assert _thresholds(ratio) == ["more than 5%", "at least 5"]
    assert _thresholds({"expr": "time() - x > 26 * 3600"}) == ["more than 26 h"]


# --- systemd and cron ----------------------------------------------------------------------------------


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{name}: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(section: dict[str, list[str]], key: str) -> str:
    (value,) = section[key]
    return value


def test_systemd_worker_service() -> None:
    unit = _unit("memcompress-worker@.service")  # a template: the instance name is the metrics port
    service = unit["Service"]
    assert _one(service, "ExecStart").endswith("/memcompress worker")
    assert "MEMCOMPRESS_METRICS_PORT=%i" in service["Environment"]
    assert _one(service, "Restart") == "always"
    assert _one(service, "EnvironmentFile") == "/etc/memcompress/env"
    assert _one(service, "KillSignal") == "SIGTERM"
    assert _seconds(_one(service, "TimeoutStopSec")) > JOB_COMPLETION_WAIT_S
    assert _one(service, "NoNewPrivileges") == "yes"
    assert _one(service, "ProtectSystem") == "strict"
    assert _one(service, "DynamicUser") == "yes" or "User" in service
    assert _one(unit["Install"], "WantedBy") == "multi-user.target"


def test_systemd_documentation_is_the_projects_url() -> None:
    """Documentation= must resolve on any host: the project's https URL (pyproject's), not a file path
    that a pip install never creates."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    for name in ("memcompress-worker@.service", "memcompress-run-once.service"):
        for url in _unit(name)["Unit"]["Documentation"]:
            assert url.startswith(("https://", "man:")) and url in urls.values(), (name, url)


def test_systemd_run_once_service_and_timer() -> None:
    service = _unit("memcompress-run-once.service")["Service"]
    assert _one(service, "Type") == "oneshot"
    assert _one(service, "ExecStart").endswith("/" + RUN_ONCE)
    assert _one(service, "EnvironmentFile") == "/etc/memcompress/env"
    assert _one(service, "NoNewPrivileges") == "yes"
    timer = _unit("memcompress-run-once.timer")
    assert _one(timer["Timer"], "OnCalendar") == "*-*-* 02:00:00"
    assert _one(timer["Timer"], "Persistent") == "true"
    assert _one(timer["Timer"], "Unit") == "memcompress-run-once.service"
    assert _one(timer["Install"], "WantedBy") == "timers.target"


def test_crontab() -> None:
    lines = (DEPLOY / "cron" / "memcompress.crontab").read_text(encoding="utf-8").splitlines()
    entries = [
        line.strip()
        for line in lines
        if line.strip() and not line.strip().startswith("#") and not re.match(r"^\s*[A-Z_]+=", line)
    ]
    (entry,) = entries
    *schedule, user, command = entry.split(None, 6)
    assert schedule == ["0", "2", "*", "*", "*"]
    assert user == "memcompress"
    assert RUN_ONCE in command
    assert "/etc/memcompress/env" in command
    assert re.search(r">> ?/var/log/memcompress/\S+ 2>&1$", command)
    assert "%" not in command, "cron turns % into a newline"
