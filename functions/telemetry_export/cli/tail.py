"""`telemetry-export tail`: pull what reaches a Pub/Sub subscription and print it.

It fails like every other command, in one line and exit status 2: without Google credentials
(and no emulator), for a subscription that does not exist, or when Pub/Sub cannot be reached.
Reaching Pub/Sub is retried for at most --wait seconds, and the wait is announced once on
stderr, so a dead PUBSUB_EMULATOR_HOST never looks like an empty subscription.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from telemetry_export.cli.context import CommandFailed

DEFAULT_WAIT_SECONDS = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="pull and print the messages reaching a Pub/Sub subscription",
        description=(
            "Pull messages from a subscription (PUBSUB_EMULATOR_HOST is honoured), print each as one JSON line "
            "with its attributes, and acknowledge them unless --no-ack."
        ),
    )
    parser.add_argument("subscription", help="subscription ID, or projects/P/subscriptions/S")
    parser.add_argument(
        "--project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
        help="project of a subscription ID (default: $GOOGLE_CLOUD_PROJECT)",
    )
    parser.add_argument("--limit", type=int, default=0, help="stop after this many messages (default: no limit)")
    parser.add_argument("--follow", action="store_true", help="keep pulling until interrupted")
    parser.add_argument("--no-ack", action="store_true", help="leave the messages for other readers")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to keep trying to reach Pub/Sub before giving up (default {DEFAULT_WAIT_SECONDS:g})",
    )
    parser.set_defaults(run=run)


def subscription_path(subscription: str, project: str) -> str:
    if subscription.startswith("projects/"):
        return subscription
    if not project:
        raise CommandFailed("a subscription ID needs --project or GOOGLE_CLOUD_PROJECT")
    return f"projects/{project}/subscriptions/{subscription}"


def message_line(message: Any) -> str:
    """One received message as JSON: its attributes and its body (decoded when it is JSON)."""
    try:
        body: Any = json.loads(message.data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = message.data.decode("utf-8", errors="replace")
    return json.dumps(
        {"message_id": message.message_id, "attributes": dict(message.attributes), "body": body}, sort_keys=True
    )


def run(args: argparse.Namespace) -> int:
    path = subscription_path(args.subscription, args.project)
    if args.wait <= 0:
        raise CommandFailed("--wait must be more than 0 seconds")
    # Imported here: only this command needs a Pub/Sub client.
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import pubsub_v1

    where = os.environ.get("PUBSUB_EMULATOR_HOST") or "pubsub.googleapis.com"
    try:
        subscriber = pubsub_v1.SubscriberClient()
    except GoogleAuthError as error:
        raise CommandFailed(_no_credentials(error)) from None
    reaching = _BoundedReach(where, args.wait)
    printed = 0
    idle_since = time.monotonic()
    try:
        while not args.limit or printed < args.limit:
            want = min(1000, args.limit - printed) if args.limit else 1000
            try:
                response = subscriber.pull(
                    subscription=path, max_messages=want, timeout=10, retry=reaching.retry(exceptions)
                )
            except exceptions.NotFound:
                raise CommandFailed(f"subscription {path} does not exist") from None
            except exceptions.DeadlineExceeded:
                response = None  # nothing arrived within the call's time: an idle subscription
            except exceptions.RetryError as error:
                raise CommandFailed(
                    f"cannot reach Pub/Sub at {where} within {args.wait:g} s: {_cause(error)}"
                ) from None
            except exceptions.GoogleAPICallError as error:
                raise CommandFailed(f"pulling from {path}: {_one_line(str(error))}") from None
            except GoogleAuthError as error:
                raise CommandFailed(_no_credentials(error)) from None
            received = response.received_messages if response is not None else []
            for item in received:
                print(message_line(item.message), flush=True)
            printed += len(received)
            if received and not args.no_ack:
                subscriber.acknowledge(subscription=path, ack_ids=[item.ack_id for item in received])
            if received:
                idle_since = time.monotonic()
            elif not args.follow and time.monotonic() - idle_since > 2:
                break  # drained: nothing arrived for a while
    finally:
        subscriber.close()
    return 0


class _BoundedReach:
    """Retries an unreachable Pub/Sub for at most `seconds`, saying so on stderr the first time."""

    def __init__(self, where: str, seconds: float):
        self.where = where
        self.seconds = seconds
        self.announced = False

    def retry(self, exceptions: Any) -> Any:
        from google.api_core import retry as retries

        return retries.Retry(
            predicate=retries.if_exception_type(exceptions.ServiceUnavailable),
            initial=0.25,
            maximum=2.0,
            timeout=self.seconds,
            on_error=self._announce,
        )

    def _announce(self, error: Exception) -> None:
        if not self.announced:
            self.announced = True
            print(
                f"telemetry-export: cannot reach Pub/Sub at {self.where} yet; trying for up to {self.seconds:g} s",
                file=sys.stderr,
                flush=True,
            )


def _no_credentials(error: Exception) -> str:
    return (
        f"no Google credentials for Pub/Sub ({_one_line(str(error))}); run `gcloud auth application-default login`,"
        " or set PUBSUB_EMULATOR_HOST to read from the emulator"
    )


def _cause(error: Exception) -> str:
    cause = getattr(error, "cause", None) or error.__cause__ or error
    return _one_line(getattr(cause, "message", None) or str(cause))


def _one_line(text: str) -> str:
    return " ".join(text.split())
