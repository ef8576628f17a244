"""Which recorded events are queued for export at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from telemetry_events.envvars import SettingError, choice

MODE_VARIABLE = "TELEMETRY_EXPORT_MODE"
FEATURES_VARIABLE = "TELEMETRY_EXPORT_FEATURES"


class ExportMode(StrEnum):
    ALL = "all"
    LISTED_FEATURES = "listed"
    DISABLED = "disabled"  # air-gapped instances: record locally, queue nothing


@dataclass(frozen=True)
class ExportScope:
    mode: ExportMode = ExportMode.ALL
    features: frozenset[str] = frozenset()

    def exports(self, feature: str) -> bool:
        if self.mode is ExportMode.ALL:
            return True
        if self.mode is ExportMode.DISABLED:
            return False
        return feature in self.features


def scope_from_env(env: Mapping[str, str]) -> ExportScope:
    mode = ExportMode(choice(env, MODE_VARIABLE, ExportMode.ALL.value, tuple(m.value for m in ExportMode)))
    features = frozenset(f.strip() for f in env.get(FEATURES_VARIABLE, "").split(",") if f.strip())
    if mode is ExportMode.LISTED_FEATURES and not features:
        raise SettingError(f"{FEATURES_VARIABLE} must list at least one feature when {MODE_VARIABLE}=listed")
    if mode is not ExportMode.LISTED_FEATURES and features:
        raise SettingError(f"{FEATURES_VARIABLE} is set but {MODE_VARIABLE}={mode.value} ignores it: use listed")
    return ExportScope(mode, features)
