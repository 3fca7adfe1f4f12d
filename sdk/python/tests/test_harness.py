import pytest

from conftest import load_cases
from sighost_handler import DirectiveError, Permanent, ReceiptStatus, directive, handler
from sighost_handler.directive import DirectiveRequest
from sighost_handler.testing import Harness, Recorder


def answer(recorder, request):
    try:
        receipt = recorder.record(DirectiveRequest(
            request["name"], request["payload"], request["key"], None
        ))
    except DirectiveError as e:
        return e.kind
    return receipt.status.value


def test_the_recorder_answers_the_shared_directive_request_cases():
    # wit/cases/directive-requests.json, which the host's sandbox runs too.
    # The payloads go in as the exact text of the cases: the builder would
    # re-serialize them and hide a text comparison.
    cases = load_cases("directive-requests.json")
    assert cases
    for case in cases:
        recorder = Recorder(allowed=["mail.send", "task.create"])
        answers = [answer(recorder, r) for r in case["requests"]]
        assert answers == [r["expect"] for r in case["requests"]], case["case"]


@pytest.mark.parametrize("again", ['{"n":1.0}', '{"n":true}', '{"n":"1"}'])
def test_json_values_of_different_types_are_not_the_same_payload(again):
    # Python's == calls 1, 1.0 and True equal; the host's serde_json does not.
    recorder = Recorder()
    first = {"name": "a", "payload": '{"n":1}', "key": "k"}
    assert answer(recorder, first) == "accepted"
    assert answer(recorder, {**first, "payload": again}) == "conflict"


def test_the_harness_checks_the_allow_list_duplicates_and_conflicts():
    answers = []

    @handler
    def asks_for_everything(signal, tenant, context):
        first = directive("a.one").payload({"n": 1}).idempotency_key("k").request(signal)
        again = directive("a.one").payload({"n": 1}).idempotency_key("k").request(signal)
        answers.extend([first.status, again.status])
        for name, key in (("a.two", "k"), ("b.three", None)):
            builder = directive(name).payload({"n": 1})
            try:
                (builder.idempotency_key(key) if key else builder).request(signal)
            except DirectiveError as e:
                answers.append(e.kind)
        raise Permanent("done")

    harness = Harness("org_acme", handler_name="asker", allow=["a.one", "a.two"])
    run = harness.run(harness.signal("test.happened"), asks_for_everything)
    assert answers == [ReceiptStatus.ACCEPTED, ReceiptStatus.DUPLICATE, "conflict", "not-permitted"]
    assert isinstance(run.result, Permanent)
    assert [d.name for d in run.directives] == ["a.one"], "the duplicate is not repeated"


def test_signals_get_fresh_ids_and_the_context_carries_the_harness_settings():
    seen = []

    def looks(signal, tenant, context):
        seen.append((signal.id, tenant, context))

    harness = Harness(
        "org_acme", settings={"a": 1}, options={"o": True}, packages=["forum"],
        attempt=2, max_attempts=3, handler_name="h",
    )
    first, second = harness.signal("x.y", {"p": 1}), harness.signal("x.y")
    harness.run(first, looks)
    harness.run(second, looks)
    assert [s[0] for s in seen] == ["sig_test_1", "sig_test_2"]
    _, tenant, context = seen[0]
    assert tenant == "org_acme"
    assert (context.signal_id, context.signal_name) == ("sig_test_1", "x.y")
    assert (context.attempt, context.max_attempts) == (2, 3)
    assert context.settings() == {"a": 1} and context.options() == {"o": True}
    assert context.has_package("forum") and not context.has_package("chat")
    assert first.payload() == {"p": 1} and second.payload() == {}


def test_the_harness_calls_each_shape_with_its_own_arguments():
    calls = []
    harness = Harness("org_acme", handler_name="h")
    signal = harness.signal("x.y")
    harness.run(signal, lambda s, t, c: calls.append((s.id, t, c.tenant)))
    harness.run(signal, lambda s, c: calls.append((s.id, c.signal_id)))
    harness.run(signal, lambda s: calls.append((s.id,)))
    assert calls == [("sig_test_1", "org_acme", "org_acme"), ("sig_test_1", "sig_test_1"), ("sig_test_1",)]
