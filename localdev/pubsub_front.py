"""A gRPC front for the Pub/Sub emulator whose Publish answers a test scripts.

The gateway talks to it as to Pub/Sub (point its PUBSUB_EMULATOR_HOST here); every call is
forwarded to the real emulator, except that a script may decide, per Publish call, to

- REFUSE it: answer with an error without forwarding (nothing was published), or
- LOSE_ANSWER: forward it (the messages are published) and then answer with an error, as
  when a connection drops after Pub/Sub stored the messages but before its reply arrived.

The emulator accepts everything, so these are the only ways to make the real gateway meet a
Pub/Sub that fails for some events and not others. Every Publish call is recorded with the
`event.id` attributes of its messages and its outcome, so a test knows exactly which events
were refused and which may have been published without the gateway hearing of it: forwarded
calls whose answer was lost on purpose, whose upstream call failed (the emulator may have
stored the messages before failing), or whose caller had given up (deadline) by the time
the answer was ready. Those are the only publishes a Pub/Sub client retry can duplicate.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.pubsub_v1.types import PublishRequest

from localdev.ports import free_port

PUBLISH = "/google.pubsub.v1.Publisher/Publish"
_FORWARD_TIMEOUT_SECONDS = 30.0
# An answer ready this close to the caller's deadline may not reach it in time.
_LATE_SECONDS = 0.25


class Action(enum.Enum):
    FORWARD = "forward"
    REFUSE = "refuse"
    LOSE_ANSWER = "lose answer"


class Outcome(enum.Enum):
    PENDING = "pending"
    ANSWERED = "answered"  # published, and the answer went back in time
    REFUSED = "refused"  # never forwarded: nothing published
    ANSWER_LOST = "answer lost"  # published, answered with an error on purpose
    UPSTREAM_FAILED = "upstream failed"  # the emulator failed or went away: published or not, unknown
    CALLER_GONE = "caller gone"  # published, but the caller's deadline had passed (or nearly)

    @property
    def in_doubt(self) -> bool:
        """Published perhaps (or surely) without the caller hearing so: a retry may publish it again."""
        return self in (Outcome.ANSWER_LOST, Outcome.UPSTREAM_FAILED, Outcome.CALLER_GONE)


@dataclass(frozen=True)
class PublishCall:
    """One Publish call as the front saw it: its number (from 1), topic and the messages' event IDs."""

    number: int
    topic: str
    event_ids: tuple[str, ...]
    action: Action = Action.FORWARD
    outcome: Outcome = Outcome.PENDING


Script = Callable[[PublishCall], Action]


def forward_everything(call: PublishCall) -> Action:
    return Action.FORWARD


class PubSubFront:
    """Listens on 127.0.0.1:`port` and forwards to the emulator at `upstream` (host:port)."""

    def __init__(
        self,
        upstream: str,
        script: Script = forward_everything,
        error_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    ) -> None:
        """
        Args:
            script: decides each Publish call's fate.
            error_code: the status of a refused call or a lost answer. The Pub/Sub client retries
                UNAVAILABLE (within the gateway's publish timeout) and gives up at once on, for
                example, FAILED_PRECONDITION.
        """
        self.upstream = upstream
        self.script = script
        self.error_code = error_code
        self.port = free_port()
        self.calls: list[PublishCall] = []
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((_Forwarder(self),))

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PubSubFront:
        self._server.add_insecure_port(self.host_port)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._channel.close()

    def __enter__(self) -> PubSubFront:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def calls_with(self, action: Action) -> list[PublishCall]:
        with self._lock:
            return [call for call in self.calls if call.action is action]

    def in_doubt(self) -> list[PublishCall]:
        """Calls whose messages may be in Pub/Sub although the caller was not told so."""
        with self._lock:
            return [call for call in self.calls if call.outcome.in_doubt]

    def _decide(self, raw: bytes) -> PublishCall:
        request = PublishRequest.pb().FromString(raw)
        ids = tuple(message.attributes.get("event.id", "") for message in request.messages)
        with self._lock:
            call = PublishCall(len(self.calls) + 1, request.topic, ids)
            self.calls.append(call)
        # Outside the lock: a script may hold a call (wait before deciding) while others are recorded.
        call = dataclasses.replace(call, action=self.script(call))
        with self._lock:
            self.calls[call.number - 1] = call
        return call

    def _settle(self, call: PublishCall, outcome: Outcome) -> None:
        with self._lock:
            self.calls[call.number - 1] = dataclasses.replace(call, outcome=outcome)

    def _forward(self, method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """The upstream's answer; raises its grpc.RpcError."""
        metadata = tuple(
            (key, value)
            for key, value in context.invocation_metadata()
            if not key.startswith((":", "grpc-")) and key not in ("user-agent", "te", "content-type")
        )
        remaining = context.time_remaining()
        timeout = _FORWARD_TIMEOUT_SECONDS if remaining is None else min(remaining, _FORWARD_TIMEOUT_SECONDS)
        call = self._channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(raw, metadata=metadata, timeout=max(timeout, 0.001))

    def _handle(self, method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        if method != PUBLISH:
            try:
                return self._forward(method, raw, context)
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "upstream failed")
                raise  # abort raises; this only tells readers so
        call = self._decide(raw)
        if call.action is Action.REFUSE:
            self._settle(call, Outcome.REFUSED)
            context.abort(self.error_code, f"injected fault: publish call {call.number} refused")
        try:
            response = self._forward(method, raw, context)
        except grpc.RpcError as error:
            self._settle(call, Outcome.UPSTREAM_FAILED)
            context.abort(error.code(), error.details() or "upstream failed")
            raise
        if call.action is Action.LOSE_ANSWER:
            self._settle(call, Outcome.ANSWER_LOST)
            context.abort(self.error_code, f"injected fault: answer to publish call {call.number} lost")
        remaining = context.time_remaining()
        late = not context.is_active() or (remaining is not None and remaining < _LATE_SECONDS)
        self._settle(call, Outcome.CALLER_GONE if late else Outcome.ANSWERED)
        return response


class _Forwarder(grpc.GenericRpcHandler):
    """Every unary method, as raw bytes both ways (the gateway's publisher uses no streaming calls)."""

    def __init__(self, front: PubSubFront) -> None:
        self._front = front

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.endswith("/StreamingPull"):
            return None  # UNIMPLEMENTED: pull straight from the emulator

        def behaviour(raw: bytes, context: grpc.ServicerContext) -> bytes:
            return self._front._handle(method, raw, context)

        return grpc.unary_unary_rpc_method_handler(behaviour)
