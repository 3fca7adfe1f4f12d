"""The `handler` decorator, and how one call of a handler becomes an outcome."""

from __future__ import annotations

import inspect
import traceback
from typing import Any, Callable, Optional, Sequence

from .directive import DirectiveError
from .types import HandlerError, Permanent, Transient

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
    - Any other exception becomes transient, after its traceback is printed
      to stderr (which the host captures): like a Rust panic, which traps and
      is retried, it may be a bug or a passing condition, and the retry
      policy caps how often it runs again. BaseExceptions (SystemExit, …)
      are not caught.
    """
    try:
        returned = fn(*args)
    except HandlerError as e:
        return e
    except DirectiveError as e:
        return Permanent(str(e))
    except Exception as e:  # noqa: BLE001 - every failure must reach the host as a value
        traceback.print_exc()
        return Transient(f"unhandled {type(e).__name__}: {e}")
    # Returning an error instead of raising it is an easy slip; honour it
    # rather than report success.
    return returned if isinstance(returned, HandlerError) else None
