"""What every subcommand needs: the settings, a database connection, progress on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from telemetry_events import logs
from telemetry_export.settings import Settings, load_settings
from telemetry_export.store.connection import (
    Connection,
    Connections,
    DatabaseError,
    InterfaceError,
    close_quietly,
    error_field,
)


class CommandFailed(Exception):
    """Reported as one line on stderr, exit status 2."""


def settings() -> Settings:
    loaded = load_settings()
    logs.configure("WARNING" if loaded.log_level == "INFO" else loaded.log_level)
    return loaded


@contextmanager
def database() -> Iterator[Connection]:
    connections = Connections(settings().database)
    try:
        conn = connections.open()
    except (DatabaseError, InterfaceError, OSError) as error:
        raise CommandFailed(f"cannot connect to {connections.settings.describe()}: {_reason(error)}") from None
    try:
        yield conn
    finally:
        close_quietly(conn)
        connections.close()


def _reason(error: Exception) -> str:
    return error_field(error, "M") or str(error) or type(error).__name__


def positive_int(value: str) -> int:
    """argparse type for counts: a whole number of at least 1."""
    return _whole_number(value, 1)


def non_negative_int(value: str) -> int:
    """argparse type for counts where 0 means none: a whole number of at least 0."""
    return _whole_number(value, 0)


def _whole_number(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}")
    return number


class Progress:
    """A single updating line on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str, total: int | None = None):
        self.label = label
        self.total = total
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.started, 1e-6)
        if self.total:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r{self.label} [{bar}] {done:,}/{self.total:,} ({rate:,.0f}/s)"
        else:
            line = f"\r{self.label} {done:,} ({rate:,.0f}/s)"
        sys.stderr.write(line)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
