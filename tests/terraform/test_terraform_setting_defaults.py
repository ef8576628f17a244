"""Terraform's defaults are the settings' declared defaults, or differ for a reason stated here.

Read with python-hcl2, following the wiring: every environment variable Terraform gives the functions
(`service_config.environment_variables` of the function resource) or the gateway (the container's `env` blocks) is
traced to the Terraform variable that feeds it, and that variable's default, passed through the same expression
(`tostring`, `join`, a unit suffix), is read with the setting's own declaration. It must give the declared default,
unless the entry is listed below with the reason Terraform sets something else. Terraform's validations must not
accept a value the code would refuse at start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import terraform_checks as tc
from terraform_checks import only

from gateway_run import settings as gateway_settings
from telemetry_events.envvars import Choice, Deployable, Integer, Seconds, Setting, SettingError
from telemetry_export import settings as functions_settings

DECLARED: dict[Deployable, dict[str, Setting]] = {
    Deployable.FUNCTIONS: {s.name: s for s in functions_settings.DECLARED},
    Deployable.GATEWAY: {s.name: s for s in gateway_settings.DECLARED},
}

# Where Terraform's default deliberately differs from the declaration: (deployable, variable) -> why.
DIFFERS = {
    (Deployable.FUNCTIONS, "TELEMETRY_EXPORT_FUNCTION_TIMEOUT"): (
        "the deployed function's own timeout (export_function.timeout_seconds, 240 s by default), passed so a run "
        "stops claiming before the platform kills it; the code's 300 s serves runs outside Terraform"
    ),
    (Deployable.FUNCTIONS, "TELEMETRY_METRICS_LOCATION"): (
        "the region the stack is deployed in, a more useful generic_task location than the code's `global`"
    ),
}

# Where Terraform derives the value from other variables instead of passing one through: (deployable, variable)
# -> (the expression, why). The expression is compared as written, so a changed derivation is looked at again.
DERIVED = {
    (Deployable.FUNCTIONS, "TELEMETRY_EXPORT_LEASE"): (
        "${local.export_lease_seconds}s",
        "export_function.lease_seconds, or the function timeout + 60 s: a lease must outlive the run holding it",
    ),
    (Deployable.FUNCTIONS, "TELEMETRY_CLEANUP_TIME_BUDGET"): (
        "${max(var.cleanup_function.timeout_seconds - 30, 30)}s",
        "30 s short of the cleanup function's own timeout, so a run stops deleting before the platform kills it",
    ),
    (Deployable.FUNCTIONS, "TELEMETRY_METRICS_TASK_ID"): (
        "${coalesce(var.metrics_task_id, var.instance_id)}",
        "the gauges are written under the instance's ID unless metrics_task_id names another",
    ),
    (Deployable.FUNCTIONS, "DB_IP_TYPE"): (
        '${local.db_private ? "private" : "public"}',
        "follows db_private_network: a private-IP instance has no public address to connect to",
    ),
}

# Fed by a Terraform variable that has no default: every deployment must give it.
REQUIRED = {
    "project_id": "the project the stack is deployed in",
    "instance_id": "the instance whose events are exported; the gateway refuses unlicensed streams without one",
}

# Not fed by a Terraform variable (a resource's attribute, or a literal): no Terraform default to compare.
NOT_FROM_A_VARIABLE = {
    "INSTANCE_CONNECTION_NAME": "the Cloud SQL instance Terraform creates",
    "DB_NAME": "the database Terraform creates",
    "DB_USER": "each function's IAM database user, which Terraform creates",
    "DB_IAM_AUTH": "always true: the functions log in with IAM database authentication and hold no password",
    "TELEMETRY_GATEWAY_ADDR": "the URL of the gateway Terraform deploys",
    "TELEMETRY_PUBSUB_TOPIC": "the events topic Terraform creates",
    "TELEMETRY_PUBSUB_DEADLETTER_TOPIC": "the dead-letter topic Terraform creates",
}

# Given from Secret Manager at a pinned version: the value never passes through Terraform.
SECRETS = {
    (Deployable.FUNCTIONS, "TELEMETRY_LICENSE_KEY"),
    (Deployable.GATEWAY, "TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256"),
}

UNSIGNED_DURATION = 'can(regex("^[0-9]+(s|m|h|d)$"'

_ONE_VARIABLE = re.compile(
    r"\$\{(?:(?P<function>tostring|join)\((?:\"(?P<separator>[^\"]*)\", )?)?var\.(?P<path>[a-z_]+(?:\.[a-z_]+)?)\)?\}"
    r"(?P<suffix>s?)"
)


@dataclass(frozen=True)
class Wired:
    """One environment variable Terraform gives a deployable, and the expression that makes its value."""

    deployable: Deployable
    name: str
    expression: str

    @property
    def key(self) -> tuple[Deployable, str]:
        return (self.deployable, self.name)


@pytest.fixture(scope="module")
def config() -> tc.Configuration:
    return tc.load_configuration()


def _function_environment(config: tc.Configuration) -> Iterator[Wired]:
    service = only(config.resource("google_cloudfunctions2_function", "job")["service_config"])
    merged = re.fullmatch(
        r"\$\{merge\(local\.db_environment, (\{.*\}), local\.function_environment\[each\.key\]\)\}",
        service["environment_variables"],
    )
    assert merged, f"the functions' environment is wired another way: {service['environment_variables']}"
    common = {**config.locals["db_environment"], **json.loads(merged.group(1))}
    for job, own in config.locals["function_environment"].items():
        for name, expression in {**common, **own}.items():
            yield Wired(Deployable.FUNCTIONS, name, expression)
        assert job in config.locals["function_secrets"]
    for secrets in config.locals["function_secrets"].values():
        for name in re.findall(r'"key": "([A-Z0-9_]+)"', json.dumps(secrets).replace('\\"', '"')):
            yield Wired(Deployable.FUNCTIONS, name, "secret")


def _gateway_environment(config: tc.Configuration) -> Iterator[Wired]:
    template = only(config.resource("google_cloud_run_v2_service", "gateway")["template"])
    container = only(template["containers"])
    sources = {block["env"]["for_each"] for block in container["dynamic"] if "env" in block}
    assert sources == {"${local.gateway_environment}", "${local.gateway_secret_environment}"}, sources
    assert "env" not in container, "the gateway has env blocks of its own: trace them here too"
    for name, expression in config.locals["gateway_environment"].items():
        yield Wired(Deployable.GATEWAY, name, expression)
    for name in re.findall(r"'([A-Z0-9_]+)': \{", config.locals["gateway_secret_environment"]):
        yield Wired(Deployable.GATEWAY, name, "secret")


def _wired(config: tc.Configuration) -> list[Wired]:
    return [*_function_environment(config), *_gateway_environment(config)]


def _variable_default(config: tc.Configuration, path: str) -> Any:
    """The default of `var.NAME`, or of `var.NAME.ATTRIBUTE` given by `optional(TYPE, DEFAULT)` in its type."""
    name, _, attribute = path.partition(".")
    variable = config.variables[name]
    if not attribute:
        return variable.get("default")
    found = re.search(rf'"{attribute}": "\$\{{optional\((\w+), ([^)]*)\)\}}"', variable["type"])
    assert found, f"var.{path} has no optional() default in its type"
    kind, literal = found.groups()
    return float(literal) if kind == "number" else json.loads(literal.replace('\\"', '"'))


def _terraform_text(value: Any, function: str | None, separator: str | None, suffix: str) -> str:
    """The environment variable's text when the variable holds `value`, as Terraform renders it."""
    if function == "join":
        return (separator or "").join(value)
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    return text + suffix


