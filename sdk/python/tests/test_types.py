import dataclasses
from dataclasses import dataclass, field

import pytest

from sighost_handler import Permanent, handler
from sighost_handler.handler import world_of
from sighost_handler.testing import Harness


@dataclass
class Inner:
    depth: int


@dataclass
class Thread:
    thread_id: str
    score: float
    pinned: bool
    inner: Inner
    tags: list = field(default_factory=list)


def signal_with(payload):
    return Harness("org_acme").signal("forum.thread.created", payload)


def test_a_payload_fits_a_dataclass_ignoring_unknown_fields():
    thread = signal_with(
        {"thread_id": "t1", "score": 2, "pinned": False, "inner": {"depth": 3}, "extra": 1}
    ).payload(Thread)
    assert thread == Thread("t1", 2, False, Inner(3), [])


@pytest.mark.parametrize("payload, complaint", [
    ({"score": 1.5, "pinned": True, "inner": {"depth": 1}}, "missing field `thread_id`"),
    ({"thread_id": 7, "score": 1.5, "pinned": True, "inner": {"depth": 1}},
     "field `thread_id`: expected str, found integer"),
    ({"thread_id": "t", "score": 1.5, "pinned": 1, "inner": {"depth": 1}},
     "field `pinned`: expected bool, found integer"),
    ({"thread_id": "t", "score": 1.5, "pinned": True, "inner": {"depth": True}},
     "field `depth`: expected int, found boolean"),
    ([1, 2], "expected an object, found array"),
])
def test_a_payload_that_does_not_fit_is_permanent(payload, complaint):
    with pytest.raises(Permanent) as error:
        signal_with(payload).payload(Thread)
    assert error.value.message == (
        f"payload of forum.thread.created does not fit: {complaint}"
    )


@dataclass
class Bounded:
    count: int

    def __post_init__(self):
        if not 0 <= self.count <= 9:
            raise ValueError("field `count`: expected 0..=9")


def test_a_value_error_from_post_init_is_a_mismatch_too():
    # How a handler narrows a type further (a u32, an enum of strings): the
    # dataclass checks it, and the failure is permanent like serde's.
    assert signal_with({"count": 9}).payload(Bounded) == Bounded(9)
    with pytest.raises(Permanent) as error:
        signal_with({"count": 10}).payload(Bounded)
    assert error.value.message == (
        "payload of forum.thread.created does not fit: field `count`: expected 0..=9"
    )


def test_text_that_is_not_json_is_permanent_for_every_document():
    signal = dataclasses.replace(signal_with({}), payload_text="{", metadata_text="nope")
    context = dataclasses.replace(
        Harness("org_acme").context(signal), options_text="[", settings_text=""
    )
    for read in (signal.payload, signal.metadata, context.options, context.settings):
        with pytest.raises(Permanent):
            read()


def test_a_setting_is_found_by_json_pointer():
    harness = Harness("org_acme", settings={
        "forum": {"auto": True, "a/b": 1, "m~n": 2, "list": [10, 20], "off": None},
    })
    context = harness.context(harness.signal("x.y"))
    assert context.setting("/forum/auto") is True
    assert context.setting("/forum/a~1b") == 1
    assert context.setting("/forum/m~0n") == 2
    assert context.setting("/forum/list/1") == 20
    assert context.setting("") == context.settings()
    assert context.setting("/forum/off", "absent") is None, "a JSON null is present"
    for absent in ("/forum/nope", "/forum/list/2", "/forum/list/01", "/forum/list/-1",
                   "/forum/auto/x", "forum"):
        assert context.setting(absent, "absent") == "absent", absent


def test_a_setting_of_unparsable_settings_is_absent():
    context = dataclasses.replace(
        Harness("org_acme").context(signal_with({})), settings_text="{"
    )
    assert context.setting("/a") is None


def test_the_shape_picks_the_world():
    assert world_of(lambda signal, tenant, context: None) == "tenant-handler"
    assert world_of(lambda signal, context, extra=1: None) == "context-handler"
    assert world_of(lambda signal: None) == "signal-handler"
    for wrong in (lambda: None, lambda a, b, c, d: None, lambda s, *, must: None):
        with pytest.raises(TypeError):
            handler(wrong)
