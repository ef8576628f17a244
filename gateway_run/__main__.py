"""`python -m gateway_run`: read the settings, serve until SIGTERM, exit.

Exit status: 0 after an orderly stop, 2 for an invalid setting (the log line names the
variable), 1 when the gateway cannot start (port taken, workers failing).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from telemetry_events import logs
from telemetry_events.envvars import SettingError

logger = logging.getLogger("gateway_run")


def main() -> int:
    logs.configure("INFO")
    # Imported here: with the `spawn` start method, worker processes import this module too
    # (as __mp_main__) and need nothing from it.
    from gateway_run import settings as settings_module
    from gateway_run.server import BindError, serve

    try:
        settings = settings_module.from_env()
    except SettingError as error:
        logger.error("invalid setting: %s", error, extra={"error": str(error)})
        return 2
    logging.getLogger().setLevel(settings.log_level)

    # A loop of our own rather than asyncio.run, which would wait without limit for helper
    # threads (a Pub/Sub probe, a flush) on the way out: exiting within the grace comes first.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(settings))
    except BindError as error:
        logger.error("cannot start: %s", error, extra={"error": str(error)})
        return 1
    except Exception:
        logger.exception("gateway failed")
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Without waiting for non-daemon threads the client libraries may still hold (see above).
    os._exit(status)
