"""Write sighost signal handlers in Python.

A handler is a function that receives one signal and may ask the host for
directives: auditable intents the host carries out after the delivery
completes. `python -m sighost_handler.build` turns the module holding the
`@handler` function into a WebAssembly component; `sighost_handler.testing`
runs the same function natively under pytest.

    from sighost_handler import directive, handler

    @handler
    def handle_signal(signal, tenant, context):
        if not context.has_package("forum"):
            return  # not applicable to this tenant
        thread = signal.payload()
        directive("forum.thread.summarize").payload({"thread_id": thread["thread_id"]}).request(signal)

Layout: `types` (Signal, Context, EntityRef, Transient, Permanent),
`directive` (the builder, Receipt, DirectiveError, default keys), `handler`
(the decorator and how exceptions become outcomes), `testing` (the native
harness), `build` (the component build), `_guest` (the glue inside the
component; it needs the generated bindings).
"""

from .directive import (
    DIRECTIVE_ERROR_KINDS,
    Directive,
    DirectiveError,
    Receipt,
    ReceiptStatus,
    default_idempotency_key,
    directive,
)
from .handler import handler
from .types import Context, EntityRef, HandlerError, Permanent, Signal, Transient

__all__ = [
    "DIRECTIVE_ERROR_KINDS",
    "Context",
    "Directive",
    "DirectiveError",
    "EntityRef",
    "HandlerError",
    "Permanent",
    "Receipt",
    "ReceiptStatus",
    "Signal",
    "Transient",
    "default_idempotency_key",
    "directive",
    "handler",
]
