"""The values a handler receives (mirroring the WIT records) and the errors it raises."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

T = TypeVar("T")


class HandlerError(Exception):
    """How a handler fails; raise `Transient` or `Permanent`, not this base."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Transient(HandlerError):
    """Retried with backoff: the same signal may succeed later."""

    def __str__(self) -> str:
        return f"transient: {self.message}"


class Permanent(HandlerError):
    """Discards the delivery at once: retrying the same signal cannot help."""

    def __str__(self) -> str:
        return f"permanent: {self.message}"


@dataclass(frozen=True)
class EntityRef:
    """Who or what a signal is about or was caused by. `kind` is the WIT `type`
    (named as in the Rust SDK, so the two read alike)."""

    kind: str
    id: str


@dataclass(frozen=True)
class Signal:
    """An immutable, tenant-scoped fact, as the host delivered it.

    The payload and metadata are JSON objects kept as text; read them with
    `payload()` and `metadata()`. Timestamps are RFC 3339, UTC.
    """

    id: str
    tenant: str
    name: str
    payload_text: str
    metadata_text: str
    dedupe_key: Optional[str]
    occurred_at: str
    correlation_id: Optional[str]
    causation_id: Optional[str]
    actor: Optional[EntityRef]
    subject: Optional[EntityRef]
    source: Optional[str]
    inserted_at: str

    def payload(self, into: Optional[type[T]] = None) -> Any:
        """The payload, parsed; into a dataclass when `into` is one. A payload
        that does not parse or fit is a permanent error: retrying the same
        signal cannot fix it."""
        return parse_json(self.payload_text, "payload", self.name, into)

    def metadata(self, into: Optional[type[T]] = None) -> Any:
        """The metadata, parsed like `payload()`."""
        return parse_json(self.metadata_text, "metadata", self.name, into)


@dataclass(frozen=True)
class Context:
    """What a handler may know besides the signal: its own options and the
    invoking tenant's settings and packages, nothing of any other tenant."""

    tenant: str
    signal_id: str
    signal_name: str
    correlation_id: Optional[str]
    causation_id: Optional[str]
    attempt: int  # 1 for the first attempt
    max_attempts: int
    options_text: str  # the handler's manifest options, a JSON object
    settings_text: str  # the tenant's settings, a JSON object
    packages: list[str] = field(default_factory=list)

    def options(self, into: Optional[type[T]] = None) -> Any:
        """The handler's options, parsed; a mismatch is a permanent error."""
        return parse_json(self.options_text, "handler options", self.signal_name, into)

    def settings(self, into: Optional[type[T]] = None) -> Any:
        """The tenant's settings, parsed; a mismatch is a permanent error."""
        return parse_json(self.settings_text, "tenant settings", self.signal_name, into)

    def setting(self, pointer: str, default: Any = None) -> Any:
        """One setting by JSON pointer (`/forum/auto_summaries`), or `default`
        when it is absent (or the settings are not JSON). A present JSON null
        is None, as is the default default."""
        try:
            settings = json.loads(self.settings_text)
        except ValueError:
            return default
        found = _resolve_pointer(settings, pointer)
        return default if found is _ABSENT else found

    def has_package(self, package: str) -> bool:
        return package in self.packages


def parse_json(text: str, what: str, signal_name: str, into: Optional[type] = None) -> Any:
    try:
        value = json.loads(text)
        return value if into is None else _fit(value, into)
    except (ValueError, _Mismatch) as e:
        # `from None`: the message says everything; the JSON decoder's chain
        # would only repeat it in the captured output.
        raise Permanent(f"{what} of {signal_name} does not fit: {e}") from None


class _Mismatch(Exception):
    pass


# The annotations `_fit` checks; anything else (Optional[str], list[str], …)
# is taken as it comes, like `Any`.
_JSON_TYPES = (str, int, float, bool, list, dict)


def _fit(value: Any, into: type) -> Any:
    """Builds the dataclass `into` from a parsed JSON object the way serde
    would: unknown fields are ignored, a missing field without a default or a
    field of the wrong plain type is a mismatch."""
    if not dataclasses.is_dataclass(into):
        raise TypeError(f"into must be a dataclass, not {into!r}")
    if not isinstance(value, dict):
        raise _Mismatch(f"expected an object, found {_json_type(value)}")
    hints = typing.get_type_hints(into)
    fields = {}
    for f in dataclasses.fields(into):
        if not f.init:
            continue
        if f.name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Mismatch(f"missing field `{f.name}`")
            continue
        item, want = value[f.name], hints.get(f.name)
        if dataclasses.is_dataclass(want):
            item = _fit(item, want)
        elif want in _JSON_TYPES and not _is_json_type(item, want):
            raise _Mismatch(
                f"field `{f.name}`: expected {want.__name__}, found {_json_type(item)}"
            )
        fields[f.name] = item
    return into(**fields)


def _is_json_type(value: Any, want: type) -> bool:
    # bool is an int to Python but not to JSON; an integer is a valid float.
    if isinstance(value, bool):
        return want is bool
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


_ABSENT = object()


def _resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901, as serde_json's `Value::pointer` reads it."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return _ABSENT
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict):
            if token not in document:
                return _ABSENT
            document = document[token]
        elif isinstance(document, list):
            # Array indexes are plain decimals: no sign, no leading zero.
            if not token.isdecimal() or (token.startswith("0") and token != "0"):
                return _ABSENT
            index = int(token)
            if index >= len(document):
                return _ABSENT
            document = document[index]
        else:
            return _ABSENT
    return document
