"""Asks for a summary of each new forum thread, for tenants that have the
`forum` package installed and `auto_summaries` turned on in their settings.
The Python port of handlers/forum-summarizer: same behaviour, same payload."""

from dataclasses import dataclass

from sighost_handler import directive, handler


@dataclass
class ThreadCreated:
    thread_id: str
    title: str


U32_MAX = 2**32 - 1


@dataclass
class Options:
    max_words: int  # a u32, as in the Rust handler

    def __post_init__(self):
        # `int` already refuses floats and booleans; the range is serde's u32.
        # A ValueError here is a mismatch: a permanent error.
        if not 0 <= self.max_words <= U32_MAX:
            raise ValueError(
                f"field `max_words`: expected an integer in 0..={U32_MAX}, found {self.max_words}"
            )


@handler
def handle_signal(signal, tenant, context):
    # `is True`: only a JSON true turns summaries on (Python's 1 == True).
    enabled = context.setting("/auto_summaries") is True
    if not enabled or not context.has_package("forum"):
        return  # not applicable to this tenant
    thread = signal.payload(ThreadCreated)
    options = context.options(Options)
    # The host keeps what a handler writes with its attempt (`sighost deliveries ID --json`).
    print(f"summarizing thread {thread.thread_id}")
    (
        directive("forum.thread.summarize")
        .payload({
            "thread_id": thread.thread_id,
            "title": thread.title,
            "max_words": options.max_words,
        })
        .idempotency_key(f"summarize:{thread.thread_id}")
        .request(signal)
    )
