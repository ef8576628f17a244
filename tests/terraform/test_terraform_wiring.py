"""The deployment is wired the way the pipeline needs, read from the parsed Terraform.

These are the mistakes that pass `terraform validate` and fail only in production: a Scheduler token whose
audience is not the URL it calls, a deadline that kills a running export, a gateway that cannot speak gRPC, a
public invoker, a function no job ever calls, or a setting name the code does not read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import terraform_checks as tc
from terraform_checks import only

ENTRY_POINTS = {"export": "export_events", "cleanup": "cleanup_exported_events", "metrics": "report_queue_metrics"}
FUNCTION_VARIABLES = {"export": "export_function", "cleanup": "cleanup_function", "metrics": "metrics_function"}
SCHEDULER_MAX_DEADLINE_SECONDS = 1800  # Cloud Scheduler's limit on attempt_deadline for HTTP targets
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


@pytest.fixture(scope="module")
def config() -> tc.Configuration:
    return tc.load_configuration()


def _gateway_container(config: tc.Configuration) -> dict[str, Any]:
    template = only(config.resource("google_cloud_run_v2_service", "gateway")["template"])
    return only(template["containers"])


def _validation_bound(config: tc.Configuration, variable: str, pattern: str) -> int:
    """The number a validation condition of `variable` compares against (e.g. `timeout_seconds <= (\\d+)`)."""
    for validation in config.variables[variable].get("validation", []):
        match = re.search(pattern, validation["condition"])
        if match:
            return int(match.group(1))
    raise AssertionError(f"variable {variable} has no validation matching {pattern}")


def _optional_default(config: tc.Configuration, variable: str, attribute: str) -> int:
    # python-hcl2 renders `name = optional(number, 240)` as `"name": "${optional(number, 240)}"`.
    match = re.search(rf'"{attribute}": "\$\{{optional\(number, (\d+)\)\}}"', config.variables[variable]["type"])
    assert match, f"{variable}.{attribute} has no numeric default"
    return int(match.group(1))


# --- functions and their schedules ----------------------------------------------------------------------------


def test_three_jobs_with_the_entry_points_from_the_design(config: tc.Configuration) -> None:
    jobs = config.locals["jobs"]
    assert {key: job["entry_point"] for key, job in jobs.items()} == ENTRY_POINTS
    for key, variable in FUNCTION_VARIABLES.items():
        assert jobs[key]["settings"] == f"${{var.{variable}}}"


def test_every_function_has_a_scheduler_job(config: tc.Configuration) -> None:
    functions = config.resource("google_cloudfunctions2_function", "job")
    assert functions["for_each"] == "${local.jobs}"
    assert only(functions["build_config"])["entry_point"] == "${each.value.entry_point}"
    scheduler_jobs = config.of_type("google_cloud_scheduler_job")
    assert list(scheduler_jobs) == ["job"], "one for_each scheduler job resource, one job per function"
    assert scheduler_jobs["job"]["for_each"] == "${google_cloudfunctions2_function.job}"
    assert list(config.of_type("google_cloudfunctions2_function")) == ["job"]


def test_scheduler_oidc_audience_is_the_url_it_calls(config: tc.Configuration) -> None:
    target = only(config.resource("google_cloud_scheduler_job", "job")["http_target"])
    token = only(target["oidc_token"])
    assert target["uri"] == "${each.value.url}"  # each.value is the function (for_each over the functions)
    assert token["audience"] == target["uri"]
    assert token["service_account_email"] == "${google_service_account.scheduler.email}"
    assert "oauth_token" not in target, "Cloud Run functions need an OIDC ID token, not an OAuth access token"


def test_attempt_deadline_is_above_every_function_timeout(config: tc.Configuration) -> None:
    job = config.resource("google_cloud_scheduler_job", "job")
    match = re.fullmatch(
        r"\$\{local\.jobs\[each\.key\]\.settings\.timeout_seconds \+ (\d+)\}s", job["attempt_deadline"]
    )
    assert match, job["attempt_deadline"]
    margin = int(match.group(1))
    assert margin >= 30
    service = only(config.resource("google_cloudfunctions2_function", "job")["service_config"])
    assert service["timeout_seconds"] == "${each.value.settings.timeout_seconds}"  # the same number
    for key, variable in FUNCTION_VARIABLES.items():
        longest = _validation_bound(config, variable, r"timeout_seconds <= (\d+)")
        assert longest + margin <= SCHEDULER_MAX_DEADLINE_SECONDS, f"{key}: a valid timeout gives an invalid deadline"
        assert _optional_default(config, variable, "timeout_seconds") <= longest


def test_scheduler_retries_are_bounded(config: tc.Configuration) -> None:
    retry = only(config.resource("google_cloud_scheduler_job", "job")["retry_config"])
    assert retry["retry_count"] == "${local.jobs[each.key].settings.retry_count}"
    for variable in FUNCTION_VARIABLES.values():
        assert _validation_bound(config, variable, r"retry_count <= (\d+)") <= 5
        assert _optional_default(config, variable, "retry_count") <= 5


def test_the_gateway_request_timeout_covers_the_exporters_stream(config: tc.Configuration) -> None:
    """The exporter's stream deadline comes from the function timeout; Cloud Run cuts a stream at its own timeout."""
    template = only(config.resource("google_cloud_run_v2_service", "gateway")["template"])
    assert template["timeout"] == "${local.gateway_request_timeout_seconds}s"
    derived = config.locals["gateway_request_timeout_seconds"]
    assert derived == "${coalesce(var.gateway.request_timeout_seconds, var.export_function.timeout_seconds + 60)}"
    conditions = [v["condition"] for v in config.variables["gateway"]["validation"]]
    assert any(">= var.export_function.timeout_seconds" in c for c in conditions), conditions
    assert '"request_timeout_seconds": "${optional(number)}"' in config.variables["gateway"]["type"]


