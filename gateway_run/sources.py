"""Who a published message says it comes from: its `publisher.source` attribute.

Instance traffic carries the identifier kind (`licensed_instance`, `unlicensed_instance`); a
managed service carries its own service ID. Consumers tell the two apart by that value alone,
so a service ID must never spell an identifier kind, in any letter case: a managed service
could otherwise label its events as instance traffic. Both the settings (which bind a token
to a service ID) and the identity check use the rules here.
"""

from __future__ import annotations

import re

LICENSED = "licensed_instance"
UNLICENSED = "unlicensed_instance"
MANAGED = "managed_service"
IDENTIFIER_KINDS = (LICENSED, UNLICENSED, MANAGED)

MAX_SERVICE_ID_LENGTH = 256
SERVICE_ID_SHAPE = "[A-Za-z0-9][A-Za-z0-9._:/@-]*"
_SERVICE_ID = re.compile(f"^{SERVICE_ID_SHAPE}$")


def service_id_problem(service_id: str) -> str | None:
    """What makes `service_id` unusable as a managed service's source, or None when it is usable."""
    if not service_id:
        return "service_id is required for a managed service"
    if len(service_id) > MAX_SERVICE_ID_LENGTH or not _SERVICE_ID.fullmatch(service_id):
        return (
            f"service_id must be at most {MAX_SERVICE_ID_LENGTH} characters of letters, digits and ._:/@-, "
            "starting with a letter or digit"
        )
    if service_id.lower() in IDENTIFIER_KINDS:
        return f"service_id {service_id!r} is an identifier kind ({', '.join(IDENTIFIER_KINDS)}): choose another"
    return None
