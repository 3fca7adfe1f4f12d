// Asks for a summary of each new forum thread, for tenants that have the
// `forum` package installed and `auto_summaries` turned on in their settings.
// The TypeScript port of handlers/forum-summarizer (Rust): same behaviour,
// same directive payload, same idempotency key.

import { directive, tenantHandler } from 'sighost-handler';
import type { Context, Signal } from 'sighost-handler';

interface ThreadCreated {
  thread_id: string;
  title: string;
}

interface Options {
  max_words: number;
}

// The checks serde does for the Rust handler: a value that does not fit
// throws, and the SDK turns that into a permanent error.
function threadCreated(value: any): ThreadCreated {
  if (typeof value?.thread_id !== 'string' || typeof value?.title !== 'string') {
    throw new Error('expected {"thread_id": string, "title": string}');
  }
  return { thread_id: value.thread_id, title: value.title };
}

function options(value: any): Options {
  const maxWords = value?.max_words;
  if (!Number.isInteger(maxWords) || maxWords < 0 || maxWords > 0xffffffff) {
    throw new Error('expected {"max_words": an unsigned 32-bit integer}');
  }
  return { max_words: maxWords };
}

export function summarize(signal: Signal, _tenant: string, context: Context): void {
  const enabled = context.setting('/auto_summaries') === true;
  if (!enabled || !context.hasPackage('forum')) {
    return; // not applicable to this tenant
  }
  const thread = signal.payload(threadCreated);
  const { max_words } = context.options(options);
  // The host keeps what a handler writes with its attempt (`sighost deliveries ID --json`).
  console.log(`summarizing thread ${thread.thread_id}`);
  directive('forum.thread.summarize')
    .payload({ thread_id: thread.thread_id, title: thread.title, max_words })
    .idempotencyKey(`summarize:${thread.thread_id}`)
    .request(signal);
}

export const handleSignal = tenantHandler(summarize);
