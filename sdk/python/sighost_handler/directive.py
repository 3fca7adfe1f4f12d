"""The directive builder, the host's answers, and where requests go."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from .types import Signal

# The kinds of the WIT `directive-error` variant.
DIRECTIVE_ERROR_KINDS = (
    "not-permitted",
    "invalid",
    "too-large",
    "secret-detected",
    "limit-exceeded",
    "conflict",
)


class DirectiveError(Exception):
    """The host refused a directive request. Catch it to go on without the
    directive; let it propagate and the delivery fails permanently, since the
    same code and signal would be refused again on every retry."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in DIRECTIVE_ERROR_KINDS:
            raise ValueError(f"unknown directive error kind {kind!r}")
        super().__init__(kind, message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"directive refused ({self.kind.replace('-', ' ')}): {self.message}"


class ReceiptStatus(enum.Enum):
    ACCEPTED = "accepted"  # new; written when the delivery completes
    DUPLICATE = "duplicate"  # this invocation already requested it


@dataclass(frozen=True)
class Receipt:
    directive_id: str
    status: ReceiptStatus


@dataclass(frozen=True)
class DirectiveRequest:
    """A finished request, as it crosses to the host (or the harness)."""

    name: str
    payload: str
    idempotency_key: str
    scheduled_at: Optional[str]


def default_idempotency_key(tenant: str, signal_id: str, handler: str, directive: str) -> str:
    """The key a directive gets unless it sets its own: lowercase hex SHA-256
    over tenant, signal id, handler name and directive name joined by NUL
    bytes, so a retried or replayed delivery asks for the same key in every
    SDK language."""
    joined = "\0".join((tenant, signal_id, handler, directive))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def directive(name: str) -> "Directive":
    """Starts a directive request; finish it with `.request(signal)`."""
    return Directive(name)


class Directive:
    """A directive being built. The payload defaults to `{}`, the key to
    `default_idempotency_key`, the schedule to "now"."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._payload = "{}"
        # A serialization failure is kept until `request`, so the builder chains.
        self._payload_error: Optional[str] = None
        self._idempotency_key: Optional[str] = None
        self._scheduled_at: Optional[str] = None

    def payload(self, payload: Any) -> "Directive":
        """Anything `json.dumps` turns into a JSON object."""
        try:
            # allow_nan=False: NaN and Infinity are not JSON, and the host
            # would refuse the text anyway.
            self._payload = json.dumps(
                payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
            self._payload_error = None
        except (TypeError, ValueError) as e:
            self._payload_error = str(e)
        return self

    def idempotency_key(self, key: str) -> "Directive":
        self._idempotency_key = key
        return self

    def scheduled_at(self, at: str) -> "Directive":
        """The earliest time the directive may run, RFC 3339."""
        self._scheduled_at = at
        return self

    def request(self, signal: Signal) -> Receipt:
        """Asks the host for this directive on behalf of `signal`'s tenant. The
        host answers at once (or raises `DirectiveError`); the directive is
        written only if the delivery completes."""
        if self._payload_error is not None:
            raise DirectiveError("invalid", f"payload does not serialize: {self._payload_error}")
        key = self._idempotency_key
        if key is None:
            key = default_idempotency_key(signal.tenant, signal.id, _handler_name, self._name)
        request = DirectiveRequest(self._name, self._payload, key, self._scheduled_at)
        return (_sink or _send_to_host)(request)


# The invocation in progress. A wasm instance runs one invocation at a time and
# the harness runs one per call, so plain module state is enough.
_handler_name = ""
_sink: Optional[Callable[[DirectiveRequest], Receipt]] = None


@contextlib.contextmanager
def invocation(
    handler_name: str, sink: Optional[Callable[[DirectiveRequest], Receipt]] = None
) -> Iterator[None]:
    """Runs a block as one invocation of `handler_name`: default keys are
    derived from that name and requests go to `sink` (the host if None)."""
    global _handler_name, _sink
    saved = _handler_name, _sink
    _handler_name, _sink = handler_name, sink
    try:
        yield
    finally:
        _handler_name, _sink = saved


def _send_to_host(request: DirectiveRequest) -> Receipt:
    try:
        # Imported here, not at the top: the bindings exist only inside the
        # component, and the SDK must import (and test) without them.
        from . import _guest
    except ImportError:
        raise DirectiveError(
            "invalid",
            "directives can only be requested inside a handler invocation "
            "or a testing.Harness run",
        ) from None
    return _guest.request_directive(request)
