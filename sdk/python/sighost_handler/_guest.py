"""The component side: the glue between the generated bindings and the SDK's
own types. Only the entry module `sighost_handler.build` generates imports
this, inside the component, where the bindings exist. It imports them at the
top so that they are loaded while componentize-py pre-initializes the
component: the sandbox grants no files, so nothing can be imported later.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world.imports import directives
from wit_world.imports import types as wit

from .directive import DirectiveError, DirectiveRequest, Receipt, ReceiptStatus, invocation
from .handler import call
from .types import Context, EntityRef, Signal, Transient

_ERROR_KINDS = {
    wit.DirectiveError_NotPermitted: "not-permitted",
    wit.DirectiveError_Invalid: "invalid",
    wit.DirectiveError_TooLarge: "too-large",
    wit.DirectiveError_SecretDetected: "secret-detected",
    wit.DirectiveError_LimitExceeded: "limit-exceeded",
    wit.DirectiveError_Conflict: "conflict",
}


def request_directive(request: DirectiveRequest) -> Receipt:
    try:
        receipt = directives.request_directive(
            wit.DirectiveRequest(
                name=request.name,
                payload=request.payload,
                idempotency_key=request.idempotency_key,
                scheduled_at=request.scheduled_at,
            )
        )
    except Err as e:
        raise DirectiveError(_ERROR_KINDS[type(e.value)], e.value.value) from None
    status = (
        ReceiptStatus.DUPLICATE
        if receipt.status == wit.ReceiptStatus.DUPLICATE
        else ReceiptStatus.ACCEPTED
    )
    return Receipt(receipt.directive_id, status)


def run(handler_name: str, fn: Callable[..., Any], *wit_args: Any) -> None:
    """One export call: WIT values in, the handler's outcome out, a failure
    raised as `Err(handler-error)` the way componentize-py returns it. Any
    other exception the handler raises leaves the export as it is:
    componentize-py 0.25.1 prints its traceback to stderr and traps, which
    the host records with the attempt and retries, as for a Rust panic."""
    args = [_from_wit(value) for value in wit_args]
    with invocation(handler_name):
        error = call(fn, args)
    if isinstance(error, Transient):
        raise Err(wit.HandlerError_Transient(error.message))
    if error is not None:
        raise Err(wit.HandlerError_Permanent(error.message))


def _from_wit(value: Any) -> Any:
    if isinstance(value, wit.Signal):
        return Signal(
            id=value.id,
            tenant=value.tenant,
            name=value.name,
            payload_text=value.payload,
            metadata_text=value.metadata,
            dedupe_key=value.dedupe_key,
            occurred_at=value.occurred_at,
            correlation_id=value.correlation_id,
            causation_id=value.causation_id,
            actor=_entity(value.actor),
            subject=_entity(value.subject),
            source=value.source,
            inserted_at=value.inserted_at,
        )
    if isinstance(value, wit.Context):
        return Context(
            tenant=value.tenant,
            signal_id=value.signal_id,
            signal_name=value.signal_name,
            correlation_id=value.correlation_id,
            causation_id=value.causation_id,
            attempt=value.attempt,
            max_attempts=value.max_attempts,
            options_text=value.options,
            settings_text=value.settings,
            packages=list(value.packages),
        )
    return value  # the tenant, a string


def _entity(value: Optional[wit.EntityRef]) -> Optional[EntityRef]:
    return None if value is None else EntityRef(kind=value.type, id=value.id)