def test_every_environment_variable_terraform_sets_is_declared_for_its_deployable(config: tc.Configuration) -> None:
    undeclared = sorted({f"{w.deployable}: {w.name}" for w in _wired(config) if w.name not in DECLARED[w.deployable]})
    assert undeclared == [], f"Terraform sets variables the code does not declare: {undeclared}"


def test_terraform_defaults_are_the_declared_defaults(config: tc.Configuration) -> None:
    problems: list[str] = []
    differing: set[tuple[Deployable, str]] = set()
    for wired in _wired(config):
        setting = DECLARED[wired.deployable][wired.name]
        where = f"{wired.deployable} {wired.name} = {wired.expression!r}"
        if wired.key in SECRETS:
            assert wired.expression == "secret", where
            continue
        if wired.key in DERIVED:
            expression, _reason = DERIVED[wired.key]
            if wired.expression != expression:
                problems.append(f"{where}: the derivation changed (was {expression!r}): check its reason in DERIVED")
            continue
        if "var." not in wired.expression:
            if wired.name not in NOT_FROM_A_VARIABLE:
                problems.append(f"{where}: not from a variable; say where it comes from in NOT_FROM_A_VARIABLE")
            continue
        match = _ONE_VARIABLE.fullmatch(wired.expression)
        if not match:
            problems.append(f"{where}: neither one variable passed through nor listed in DERIVED")
            continue
        default = _variable_default(config, match["path"])
        if default is None:
            if match["path"] not in REQUIRED:
                problems.append(f"{where}: var.{match['path']} has no default; say why in REQUIRED")
            continue
        text = _terraform_text(default, match["function"], match["separator"], match["suffix"])
        try:
            value = setting.read({wired.name: text})
        except SettingError as error:
            problems.append(f"{where}: Terraform's default {text!r} is refused by the code: {error}")
            continue
        if value == setting.default:
            continue
        differing.add(wired.key)
        if wired.key not in DIFFERS:
            problems.append(
                f"{where}: Terraform's default var.{match['path']} = {text!r} reads as {value!r}, "
                f"but the declared default is {setting.default!r}"
            )
    stale = sorted(f"{d}: {name}" for d, name in DIFFERS.keys() - differing)
    problems += [f"{entry} is listed in DIFFERS but no longer differs: remove it" for entry in stale]
    assert problems == [], "\n".join(problems)


