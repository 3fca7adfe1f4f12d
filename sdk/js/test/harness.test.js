import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { DirectiveError, PermanentError, defaultIdempotencyKey, directive, tenantHandler } from '../src/index.js';
import { Harness, Recorder } from '../src/testing.js';

// The cases every implementation of the duplicate/conflict rule runs (the
// host's sandbox too), read from the repository at test time.
const shared = JSON.parse(
  await readFile(new URL('../../../wit/cases/directive-requests.json', import.meta.url), 'utf8'),
);

test('the recorder answers the shared directive-request cases', () => {
  assert.ok(shared.cases.length > 0);
  for (const c of shared.cases) {
    const recorder = new Recorder('asker', ['mail.send', 'task.create']);
    const answers = c.requests.map((r) => {
      try {
        return recorder.request({ name: r.name, payload: r.payload, idempotencyKey: r.key }).status;
      } catch (error) {
        if (error instanceof DirectiveError && error.kind === 'conflict') return 'conflict';
        throw error;
      }
    });
    assert.deepEqual(answers, c.requests.map((r) => r.expect), c.case);
  }
});

/**
 * Asks for a.one twice under one key (same payload), then for a.two under
 * that key, then for a name off the allow-list, and reports every answer.
 */
const asksForEverything = tenantHandler((signal) => {
  const answer = (build) => {
    try {
      return build().request(signal).status;
    } catch (error) {
      return error.kind;
    }
  };
  const first = answer(() => directive('a.one').payload({ n: 1 }).idempotencyKey('k'));
  const again = answer(() => directive('a.one').payload({ n: 1 }).idempotencyKey('k'));
  const other = answer(() => directive('a.two').payload({ n: 1 }).idempotencyKey('k'));
  const forbidden = answer(() => directive('b.three'));
  throw new PermanentError([first, again, other, forbidden].join(' | '));
});

test('a run checks the allow-list, duplicates and conflicts', () => {
  const harness = new Harness('org_acme', { handlerName: 'asker' }).allow(['a.one', 'a.two']);
  const run = harness.run(harness.signal('test.happened'), asksForEverything);
  assert.ok(run.result.error instanceof PermanentError);
  assert.equal(run.result.error.message, 'accepted | duplicate | conflict | not-permitted');
  assert.equal(run.directives.length, 1, 'the duplicate is not repeated');
  assert.equal(run.directives[0].name, 'a.one');
});

test('a directive without a key gets the default key of the handler name given', () => {
  const harness = new Harness('org_acme', { handlerName: 'audit-trail' });
  const signal = harness.signal('thing.done', { x: 1 });
  assert.equal(signal.id, 'sig_test_1');
  const run = harness.run(signal, (s) => {
    directive('audit.record').request(s);
  });
  assert.deepEqual(run.result, { ok: true });
  assert.deepEqual(run.directives, [
    {
      name: 'audit.record',
      payload: {},
      idempotencyKey: defaultIdempotencyKey('org_acme', 'sig_test_1', 'audit-trail', 'audit.record'),
      scheduledAt: undefined,
    },
  ]);
  assert.equal(harness.signal('thing.done').id, 'sig_test_2');
});

test('payload and schedule reach the request; a payload without JSON form is invalid', () => {
  const harness = new Harness('org_acme');
  const run = harness.run(harness.signal('s'), (signal) => {
    directive('x').payload({ a: [1, 'b'] }).scheduledAt(new Date(Date.UTC(2026, 0, 2))).request(signal);
    const circular = {};
    circular.self = circular;
    for (const payload of [circular, 1n, undefined]) {
      assert.throws(
        () => directive('y').payload(payload).request(signal),
        (e) => e instanceof DirectiveError && e.kind === 'invalid',
      );
    }
  });
  assert.deepEqual(run.result, { ok: true });
  assert.deepEqual(run.directives[0].payload, { a: [1, 'b'] });
  assert.equal(run.directives[0].scheduledAt, '2026-01-02T00:00:00.000Z');
  assert.equal(run.directives.length, 1);
});

test('outside a run a directive request is refused as invalid', () => {
  const signal = new Harness('org_acme').signal('s');
  assert.throws(
    () => directive('x').request(signal),
    (e) => e instanceof DirectiveError && e.kind === 'invalid',
  );
});

test('the handler name defaults to the package.json nearest the test file', () => {
  // This file's nearest package.json is the SDK's own.
  const harness = new Harness('org_acme');
  assert.equal(harness.handlerName, 'sighost-handler');
  const run = harness.run(harness.signal('s'), (signal) => {
    directive('x').request(signal);
  });
  assert.equal(
    run.directives[0].idempotencyKey,
    defaultIdempotencyKey('org_acme', 'sig_test_1', 'sighost-handler', 'x'),
  );
  class Mine extends Harness {}
  assert.equal(new Mine('org_acme').handlerName, 'sighost-handler');
  assert.equal(new Harness('org_acme', { handlerName: 'given' }).handlerName, 'given');
  assert.throws(() => new Harness('h', 'org_acme'), /is now new Harness\(tenant, \{ handlerName \}\)/);
});

const work = await mkdtemp(join(tmpdir(), 'sighost-harness-name-'));
after(() => rm(work, { recursive: true, force: true }));

/** Runs `source` as a module at `file` (or with -e) in `cwd`; returns its stdout. */
async function runNode(cwd, source, file) {
  const args = file === undefined ? ['--input-type=module', '-e', source] : [file];
  if (file !== undefined) await writeFile(file, source);
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd });
  return stdout.trim();
}

test('the test file decides the default name; the working directory when there is none', async () => {
  const testing = new URL('../src/testing.js', import.meta.url).href;
  const print = `import { Harness } from ${JSON.stringify(testing)};\n` +
    `try { console.log(new Harness('t').handlerName); } catch (e) { console.log('error: ' + e.message); }\n`;
  const handler = join(work, 'handler');
  const elsewhere = join(work, 'elsewhere');
  const bare = join(work, 'bare');
  await mkdir(join(handler, 'test'), { recursive: true });
  await mkdir(elsewhere);
  await mkdir(bare);
  await writeFile(join(handler, 'package.json'), JSON.stringify({ name: 'from-test-file', type: 'module' }));
  await writeFile(join(elsewhere, 'package.json'), JSON.stringify({ name: 'from-cwd' }));
  assert.equal(await runNode(elsewhere, print, join(handler, 'test', 'name.test.js')), 'from-test-file');
  assert.equal(await runNode(elsewhere, print), 'from-cwd');
  // Nothing to read: the same error as the build's.
  assert.equal(await runNode(bare, print), `error: no package.json above ${bare}`);
  await writeFile(join(bare, 'package.json'), '{}');
  assert.equal(await runNode(bare, print), `error: ${join(bare, 'package.json')} has no name`);
});
