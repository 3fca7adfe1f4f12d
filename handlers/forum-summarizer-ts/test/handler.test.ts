// The Rust example's three tests, run in the native harness.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PermanentError } from 'sighost-handler';
import { Harness } from 'sighost-handler/testing';
import { handleSignal } from '../src/handler.ts';

// The handler name, from which default keys derive, is read as the build
// reads it: the `name` in the package.json nearest this file.
const harness = () => new Harness('org_acme').options({ max_words: 50 }).allow(['forum.thread.summarize']);

test('the harness knows the handler by its package.json name', () => {
  assert.equal(harness().handlerName, 'forum-summarizer-ts');
});

test('requests a summary when the tenant turned it on', () => {
  const h = harness().settings({ auto_summaries: true }).packages(['forum']);
  const signal = h.signal('forum.thread.created', { thread_id: 't1', title: 'Hi' });
  const run = h.run(signal, handleSignal);
  assert.deepEqual(run.result, { ok: true });
  assert.equal(run.directives.length, 1);
  assert.equal(run.directives[0].idempotencyKey, 'summarize:t1');
  assert.deepEqual(run.directives[0].payload, { thread_id: 't1', title: 'Hi', max_words: 50 });
});

test('does nothing without the forum package', () => {
  const h = harness().settings({ auto_summaries: true });
  const signal = h.signal('forum.thread.created', { thread_id: 't1', title: 'Hi' });
  const run = h.run(signal, handleSignal);
  assert.deepEqual(run.result, { ok: true });
  assert.deepEqual(run.directives, []);
});

// Not among the Rust example's tests: the settings gate, checked here too.
test('does nothing unless the tenant turned auto_summaries on', () => {
  for (const settings of [{}, { auto_summaries: false }, { auto_summaries: 'yes' }]) {
    const h = harness().settings(settings).packages(['forum']);
    const run = h.run(h.signal('forum.thread.created', { thread_id: 't1', title: 'Hi' }), handleSignal);
    assert.deepEqual(run.result, { ok: true });
    assert.deepEqual(run.directives, [], JSON.stringify(settings));
  }
});

test('a malformed payload is a permanent error', () => {
  const h = harness().settings({ auto_summaries: true }).packages(['forum']);
  const signal = h.signal('forum.thread.created', { thread: 1 });
  const run = h.run(signal, handleSignal);
  assert.ok(!run.result.ok && run.result.error instanceof PermanentError);
});