def _validation_range(config: tc.Configuration, path: str) -> tuple[float | None, float | None]:
    """The tightest numeric bounds that the validations of `var.path` put on it (None: no such bound)."""
    name = path.partition(".")[0]
    low: float | None = None
    high: float | None = None
    variable = re.escape(f"var.{path}")
    for validation in config.variables[name].get("validation", []):
        for operator, number in re.findall(rf"{variable} (>=|<=|>|<) (\d+(?:\.\d+)?)\b", validation["condition"]):
            bound = float(number)
            if operator.startswith(">"):
                low = bound if low is None else max(low, bound)
            else:
                high = bound if high is None else min(high, bound)
    return low, high


def _variable_type(config: tc.Configuration, path: str) -> str:
    name, _, attribute = path.partition(".")
    if not attribute:
        return config.variables[name]["type"]
    found = re.search(rf'"{attribute}": "\$\{{optional\((\w+)', config.variables[name]["type"])
    assert found, f"var.{path} is not an optional() attribute"
    return found.group(1)


def test_terraform_accepts_no_value_the_code_refuses(config: tc.Configuration) -> None:
    """A value a plan lets through but the code refuses would fail only at the function's or gateway's start."""
    problems: list[str] = []
    for wired in _wired(config):
        setting = DECLARED[wired.deployable][wired.name]
        match = _ONE_VARIABLE.fullmatch(wired.expression)
        if not match:
            continue
        path = match["path"]
        if isinstance(setting, Integer | Seconds) and _variable_type(config, path) == "string":
            # A duration written with its unit: the validation's pattern admits whole, unsigned numbers only.
            conditions = " ".join(v["condition"] for v in config.variables[path].get("validation", []))
            if UNSIGNED_DURATION not in conditions or setting.maximum is not None or (setting.minimum or 0) > 0:
                problems.append(f"var.{path} may hold a duration {wired.name} refuses")
        elif isinstance(setting, Integer | Seconds):
            low, high = _validation_range(config, path)
            if setting.minimum is not None and (low is None or low < setting.minimum):
                problems.append(f"var.{path} may be below {wired.name}'s minimum {setting.minimum:g} (lowest: {low})")
            if setting.maximum is not None and (high is None or high > setting.maximum):
                problems.append(f"var.{path} may be above {wired.name}'s maximum {setting.maximum:g} (highest: {high})")
        if isinstance(setting, Choice):
            listed = [
                re.search(rf"contains\(\[([^\]]*)\], var\.{re.escape(path)}\)", v["condition"])
                for v in config.variables[path].get("validation", [])
            ]
            choices = [item.strip().strip("\"'") for found in listed if found for item in found.group(1).split(",")]
            if not choices:
                problems.append(f"var.{path} does not limit its values to {wired.name}'s {setting.allowed}")
            for choice in choices:
                try:
                    setting.read({wired.name: choice})
                except SettingError as error:
                    problems.append(f"var.{path} accepts {choice!r}, which the code refuses: {error}")
    assert problems == [], "\n".join(problems)


def test_every_stated_difference_names_an_environment_variable_terraform_sets(config: tc.Configuration) -> None:
    wired = {w.key for w in _wired(config)}
    assert sorted(DIFFERS.keys() - wired) == []
    assert sorted(DERIVED.keys() - wired) == []
    assert sorted(SECRETS - wired) == []
    assert sorted(set(NOT_FROM_A_VARIABLE) - {w.name for w in _wired(config)}) == []
