"""Each deployable reads exactly the settings it declares, and takes every default from its declaration."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway_run import settings as gateway_settings
from telemetry_events.envvars import Choice, Deployable, Integer, Seconds, Setting
from telemetry_export import settings as functions_settings
from telemetry_export.store.connection import DatabaseSettings

DECLARED: dict[Deployable, tuple[Setting, ...]] = {
    Deployable.FUNCTIONS: functions_settings.DECLARED,
    Deployable.GATEWAY: gateway_settings.DECLARED,
}


class LookedUp(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def _asked_by_the_functions() -> set[str]:
    # The database is read one way or the other: by URL, or through the Cloud SQL connector.
    by_url = LookedUp({})
    functions_settings.Settings.from_env(by_url)
    cloud_sql = LookedUp({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u", "DB_PASSWORD": "p"})
    functions_settings.Settings.from_env(cloud_sql)
    return by_url.asked | cloud_sql.asked


def _asked_by_the_gateway() -> set[str]:
    env = LookedUp({"TELEMETRY_GATEWAY_DEV_MODE": "true"})
    gateway_settings.from_env(env)
    return env.asked


def test_the_functions_read_exactly_the_settings_they_declare() -> None:
    assert _asked_by_the_functions() == {setting.name for setting in DECLARED[Deployable.FUNCTIONS]}


def test_the_gateway_reads_exactly_the_settings_it_declares() -> None:
    assert _asked_by_the_gateway() == {setting.name for setting in DECLARED[Deployable.GATEWAY]}


@pytest.mark.parametrize("deployable", list(Deployable))
def test_each_declaration_names_the_deployables_that_read_it(deployable: Deployable) -> None:
    names = Counter(setting.name for setting in DECLARED[deployable])
    assert [name for name, count in names.items() if count > 1] == []
    assert [s.name for s in DECLARED[deployable] if deployable not in s.read_by] == []
    for other in set(Deployable) - {deployable}:
        shared = [s for s in DECLARED[other] if deployable in s.read_by]
        assert [s.name for s in shared if s not in DECLARED[deployable]] == []


@pytest.mark.parametrize("setting", [s for settings in DECLARED.values() for s in settings], ids=lambda s: s.name)
def test_every_default_is_a_value_its_own_reader_accepts(setting: Setting) -> None:
    if isinstance(setting, Integer | Seconds):
        assert setting.minimum is None or setting.minimum <= setting.default
        assert setting.maximum is None or setting.default <= setting.maximum
    if isinstance(setting, Choice):
        assert setting.default in setting.allowed
    assert setting.meaning and setting.meaning == setting.meaning.strip()


def test_the_functions_defaults_from_an_empty_environment_are_the_dataclass_defaults() -> None:
    settings = functions_settings.Settings.from_env({})

    assert settings.database == DatabaseSettings(url=functions_settings.DEFAULT_DATABASE_URL)
    assert settings.exporter == functions_settings.ExporterSettings()
    assert settings.cleanup == functions_settings.CleanupSettings()
    assert settings.metrics == functions_settings.MetricsSettings()
    assert settings.log_level == "INFO"


def test_the_gateway_defaults_from_the_environment_are_the_dataclass_defaults_but_workers() -> None:
    settings = gateway_settings.from_env({"TELEMETRY_GATEWAY_DEV_MODE": "true"})

    assert settings == gateway_settings.Settings(dev_mode=True, workers=gateway_settings.default_workers())