def test_export_function_knows_its_own_timeout(config: tc.Configuration) -> None:
    export_env = config.locals["function_environment"]["export"]
    assert export_env["TELEMETRY_EXPORT_FUNCTION_TIMEOUT"] == "${var.export_function.timeout_seconds}s"
    assert export_env["TELEMETRY_GATEWAY_ADDR"] == "${google_cloud_run_v2_service.gateway.uri}"
    assert config.locals["export_lease_seconds"].endswith("timeout_seconds + 60)}")


def test_functions_log_in_to_cloud_sql_with_iam(config: tc.Configuration) -> None:
    db_env = config.locals["db_environment"]
    assert db_env["DB_IAM_AUTH"] == "true"
    assert db_env["INSTANCE_CONNECTION_NAME"] == "${google_sql_database_instance.main.connection_name}"
    service = only(config.resource("google_cloudfunctions2_function", "job")["service_config"])
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"
    assert "DB_PASSWORD" not in json.dumps(service)
    users = config.resource("google_sql_user", "function")
    assert users["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert "password" not in users


# --- the gateway ----------------------------------------------------------------------------------------------


def test_gateway_port_is_h2c_and_probes_speak_grpc(config: tc.Configuration) -> None:
    container = _gateway_container(config)
    port = only(container["ports"])
    assert port["name"] == "h2c", "Cloud Run forwards HTTP/2 end to end only to a port named h2c"
    for probe_name in ("startup_probe", "liveness_probe"):
        probe = only(container[probe_name])
        assert set(probe) & {"http_get", "tcp_socket"} == set(), f"{probe_name} must use gRPC health checking"
        assert only(probe["grpc"])["port"] == port["container_port"], f"{probe_name} probes another port"


def test_gateway_environment_does_not_set_reserved_port(config: tc.Configuration) -> None:
    assert "PORT" not in config.locals["gateway_environment"], "Cloud Run sets PORT from the container port"


def test_only_iam_invokers_reach_the_gateway(config: tc.Configuration) -> None:
    gateway = config.resource("google_cloud_run_v2_service", "gateway")
    assert gateway["invoker_iam_disabled"] is False
    assert "allow_unauthenticated" not in json.dumps(gateway)


def test_the_exporter_can_invoke_the_gateway(config: tc.Configuration) -> None:
    grants = [
        body
        for body in config.of_type("google_cloud_run_v2_service_iam_member").values()
        if body["name"] == "${google_cloud_run_v2_service.gateway.name}" and body["role"] == "roles/run.invoker"
    ]
    members = {grant["member"] for grant in grants}
    assert 'serviceAccount:${google_service_account.function["export"].email}' in members


def test_run_invoker_goes_only_to_the_scheduler_and_the_exporter(config: tc.Configuration) -> None:
    allowed = {
        "serviceAccount:${google_service_account.scheduler.email}",
        'serviceAccount:${google_service_account.function["export"].email}',
        "${each.value}",  # var.gateway_extra_invokers, validated to exclude public members
    }
    for name, body in config.of_type("google_cloud_run_v2_service_iam_member").items():
        assert body["role"] == "roles/run.invoker"
        assert body["member"] in allowed, f"{name} grants run.invoker to {body['member']}"
    extra = config.resource("google_cloud_run_v2_service_iam_member", "extra_gateway_invokers")
    assert extra["for_each"] == "${toset(var.gateway_extra_invokers)}"
    condition = only(config.variables["gateway_extra_invokers"]["validation"])["condition"]
    assert all(member in condition for member in PUBLIC_MEMBERS)


def test_no_resource_grants_anything_to_the_public(config: tc.Configuration) -> None:
    for (tftype, name), body in config.resources.items():
        text = json.dumps(body)
        for member in PUBLIC_MEMBERS:
            assert member not in text, f"{tftype}.{name} mentions {member}"
    assert not [t for (t, _) in config.resources if t.endswith(("_iam_policy", "_iam_binding"))], (
        "authoritative IAM resources would remove grants made outside this configuration"
    )


# --- database -------------------------------------------------------------------------------------------------


def test_cloud_sql_requires_connectors_tls_and_iam(config: tc.Configuration) -> None:
    instance = config.resource("google_sql_database_instance", "main")
    assert instance["database_version"] == "POSTGRES_15"
    assert instance["deletion_protection"] == "${var.deletion_protection}"
    settings = only(instance["settings"])
    assert settings["connector_enforcement"] == "REQUIRED"
    assert settings["deletion_protection_enabled"] == "${var.deletion_protection}"
    ip = only(settings["ip_configuration"])
    assert ip["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    assert "authorized_networks" not in ip and "dynamic" not in ip, "no network may connect directly"
    flags = {flag["name"]: flag["value"] for flag in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    backups = only(settings["backup_configuration"])
    assert backups["enabled"] is True and backups["point_in_time_recovery_enabled"] is True


def test_iam_database_users_are_abandoned_not_dropped(config: tc.Configuration) -> None:
    """Cloud SQL cannot DROP ROLE a user that owns tables; destroy and a removed admin must not fail on it."""
    users = config.of_type("google_sql_user")
    assert set(users) == {"function", "admin"}
    for name, user in users.items():
        assert user["deletion_policy"] == "ABANDON", name


def test_deleting_the_instance_keeps_a_final_backup(config: tc.Configuration) -> None:
    settings = only(config.resource("google_sql_database_instance", "main")["settings"])
    final = only(settings["final_backup_config"])
    assert final == {"enabled": True, "retention_days": "${var.db_final_backup_retention_days}"}
    assert config.variables["db_final_backup_retention_days"]["default"] >= 7


def test_function_database_users_are_not_superusers(config: tc.Configuration) -> None:
    condition = only(config.variables["db_function_roles"]["validation"])["condition"]
    assert "cloudsqlsuperuser" in condition
    defaults = config.variables["db_function_roles"]["default"]
    assert all("cloudsqlsuperuser" not in roles for roles in defaults.values())
    assert defaults["metrics"] == ["pg_read_all_data"]


# --- builds ---------------------------------------------------------------------------------------------------


def test_function_builds_may_read_googles_gcf_sources_bucket_and_nothing_wider(config: tc.Configuration) -> None:
    """Gen2 builds fetch the source from gcf-v2-sources-<project number>-<region> (provider issue 20571)."""
    grant = config.resource("google_project_iam_member", "build_reads_gcf_sources")
    assert grant["role"] == "roles/storage.objectViewer"
    assert grant["member"] == "serviceAccount:${google_service_account.build.email}"
    expression = only(grant["condition"])["expression"]
    assert expression == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}")'
    )
    build = only(config.resource("google_cloudfunctions2_function", "job")["build_config"])
    assert build["service_account"] == "${google_service_account.build.id}"
    depends = config.resource("google_cloudfunctions2_function", "job")["depends_on"]
    assert "${google_project_iam_member.build_reads_gcf_sources}" in depends
    storage_grants = [
        (name, body) for name, body in config.of_type("google_project_iam_member").items() if "storage" in body["role"]
    ]
    assert [name for name, body in storage_grants if "condition" not in body] == [], "unconditioned storage grant"


def test_the_live_function_source_is_never_deleted_by_age(config: tc.Configuration) -> None:
    bucket = config.resource("google_storage_bucket", "function_source")
    for rule in bucket["lifecycle_rule"]:
        condition = only(rule["condition"])
        if "age" in condition:
            assert condition.get("matches_prefix") == ["gateway-build-source/"], condition
        else:
            assert condition.get("with_state") == "ARCHIVED", f"rule would touch live objects: {condition}"
    assert only(bucket["versioning"])["enabled"] is True
    assert config.outputs["build_staging_dir"]["value"].endswith("/gateway-build-source")


def test_the_gateway_image_is_pinned_by_digest(config: tc.Configuration) -> None:
    container = _gateway_container(config)
    assert container["image"] == "${var.gateway_image}", "no fallback to a moving tag"
    condition = only(config.variables["gateway_image"]["validation"])["condition"]
    assert "@sha256:[0-9a-f]{64}$" in condition and ":[A-Za-z0-9_.-]+|" not in condition
    precondition = only(only(config.resource("google_cloud_run_v2_service", "gateway")["lifecycle"])["precondition"])
    assert precondition["condition"] in (
        "${var.gateway_image != null}",
        "${var.gateway_image != None}",
    )  # hcl2 renders null as None


# --- secrets --------------------------------------------------------------------------------------------------


def test_secrets_are_read_at_a_pinned_version(config: tc.Configuration) -> None:
    assert '"version": "${var.license_key_secret_version}"' in config.locals["function_secrets"]["export"]
    gateway_secret = config.locals["gateway_secret_environment"]
    assert "var.gateway_service_token_secret_version" in json.dumps(gateway_secret)
    for (tftype, name), body in config.resources.items():
        assert '"latest"' not in json.dumps(body), f"{tftype}.{name} reads a moving secret version"
    for variable in ("license_key_secret_version", "gateway_service_token_secret_version"):
        assert config.variables[variable]["default"] is None
        assert any("[1-9][0-9]*" in v["condition"] for v in config.variables[variable]["validation"]), variable


# --- BigQuery -------------------------------------------------------------------------------------------------


def test_the_bigquery_sink_writes_as_its_own_service_account(config: tc.Configuration) -> None:
    sink = only(config.resource("google_pubsub_subscription", "bigquery")["bigquery_config"])
    assert sink["service_account_email"] == "${google_service_account.bigquery_writer.email}"
    grants = config.resource("google_bigquery_table_iam_member", "sink_writes_events")
    assert grants["member"] == "serviceAccount:${google_service_account.bigquery_writer.email}"
    pubsub_agent_grants = [
        name
        for (tftype, name), body in config.resources.items()
        if tftype.startswith("google_bigquery") and "pubsub_service_agent" in json.dumps(body)
    ]
    assert pubsub_agent_grants == [], "the project-wide Pub/Sub service agent must not write or read the table"


def test_the_dataset_is_readable_only_by_the_listed_readers(config: tc.Configuration) -> None:
    dataset = config.resource("google_bigquery_dataset", "telemetry")
    static = dataset["access"]
    assert static == [{"role": "OWNER", "special_group": "projectOwners"}], "only owners by default"
    dynamic = [next(iter(block)) for block in dataset["dynamic"]]
    assert dynamic == ["access", "access", "access"]
    roles = {only(block["access"]["content"])["role"] for block in dataset["dynamic"]}
    assert roles == {"READER"}
    readers = json.dumps(dataset["dynamic"])
    for field in ("user_by_email", "group_by_email", "domain"):
        assert field in readers
    assert "projectReaders" not in json.dumps(dataset) and "projectWriters" not in json.dumps(dataset)
    assert config.variables["bigquery_readers"]["default"] == []


# --- ingress and deletion protection --------------------------------------------------------------------------


def test_functions_are_internal_only_by_default(config: tc.Configuration) -> None:
    service = only(config.resource("google_cloudfunctions2_function", "job")["service_config"])
    assert service["ingress_settings"] == "${var.function_ingress}"
    variable = config.variables["function_ingress"]
    assert variable["default"] == "ALLOW_INTERNAL_ONLY"
    assert "https://cloud.google.com/run/docs/securing/ingress" in variable["description"]
    assert "Cloud Scheduler" in variable["description"]


def test_gateway_ingress_accepts_only_what_the_exporter_can_reach(config: tc.Configuration) -> None:
    gateway = config.resource("google_cloud_run_v2_service", "gateway")
    assert gateway["ingress"] == "${var.gateway_ingress}"
    condition = only(config.variables["gateway_ingress"]["validation"])["condition"]
    assert condition == '${var.gateway_ingress == "INGRESS_TRAFFIC_ALL"}'


def test_deletion_protection_is_described_as_what_it_does(config: tc.Configuration) -> None:
    protected = sorted(
        f"{tftype}.{name}"
        for (tftype, name), body in config.resources.items()
        if "var.deletion_protection" in json.dumps(body)
    )
    assert protected == [
        "google_bigquery_table.events",
        "google_cloud_run_v2_service.gateway",
        "google_sql_database_instance.main",
        "google_storage_bucket.function_source",
    ]
    description = " ".join(config.variables["deletion_protection"]["description"].split())
    assert "Cloud SQL instance: refused by Terraform (deletion_protection) AND by the Cloud SQL API itself" in (
        description
    )
    assert "BigQuery events table and the Cloud Run gateway: refused by Terraform only" in description
    assert "can still delete them" in description


# --- monitoring -----------------------------------------------------------------------------------------------


EXPECTED_GAUGES = {
    "queue_backlog": "INT64",
    "queue_oldest_unexported_age_seconds": "INT64",
    "queue_in_flight": "INT64",
    "queue_quarantined": "INT64",
    "queue_exported_retained": "INT64",
    "exported_last_hour": "INT64",
    "queue_estimated_drain_seconds": "DOUBLE",
}


def test_metric_descriptors_declare_every_gauge(config: tc.Configuration) -> None:
    declared = {name: spec["value_type"] for name, spec in config.locals["queue_metrics"].items()}
    assert declared == EXPECTED_GAUGES
    descriptor = config.resource("google_monitoring_metric_descriptor", "queue")
    assert descriptor["metric_kind"] == "GAUGE"
    assert descriptor["type"] == "${local.metric_prefix}/${each.key}"
    assert config.locals["metric_prefix"] == "custom.googleapis.com/telemetry_export"


def test_alert_policies_cover_the_failure_modes(config: tc.Configuration) -> None:
    policies = config.of_type("google_monitoring_alert_policy")
    assert set(policies) == {
        "backlog_growing",
        "oldest_event_too_old",
        "metrics_missing",
        "export_errors",
        "gateway_errors",
        "dead_lettered",
        "bigquery_sink_stalled",
    }
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${local.notification_channels}", name
        assert policy.get("documentation"), f"{name} needs a runbook hint"
    absent = only(only(policies["metrics_missing"]["conditions"])["condition_absent"])
    assert "queue_backlog" in absent["filter"]
    dead = [only(c["condition_threshold"])["filter"] for c in policies["dead_lettered"]["conditions"]]
    assert any("gateway_deadletter" in f for f in dead) and any("subscription.bigquery" in f for f in dead)


def test_a_stalled_bigquery_sink_alerts_before_pubsub_drops_its_messages(config: tc.Configuration) -> None:
    policy = config.resource("google_monitoring_alert_policy", "bigquery_sink_stalled")
    thresholds = {
        re.search(r"metric.type = \"([^\"]+)\"", only(c["condition_threshold"])["filter"]).group(1): only(  # type: ignore[union-attr]
            c["condition_threshold"]
        )
        for c in policy["conditions"]
    }
    assert set(thresholds) == {
        "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    }
    for threshold in thresholds.values():
        assert "${google_pubsub_subscription.bigquery.name}" in threshold["filter"]
    age = thresholds["pubsub.googleapis.com/subscription/oldest_unacked_message_age"]
    assert age["threshold_value"] == "${var.alert_bigquery_oldest_unacked_seconds}"
    assert config.variables["alert_bigquery_oldest_unacked_seconds"]["default"] < 7 * 86400


def test_one_failed_run_does_not_page_but_repeated_failures_do(config: tc.Configuration) -> None:
    policy = config.resource("google_monitoring_alert_policy", "export_errors")
    threshold = only(only(policy["conditions"])["condition_threshold"])
    assert threshold["comparison"] == "COMPARISON_GT"
    assert threshold["threshold_value"] == "${var.alert_job_error_lines - 1}"
    assert only(threshold["aggregations"])["alignment_period"] == "${var.alert_job_error_window_seconds}s"
    assert config.variables["alert_job_error_lines"]["default"] >= 2


def test_plan_warns_when_no_alert_reaches_anyone(config: tc.Configuration) -> None:
    text = (tc.TERRAFORM_DIR / "checks.tf").read_text(encoding="utf-8")
    assert 'check "alerts_reach_someone"' in text
    assert "length(var.notification_channels) > 0 || var.alert_email != null" in text


def _render_template(path: Path, values: dict[str, str]) -> str:
    """Terraform templatefile() for a template that only uses ${name} and the $${ escape."""
    text = path.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    assert used <= set(values), f"template uses {sorted(used - set(values))} that are not passed"
    rendered = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    return rendered.replace("$${", "${")


def test_dashboard_renders_to_json_over_declared_metrics(config: tc.Configuration) -> None:
    dashboard = config.resource("google_monitoring_dashboard", "telemetry")
    call = re.fullmatch(
        r'\$\{templatefile\("\$\{path\.module\}/(?P<file>[^"]+)", \{(?P<args>.*)\}\)\}',
        dashboard["dashboard_json"],
        re.S,
    )
    assert call, dashboard["dashboard_json"][:200]
    passed = set(re.findall(r'"(\w+)": ', call["args"]))  # python-hcl2 renders the object as JSON-like text
    values = dict.fromkeys(passed, "x") | {"custom_metric_prefix": "CUSTOM", "log_metric_prefix": "LOG"}
    rendered = _render_template(tc.TERRAFORM_DIR / call["file"], values)
    document = json.loads(rendered)
    assert document["mosaicLayout"]["tiles"], "empty dashboard"
    filters = [
        data_set["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
        for tile in document["mosaicLayout"]["tiles"]
        for data_set in tile["widget"]["xyChart"]["dataSets"]
    ]
    metric_types = {re.search(r'metric\.type="([^"]+)"', f).group(1) for f in filters}  # type: ignore[union-attr]
    gauges = {t.removeprefix("CUSTOM/") for t in metric_types if t.startswith("CUSTOM/")}
    log_metrics = {t.removeprefix("LOG/") for t in metric_types if t.startswith("LOG/")}
    assert gauges == EXPECTED_GAUGES.keys(), "every gauge has a chart, and only declared gauges"
    declared_logs = set(config.locals["log_distributions"]) | {"job_runs", "job_errors", "gateway_errors"}
    assert log_metrics <= declared_logs, f"dashboard charts undeclared log metrics {log_metrics - declared_logs}"
    assert 'log_metric_prefix      = "logging.googleapis.com/user/telemetry_export"' in (
        tc.TERRAFORM_DIR / "monitoring.tf"
    ).read_text(encoding="utf-8")


# --- variables, outputs, example ------------------------------------------------------------------------------


def test_every_variable_has_a_description_and_a_type(config: tc.Configuration) -> None:
    for name, variable in config.variables.items():
        assert len(variable.get("description", "")) > 20, f"variable {name} needs a description"
        assert "type" in variable, f"variable {name} needs a type"


def test_outputs_name_what_operators_need(config: tc.Configuration) -> None:
    assert {"gateway_url", "function_urls", "pubsub_topic", "bigquery_table", "instance_connection_name"} <= set(
        config.outputs
    )
    for name, output in config.outputs.items():
        assert output.get("description"), f"output {name} needs a description"


def test_tfvars_example_sets_only_declared_variables_and_all_required_ones(config: tc.Configuration) -> None:
    import hcl2

    example = hcl2.loads((tc.TERRAFORM_DIR / "terraform.tfvars.example").read_text(encoding="utf-8"))
    unknown = set(example) - set(config.variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables {sorted(unknown)}"
    required = {name for name, variable in config.variables.items() if "default" not in variable}
    assert required <= set(example), f"the example misses required variables {sorted(required - set(example))}"


# --- settings and log fields agree with the code --------------------------------------------------------------


def _source_text(*directories: str) -> str:
    parts: list[str] = []
    for directory in directories:
        parts.extend(p.read_text(encoding="utf-8") for p in (tc.REPO_ROOT / directory).rglob("*.py"))
    return "\n".join(parts)


def test_function_settings_are_names_the_code_reads(config: tc.Configuration) -> None:
    code = _source_text("functions/telemetry_export", "telemetry_events")
    names = set(config.locals["db_environment"]) | {
        "DB_USER",
        "GOOGLE_CLOUD_PROJECT",
        "LOG_LEVEL",
        "TELEMETRY_LICENSE_KEY",
    }
    for environment in config.locals["function_environment"].values():
        names |= set(environment)
    unread = sorted(name for name in names if f'"{name}"' not in code)
    assert not unread, f"the functions never read {unread}"


def test_gateway_settings_are_names_the_code_reads(config: tc.Configuration) -> None:
    code = _source_text("gateway_run", "telemetry_events")
    names = set(config.locals["gateway_environment"]) | {"TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"}
    unread = sorted(name for name in names if f'"{name}"' not in code)
    assert not unread, f"the gateway never reads {unread}"


def test_log_based_metrics_extract_fields_the_code_logs(config: tc.Configuration) -> None:
    code = _source_text("functions/telemetry_export", "gateway_run")
    for name, metric in config.locals["log_distributions"].items():
        field = metric["field"].removeprefix("jsonPayload.")
        assert f'"{field}"' in code, f"log metric {name} extracts {field}, which nothing logs"
