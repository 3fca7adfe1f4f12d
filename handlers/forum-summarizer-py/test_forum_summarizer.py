"""The Rust example's three tests, in the native harness, and the option's
u32 range."""

import pytest

from sighost_handler import Permanent
from sighost_handler.testing import Harness

from forum_summarizer import handle_signal


def harness(**kwargs):
    return Harness(
        "org_acme", options={"max_words": 50}, allow=["forum.thread.summarize"], **kwargs
    )


def test_requests_a_summary_when_the_tenant_turned_it_on():
    h = harness(settings={"auto_summaries": True}, packages=["forum"])
    signal = h.signal("forum.thread.created", {"thread_id": "t1", "title": "Hi"})
    run = h.run(signal, handle_signal)
    assert run.result is None
    assert len(run.directives) == 1
    assert run.directives[0].idempotency_key == "summarize:t1"
    assert run.directives[0].payload == {"thread_id": "t1", "title": "Hi", "max_words": 50}


def test_does_nothing_without_the_forum_package():
    h = harness(settings={"auto_summaries": True})
    signal = h.signal("forum.thread.created", {"thread_id": "t1", "title": "Hi"})
    run = h.run(signal, handle_signal)
    assert run.result is None
    assert run.directives == []


def test_a_malformed_payload_is_a_permanent_error():
    h = harness(settings={"auto_summaries": True}, packages=["forum"])
    signal = h.signal("forum.thread.created", {"thread": 1})
    run = h.run(signal, handle_signal)
    assert isinstance(run.result, Permanent)


@pytest.mark.parametrize("max_words", [-1, 2**32, 10**30, 1.5, 50.0, True, "50", None])
def test_max_words_outside_u32_is_a_permanent_error(max_words):
    # What serde refuses for the Rust handler's `max_words: u32`.
    h = harness(settings={"auto_summaries": True}, packages=["forum"])
    h.options = {"max_words": max_words}
    run = h.run(h.signal("forum.thread.created", {"thread_id": "t1", "title": "Hi"}), handle_signal)
    assert isinstance(run.result, Permanent), max_words
    assert run.result.message.startswith("handler options of forum.thread.created does not fit: ")
    assert run.directives == []


@pytest.mark.parametrize("max_words", [0, 2**32 - 1])
def test_max_words_takes_the_whole_u32_range(max_words):
    h = harness(settings={"auto_summaries": True}, packages=["forum"])
    h.options = {"max_words": max_words}
    run = h.run(h.signal("forum.thread.created", {"thread_id": "t1", "title": "Hi"}), handle_signal)
    assert run.result is None
    assert run.directives[0].payload["max_words"] == max_words
