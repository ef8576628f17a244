"""Opening database connections: directly with pg8000, or through the Cloud SQL Python Connector.

The connector needs Google credentials, so it is built only when INSTANCE_CONNECTION_NAME is
set, on the first connection, and then reused for the life of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.dbapi

from telemetry_events.envvars import FUNCTIONS, Choice, Flag, SettingError, Text

Connection = pg8000.dbapi.Connection
Cursor = pg8000.dbapi.Cursor
DatabaseError = pg8000.dbapi.DatabaseError
InterfaceError = pg8000.dbapi.InterfaceError

# Where the queue lives: a URL for a directly reachable Postgres, or a Cloud SQL instance (settings.py reads them).
DATABASE_URL = Text(
    "DATABASE_URL",
    "postgresql://postgres@127.0.0.1:5432/telemetry",
    meaning="direct Postgres connection (pg8000); `?host=/dir` for a Unix socket",
    read_by=FUNCTIONS,
)
INSTANCE_CONNECTION_NAME = Text(
    "INSTANCE_CONNECTION_NAME",
    "",
    meaning=(
        "`project:region:instance`: connect through the Cloud SQL Python Connector instead of `DATABASE_URL` "
        '(built lazily, `refresh_strategy="lazy"`)'
    ),
    read_by=FUNCTIONS,
)
DB_USER = Text("DB_USER", "", meaning="Cloud SQL user (required with `INSTANCE_CONNECTION_NAME`)", read_by=FUNCTIONS)
DB_NAME = Text("DB_NAME", "telemetry", meaning="Cloud SQL database", read_by=FUNCTIONS)
DB_PASSWORD = Text(
    "DB_PASSWORD",
    "",
    verbatim=True,
    meaning="Cloud SQL password (required unless `DB_IAM_AUTH=true`)",
    read_by=FUNCTIONS,
)
DB_IAM_AUTH = Flag("DB_IAM_AUTH", False, meaning="Cloud SQL IAM database authentication", read_by=FUNCTIONS)
DB_IP_TYPE = Choice(
    "DB_IP_TYPE",
    "public",
    allowed=("public", "private", "psc"),
    meaning="which IP address of the Cloud SQL instance to connect to",
    read_by=FUNCTIONS,
)


def error_field(error: Exception, code: str) -> str:
    """A field of the server's error response that pg8000 carries as a dict in `args[0]`, or "".

    Codes are Postgres' protocol ones: "C" the SQLSTATE, "M" the message, "D" the detail.
    """
    details = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    return str(details.get(code, ""))


def uuid_array(ids: Iterable[str]) -> str:
    """One text parameter to cast to uuid[]: pg8000 encodes long Python lists element by element, slowly."""
    return "{" + ",".join(ids) + "}"


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the queue lives. `url` for a directly reachable Postgres; the rest for Cloud SQL."""

    url: str = ""
    instance_connection_name: str = ""
    user: str = ""
    name: str = ""
    password: str = ""
    iam_auth: bool = False
    ip_type: str = DB_IP_TYPE.default

    @property
    def uses_cloud_sql_connector(self) -> bool:
        return bool(self.instance_connection_name)

    def describe(self) -> str:
        """Where connections go, without secrets."""
        if self.uses_cloud_sql_connector:
            return f"cloudsql:{self.instance_connection_name}/{self.name}"
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def parse_database_url(url: str, variable: str = "DATABASE_URL") -> dict[str, Any]:
    """Turns `postgresql://user:password@host:port/dbname?host=/socket/dir` into pg8000 arguments."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SettingError(f"{variable} must start with postgresql:// (got {parts.scheme or 'no scheme'})")
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise SettingError(f"{variable} must name a database, as in postgresql://user@host:5432/telemetry")
    try:
        port = parts.port or 5432
    except ValueError:
        raise SettingError(f"{variable} has an invalid port") from None
    args: dict[str, Any] = {"user": unquote(parts.username or "postgres"), "database": database}
    if parts.password:
        args["password"] = unquote(parts.password)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if socket_dir:
        args["unix_sock"] = f"{socket_dir.rstrip('/')}/.s.PGSQL.{port}"
    else:
        args["host"] = parts.hostname or "localhost"
        args["port"] = port
    return args


ConnectorFactory = Callable[..., Any]


def _default_connector_factory(**kwargs: Any) -> Any:
    # Imported here: the connector module pulls in Google auth, which local runs never need.
    from google.cloud.sql.connector import Connector

    return Connector(**kwargs)


class Connections:
    """Opens connections as `settings` says; owns the lazily built Cloud SQL connector."""

    def __init__(self, settings: DatabaseSettings, connector_factory: ConnectorFactory = _default_connector_factory):
        self._settings = settings
        self._connector_factory = connector_factory
        self._connector: Any = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> DatabaseSettings:
        return self._settings

    def open(self) -> Connection:
        if not self._settings.uses_cloud_sql_connector:
            return pg8000.dbapi.connect(**parse_database_url(self._settings.url), timeout=60)
        connector = self._cloud_sql_connector()
        s = self._settings
        kwargs: dict[str, Any] = {"user": s.user, "db": s.name, "enable_iam_auth": s.iam_auth}
        if not s.iam_auth:
            kwargs["password"] = s.password
        return connector.connect(s.instance_connection_name, "pg8000", **kwargs)

    def _cloud_sql_connector(self) -> Any:
        with self._lock:
            if self._connector is None:
                # Lazy refresh: serverless instances get no CPU between requests for a background refresh.
                self._connector = self._connector_factory(
                    refresh_strategy="lazy", ip_type=self._settings.ip_type, enable_iam_auth=self._settings.iam_auth
                )
            return self._connector

    def close(self) -> None:
        with self._lock:
            if self._connector is not None:
                self._connector.close()
                self._connector = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self.open()
        try:
            yield conn
        finally:
            close_quietly(conn)


def close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except (InterfaceError, OSError):
        pass  # already broken; closing is best-effort


@contextmanager
def transaction(conn: Connection) -> Iterator[Cursor]:
    """One short transaction: committed when the block ends, rolled back if it raises."""
    cursor = conn.cursor()
    try:
        yield cursor
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except (InterfaceError, DatabaseError, OSError):
            pass  # the connection is gone; the server rolls back by itself
        raise
    finally:
        cursor.close()
