"""The glue inside the component, run natively against the real bindings
componentize-py generates, with the host's import replaced by a fake."""

import importlib
import sys
import textwrap

import pytest

from sighost_handler import DIRECTIVE_ERROR_KINDS, DirectiveError, ReceiptStatus, default_idempotency_key
from sighost_handler.build import Entry, entry_source
from sighost_handler.directive import DirectiveRequest


class FakeHost:
    """Stands in for `request-directive`: records the WIT requests and answers
    with `answer` (a receipt status, or a directive-error case to raise)."""

    def __init__(self, wit, answer="accepted"):
        self.wit, self.answer, self.requests = wit, answer, []

    def __call__(self, request):
        from componentize_py_types import Err

        self.requests.append(request)
        if isinstance(self.answer, type):
            raise Err(self.answer("refused here"))
        return self.wit.Receipt("d-1", self.wit.ReceiptStatus[self.answer.upper()])


@pytest.fixture
def wit(bindings):
    bindings("tenant-handler")
    from wit_world.imports import types

    return types


@pytest.fixture
def host(wit, monkeypatch):
    from wit_world.imports import directives

    fake = FakeHost(wit)
    monkeypatch.setattr(directives, "request_directive", fake)
    return fake


def wit_signal(wit, name="forum.thread.created", payload="{}"):
    return wit.Signal(
        id="sig_1", tenant="org_acme", name=name, payload=payload, metadata='{"m":1}',
        dedupe_key="d", occurred_at="2026-01-01T00:00:00Z", correlation_id="c",
        causation_id=None, actor=wit.EntityRef(type="user", id="u_1"), subject=None,
        source="s", inserted_at="2026-01-01T00:00:01Z",
    )


def wit_context(wit):
    return wit.Context(
        tenant="org_acme", signal_id="sig_1", signal_name="forum.thread.created",
        correlation_id="c", causation_id=None, attempt=2, max_attempts=5,
        options='{"o":1}', settings='{"s":1}', packages=["forum"],
    )


def test_a_request_crosses_to_the_host_and_its_receipt_comes_back(wit, host):
    from sighost_handler import _guest

    for status in ("accepted", "duplicate"):
        host.answer = status
        receipt = _guest.request_directive(DirectiveRequest("a.b", '{"x":1}', "k", "2026-01-02T00:00:00Z"))
        assert receipt.status is ReceiptStatus(status)
        assert receipt.directive_id == "d-1"
    assert host.requests[0] == wit.DirectiveRequest("a.b", '{"x":1}', "k", "2026-01-02T00:00:00Z")


def test_every_directive_error_case_keeps_its_kind(wit, host):
    from sighost_handler import _guest

    cases = [wit.DirectiveError_NotPermitted, wit.DirectiveError_Invalid, wit.DirectiveError_TooLarge,
             wit.DirectiveError_SecretDetected, wit.DirectiveError_LimitExceeded, wit.DirectiveError_Conflict]
    kinds = []
    for case in cases:
        host.answer = case
        with pytest.raises(DirectiveError) as refused:
            _guest.request_directive(DirectiveRequest("a.b", "{}", "k", None))
        assert refused.value.message == "refused here"
        kinds.append(refused.value.kind)
    assert kinds == list(DIRECTIVE_ERROR_KINDS)


PARAMETERS = {
    "tenant-handler": "signal, tenant, context",
    "context-handler": "signal, context",
    "signal-handler": "signal",
}


def load_entry(tmp_path, monkeypatch, world, body):
    """Writes a handler module of `world`'s shape with `body`, generates the
    entry module for it the way the build does, and imports it."""
    module = "probe_" + world.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""\
        from sighost_handler import Permanent, Transient, directive, handler

        seen = []

        @handler
        def handle({PARAMETERS[world]}):
            seen.append(({PARAMETERS[world]}))
    """) + textwrap.indent(textwrap.dedent(body), "    "))
    (tmp_path / "sighost_entry.py").write_text(entry_source(Entry("probe-handler", module, "handle", world)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module("sighost_entry"), importlib.import_module(module)


@pytest.mark.parametrize("world", list(PARAMETERS))
def test_the_entry_converts_the_wit_values_for_each_shape(bindings, tmp_path, monkeypatch, world):
    bindings(world)
    from wit_world.imports import types as wit

    entry, module = load_entry(tmp_path, monkeypatch, world, "pass")
    args = {"tenant-handler": (wit_signal(wit), "org_acme", wit_context(wit)),
            "context-handler": (wit_signal(wit), wit_context(wit)),
            "signal-handler": (wit_signal(wit),)}[world]
    assert entry.WitWorld().handle_signal(*args) is None
    [seen] = module.seen
    signal = seen[0] if isinstance(seen, tuple) else seen
    assert signal.actor.kind == "user" and signal.actor.id == "u_1"
    assert signal.metadata() == {"m": 1} and signal.subject is None
    assert (signal.dedupe_key, signal.correlation_id, signal.source) == ("d", "c", "s")
    assert signal.inserted_at == "2026-01-01T00:00:01Z"
    if world != "signal-handler":
        context = seen[-1]
        assert (context.attempt, context.max_attempts, context.packages) == (2, 5, ["forum"])
        assert context.options() == {"o": 1} and context.setting("/s") == 1
    if world == "tenant-handler":
        assert seen[1] == "org_acme"


@pytest.mark.parametrize("body, case, message", [
    ('raise Transient("later")', "HandlerError_Transient", "later"),
    ('raise Permanent("never")', "HandlerError_Permanent", "never"),
    ('directive("a.b").request(signal)', "HandlerError_Permanent",
     "directive refused (conflict): refused here"),
])
def test_the_entry_returns_failures_as_handler_errors(wit, host, tmp_path, monkeypatch, body, case, message):
    from componentize_py_types import Err

    host.answer = wit.DirectiveError_Conflict
    entry, _ = load_entry(tmp_path, monkeypatch, "tenant-handler", body)
    with pytest.raises(Err) as failed:
        entry.WitWorld().handle_signal(wit_signal(wit), "org_acme", wit_context(wit))
    assert failed.value.value == getattr(wit, case)(message)


def test_any_other_exception_leaves_the_entry_as_it_is(wit, host, tmp_path, monkeypatch):
    # componentize-py 0.25.1 turns an exception escaping the export (anything
    # but Err) into a trap, after printing its traceback to stderr: the host
    # retries the delivery as it does after a Rust panic.
    entry, _ = load_entry(tmp_path, monkeypatch, "tenant-handler", "{}['k']")
    with pytest.raises(KeyError, match="'k'"):
        entry.WitWorld().handle_signal(wit_signal(wit), "org_acme", wit_context(wit))


def test_the_entry_derives_default_keys_from_the_name_it_was_built_with(wit, host, tmp_path, monkeypatch):
    entry, _ = load_entry(tmp_path, monkeypatch, "tenant-handler", 'directive("a.b").request(signal)')
    entry.WitWorld().handle_signal(wit_signal(wit), "org_acme", wit_context(wit))
    [request] = host.requests
    assert request.idempotency_key == default_idempotency_key("org_acme", "sig_1", "probe-handler", "a.b")
    assert request.payload == "{}"
