"""The `handler` decorator, and how one call of a handler becomes an outcome."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Sequence

from .directive import DirectiveError
from .types import HandlerError, Permanent

# The world a handler targets, by its number of parameters.
WORLDS = {3: "tenant-handler", 2: "context-handler", 1: "signal-handler"}

_WORLD_ATTRIBUTE = "__sighost_world__"


def handler(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Marks `fn` as the handler the build exports. Its parameters choose the
    world: `(signal, tenant, context)` (recommended), `(signal, context)`, or
    `(signal)` (discouraged: it cannot see the tenant's settings or packages).

    The function is returned unchanged, so tests call it directly or through
    `testing.Harness`."""
    setattr(fn, _WORLD_ATTRIBUTE, world_of(fn))
    return fn


def world_of(fn: Callable[..., Any]) -> str:
    """The world `fn`'s shape targets; TypeError for any other shape, raised
    at decoration time so a wrong signature fails before the build does."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        # The export is synchronous: nothing would run the coroutine, so its
        # directives and failures would be lost and the call reported ok.
        raise TypeError(
            f"handlers are synchronous; {getattr(fn, '__qualname__', fn)} is an async def "
            f"function (write it as a plain def)"
        )
    parameters = inspect.signature(fn).parameters.values()
    positional = [
        p for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    others = [
        p for p in parameters
        if p not in positional and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if others or len(positional) not in WORLDS:
        raise TypeError(
            f"a handler takes (signal, tenant, context), (signal, context) or (signal); "
            f"{getattr(fn, '__qualname__', fn)} takes {len(positional)} required positional "
            f"parameters"
        )
    return WORLDS[len(positional)]


def decorated_world(fn: Any) -> Optional[str]:
    """The world `handler` recorded on `fn`, if it decorated it."""
    return getattr(fn, _WORLD_ATTRIBUTE, None)


def call(fn: Callable[..., Any], args: Sequence[Any]) -> Optional[HandlerError]:
    """Runs the handler and returns what the host is told: None for ok, or a
    `Transient`/`Permanent`. The component and the test harness both go
    through here, so a test sees what the host would.

    - `Transient`/`Permanent` raised (or returned) pass as they are.
    - A `DirectiveError` becomes permanent: the same code and signal would be
      refused again on every retry.
    - An awaitable returned (a coroutine from a callable that `world_of`
      could not tell was async) is permanent: nothing would run it.
    - Any other exception propagates, as a Rust panic or a JavaScript throw
      does: out of the component's export it traps (componentize-py prints
      its traceback to stderr, which the host captures, then aborts), and the
      host retries the delivery; in the harness it fails the test.
    """
    try:
        returned = fn(*args)
    except HandlerError as e:
        return e
    except DirectiveError as e:
        return Permanent(str(e))
    if inspect.isawaitable(returned):
        if inspect.iscoroutine(returned):
            returned.close()  # never started; closing it keeps "never awaited" out of stderr
        return Permanent("the handler returned an awaitable; handlers must be synchronous")
    # Returning an error instead of raising it is an easy slip; honour it
    # rather than report success.
    return returned if isinstance(returned, HandlerError) else None
