"""Which recorded events are queued for export at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from telemetry_events.envvars import FUNCTIONS, Choice, SettingError, Text


class ExportMode(StrEnum):
    ALL = "all"
    LISTED_FEATURES = "listed"
    DISABLED = "disabled"  # air-gapped instances: record locally, queue nothing


EXPORT_MODE = Choice(
    "TELEMETRY_EXPORT_MODE",
    ExportMode.ALL.value,
    allowed=tuple(mode.value for mode in ExportMode),
    meaning=(
        "which recorded events are queued: all, only the features of `TELEMETRY_EXPORT_FEATURES` (`listed`) or none "
        "(`disabled`: air-gapped); applied again when exporting: queued rows outside it are withheld, not sent"
    ),
    read_by=FUNCTIONS,
)
EXPORT_FEATURES = Text(
    "TELEMETRY_EXPORT_FEATURES",
    "",
    meaning="comma-separated features queued when the mode is `listed`",
    read_by=FUNCTIONS,
)


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
    mode = ExportMode(EXPORT_MODE.read(env))
    features = frozenset(f.strip() for f in EXPORT_FEATURES.read(env).split(",") if f.strip())
    if mode is ExportMode.LISTED_FEATURES and not features:
        raise SettingError(f"{EXPORT_FEATURES.name} must list at least one feature when {EXPORT_MODE.name}=listed")
    if mode is not ExportMode.LISTED_FEATURES and features:
        raise SettingError(f"{EXPORT_FEATURES.name} is set but {EXPORT_MODE.name}={mode.value} ignores it: use listed")
    return ExportScope(mode, features)
