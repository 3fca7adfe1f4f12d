import gc
import math

import pytest

from conftest import load_cases
from sighost_handler import (
    DirectiveError,
    Permanent,
    ReceiptStatus,
    Transient,
    default_idempotency_key,
    directive,
    handler,
)
from sighost_handler.testing import Harness


def test_the_default_keys_match_the_shared_cases():
    # wit/cases/default-keys.json: computed apart from every SDK, so a change
    # here (which would make retried deliveries ask for new directives) fails.
    cases = load_cases("default-keys.json")
    assert cases
    for case in cases:
        key = default_idempotency_key(
            case["tenant"], case["signal_id"], case["handler"], case["directive"]
        )
        assert key == case["key"], case


def test_a_directive_without_a_key_gets_the_default_one_for_this_project():
    # The handler name is this SDK project's own (sdk/python/pyproject.toml),
    # as the build would read it for a handler defined here.
    def asks(signal, tenant, context):
        directive("audit.record").request(signal)

    harness = Harness("org_acme")
    signal = harness.signal("a.b")
    run = harness.run(signal, asks)
    assert run.result is None
    [requested] = run.directives
    assert requested.idempotency_key == default_idempotency_key(
        "org_acme", signal.id, "sighost-handler", "audit.record"
    )
    assert requested.payload == {}, "the payload defaults to an empty object"
    assert requested.scheduled_at is None


def test_the_builder_passes_payload_key_and_schedule():
    def asks(signal, tenant, context):
        receipt = (
            directive("mail.send")
            .payload({"to": "ü", "n": [1, 2.5]})
            .idempotency_key("k1")
            .scheduled_at("2026-01-02T00:00:00Z")
            .request(signal)
        )
        assert receipt.status is ReceiptStatus.ACCEPTED

    harness = Harness("org_acme", handler_name="mailer")
    run = harness.run(harness.signal("a.b"), asks)
    assert run.result is None
    [requested] = run.directives
    assert (requested.name, requested.payload, requested.idempotency_key, requested.scheduled_at) == (
        "mail.send", {"to": "ü", "n": [1, 2.5]}, "k1", "2026-01-02T00:00:00Z"
    )


@pytest.mark.parametrize("payload", [{"when": object()}, {"n": math.nan}, {1j: 1}])
def test_a_payload_that_is_not_json_is_invalid_and_nothing_is_requested(payload):
    refusals = []

    def asks(signal, tenant, context):
        try:
            directive("mail.send").payload(payload).request(signal)
        except DirectiveError as e:
            refusals.append(e.kind)

    harness = Harness("org_acme", handler_name="mailer")
    run = harness.run(harness.signal("a.b"), asks)
    assert refusals == ["invalid"]
    assert run.directives == []


def test_outside_an_invocation_a_request_is_refused_as_invalid():
    # Natively there are no bindings: the SDK must say so, not crash.
    signal = Harness("org_acme").signal("a.b")
    with pytest.raises(DirectiveError) as refused:
        directive("mail.send").request(signal)
    assert refused.value.kind == "invalid"


def test_a_refused_directive_that_propagates_fails_the_delivery_permanently():
    @handler
    def asks(signal, tenant, context):
        directive("not.allowed").request(signal)

    harness = Harness("org_acme", handler_name="h", allow=["mail.send"])
    run = harness.run(harness.signal("a.b"), asks)
    assert isinstance(run.result, Permanent)
    assert run.result.message == (
        "directive refused (not permitted): directive not.allowed is not in the handler's allow-list"
    )


def test_a_caught_refusal_lets_the_handler_succeed():
    def asks(signal, tenant, context):
        try:
            directive("not.allowed").request(signal)
        except DirectiveError:
            pass

    harness = Harness("org_acme", handler_name="h", allow=["mail.send"])
    assert harness.run(harness.signal("a.b"), asks).result is None


def test_transient_and_permanent_pass_as_raised_or_returned():
    def raises_transient(signal):
        raise Transient("try later")

    def returns_permanent(signal):
        return Permanent("never")

    harness = Harness("org_acme", handler_name="h")
    raised = harness.run(harness.signal("a.b"), raises_transient).result
    returned = harness.run(harness.signal("a.b"), returns_permanent).result
    assert isinstance(raised, Transient) and raised.message == "try later"
    assert isinstance(returned, Permanent) and returned.message == "never"


def test_any_other_exception_propagates_out_of_the_harness_as_it_would_trap():
    # Inside the component it traps, like a Rust panic; in a test it must
    # fail the test, not pass as a retryable error.
    def buggy(signal, context):
        directive("a.b").request(signal)
        return {}["missing"]

    harness = Harness("org_acme", handler_name="h")
    with pytest.raises(KeyError, match="missing"):
        harness.run(harness.signal("a.b"), buggy)
    with pytest.raises(DirectiveError, match="only be requested inside"):
        directive("a.b").request(harness.signal("a.b"))  # the invocation ended all the same


def test_async_handlers_are_refused_when_decorated():
    async def coroutine(signal, tenant, context):
        directive("a.b").request(signal)

    async def generator(signal):
        yield

    for fn in (coroutine, generator):
        with pytest.raises(TypeError, match="handlers are synchronous; .* is an async def function"):
            handler(fn)
        with pytest.raises(TypeError, match="handlers are synchronous"):
            Harness("org_acme", handler_name="h").run(Harness("org_acme").signal("a.b"), fn)


def test_an_awaitable_returned_is_permanent_and_never_runs(recwarn):
    async def later(signal):
        directive("a.b").request(signal)

    def hands_back(signal):  # not async def itself, so only its result tells
        return later(signal)

    harness = Harness("org_acme", handler_name="h")
    run = harness.run(harness.signal("a.b"), hands_back)
    assert isinstance(run.result, Permanent)
    assert run.result.message == "the handler returned an awaitable; handlers must be synchronous"
    assert run.directives == []
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)], "the coroutine is closed"


def test_directive_errors_know_only_the_wit_kinds():
    assert str(DirectiveError("secret-detected", "at /token")) == (
        "directive refused (secret detected): at /token"
    )
    with pytest.raises(ValueError):
        DirectiveError("refused", "x")
