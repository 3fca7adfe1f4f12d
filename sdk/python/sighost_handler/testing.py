"""A native test harness: run a handler function under pytest, no wasm
involved, and look at the directives it requested.

The harness checks what a handler author can get wrong in the handler itself:
directive names outside the allow-list you give it, and the same key
requested twice (duplicate with the same payload, conflict with another).
Size, secret and count limits are the host's to enforce; `sighost check`
and the host's own tests cover those.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from . import _project
from .directive import DirectiveError, DirectiveRequest, Receipt, ReceiptStatus, invocation
from .handler import call, decorated_world, world_of
from .types import Context, HandlerError, Signal


@dataclass(frozen=True)
class RequestedDirective:
    """A directive the handler requested during a harness run."""

    name: str
    payload: Any  # parsed JSON
    idempotency_key: str
    scheduled_at: Optional[str]


@dataclass
class Run:
    """What a harness run produced."""

    result: Optional[HandlerError]  # None for ok
    # Accepted requests, in order; duplicates are not repeated here.
    directives: list[RequestedDirective] = field(default_factory=list)


class Recorder:
    """Answers requests as the host's sandbox does for one invocation."""

    def __init__(self, allowed: Optional[Iterable[str]] = None) -> None:
        self.allowed = None if allowed is None else list(allowed)
        self.requested: list[RequestedDirective] = []

    def record(self, request: DirectiveRequest) -> Receipt:
        if self.allowed is not None and request.name not in self.allowed:
            raise DirectiveError(
                "not-permitted", f"directive {request.name} is not in the handler's allow-list"
            )
        try:
            payload = json.loads(request.payload)
        except ValueError as e:
            raise DirectiveError("invalid", f"payload is not JSON: {e}") from None
        for index, earlier in enumerate(self.requested):
            if earlier.idempotency_key != request.idempotency_key:
                continue
            if earlier.name != request.name or not json_equal(earlier.payload, payload):
                raise DirectiveError(
                    "conflict",
                    f"idempotency key {request.idempotency_key} was already requested "
                    "with another directive",
                )
            return Receipt(f"test-directive-{index + 1}", ReceiptStatus.DUPLICATE)
        self.requested.append(
            RequestedDirective(request.name, payload, request.idempotency_key, request.scheduled_at)
        )
        return Receipt(f"test-directive-{len(self.requested)}", ReceiptStatus.ACCEPTED)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of parsed JSON as the host (serde_json) sees it. Python's own
    `==` would call `1`, `1.0` and `true` equal; JSON values of different
    types never are."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return a == b


class Harness:
    """Builds signals and contexts for one tenant, and runs handler functions
    on them.

    `handler_name` is the name default idempotency keys are derived from. By
    default it is read, as the build reads it, from the nearest pyproject.toml
    of the file that defines the function being run.
    """

    def __init__(
        self,
        tenant: str,
        *,
        settings: Optional[dict] = None,
        options: Optional[dict] = None,
        packages: Iterable[str] = (),
        allow: Optional[Iterable[str]] = None,
        attempt: int = 1,
        max_attempts: int = 10,
        handler_name: Optional[str] = None,
    ) -> None:
        self.tenant = tenant
        self.settings = {} if settings is None else settings
        self.options = {} if options is None else options
        self.packages = list(packages)
        # None: every name is allowed; a list refuses the others, as a manifest would.
        self.allow = None if allow is None else list(allow)
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.handler_name = handler_name
        self._next_signal = 1

    def signal(self, name: str, payload: Any = None) -> Signal:
        """A signal of this tenant with fresh id `sig_test_N` and fixed
        timestamps. Change other fields with `dataclasses.replace`."""
        n = self._next_signal
        self._next_signal += 1
        return Signal(
            id=f"sig_test_{n}",
            tenant=self.tenant,
            name=name,
            payload_text=json.dumps({} if payload is None else payload),
            metadata_text="{}",
            dedupe_key=None,
            occurred_at="2026-01-01T00:00:00Z",
            correlation_id=None,
            causation_id=None,
            actor=None,
            subject=None,
            source=None,
            inserted_at="2026-01-01T00:00:00Z",
        )

    def context(self, signal: Signal) -> Context:
        """The context the host would pass with `signal`."""
        return Context(
            tenant=self.tenant,
            signal_id=signal.id,
            signal_name=signal.name,
            correlation_id=signal.correlation_id,
            causation_id=signal.causation_id,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            options_text=json.dumps(self.options),
            settings_text=json.dumps(self.settings),
            packages=list(self.packages),
        )

    def run(self, signal: Signal, fn: Callable[..., Any]) -> Run:
        """Calls `fn` in the shape it declares and reports what the host would
        be told, with the directives it requested. An exception that would
        trap the component (anything but `Transient`, `Permanent` and
        `DirectiveError`) is not caught: it fails the test, as a panic does
        in Rust."""
        world = decorated_world(fn) or world_of(fn)
        args = {
            "tenant-handler": (signal, self.tenant, self.context(signal)),
            "context-handler": (signal, self.context(signal)),
            "signal-handler": (signal,),
        }[world]
        recorder = Recorder(self.allow)
        with invocation(self._handler_name_for(fn), recorder.record):
            result = call(fn, args)
        return Run(result, recorder.requested)

    def _handler_name_for(self, fn: Callable[..., Any]) -> str:
        if self.handler_name is not None:
            return self.handler_name
        source = inspect.getsourcefile(fn)
        if source is None:
            raise ValueError(
                f"cannot tell where {fn!r} is defined; pass Harness(handler_name=...)"
            )
        return _project.project_name(Path(source))
