"""`telemetry-export tail`: pull what reaches a Pub/Sub subscription and print it."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from telemetry_export.cli.context import CommandFailed


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
    # Imported here: only this command needs a Pub/Sub client.
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    printed = 0
    idle_since = time.monotonic()
    try:
        while not args.limit or printed < args.limit:
            want = min(1000, args.limit - printed) if args.limit else 1000
            try:
                response = subscriber.pull(subscription=path, max_messages=want, timeout=10)
            except exceptions.NotFound:
                raise CommandFailed(f"subscription {path} does not exist") from None
            except exceptions.DeadlineExceeded:
                response = None
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
