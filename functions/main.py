"""The Cloud Functions' HTTP entry points, called by Cloud Scheduler. Thin: the jobs live in telemetry_export."""

from __future__ import annotations

