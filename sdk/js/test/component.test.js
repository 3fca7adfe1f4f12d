// Builds test/fixture/handler.js into a component with each backend, runs it
// in Node through `jco transpile` (the host side of request-directive is
// test/fixture/host-directives.js) and checks what the host would see:
// console output, live clocks, the default key derived from the fixture's
// package.json name, and the WIT result of each way a handler can end.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { transpile } from '../scripts/jco.js';
import { buildHandler, componentImports } from '../src/build.js';
import { defaultIdempotencyKey } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, 'fixture');
const workspaceModules = resolve(here, '../../../node_modules');
const work = await mkdtemp(join(tmpdir(), 'sighost-component-test-'));
after(() => rm(work, { recursive: true, force: true }));

async function buildAndRun(backend, names) {
  const wasm = join(work, `${backend}.wasm`);
  await buildHandler({ entry: join(fixture, 'handler.js'), out: wasm, backend });
  const bytes = await readFile(wasm);
  const dir = join(work, backend);
  const { files } = await transpile(bytes, {
    name: 'handler',
    map: { 'sighost:handler/directives@0.1.0': join(fixture, 'host-directives.js') },
  });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  // The transpiled module imports @bytecodealliance/preview2-shim.
  await symlink(workspaceModules, join(dir, 'node_modules'));
  const before = Date.now();
  // The QuickJS component uses extended constant expressions, which Node 20's
  // V8 accepts only behind this flag.
  const { stdout } = await promisify(execFile)(process.execPath, [
    '--experimental-wasm-extended-const',
    join(fixture, 'drive.js'),
    join(dir, 'handler.js'),
    ...names,
  ]);
  const results = Object.fromEntries(
    stdout
      .split('\n')
      .filter((line) => line.startsWith('result='))
      .map((line) => JSON.parse(line.slice('result='.length)))
      .map((r) => [r.name, r]),
  );
  return { stdout, results, imports: await componentImports(bytes), before, after: Date.now() };
}

for (const backend of ['starlingmonkey', 'quickjs']) {
  describe(`a component built with ${backend}`, async () => {
    const names = ['ask', 'refused', 'transient', 'permanent', 'bad-payload', 'crash'];
    const run = await buildAndRun(backend, names);

    test('imports the directives but nothing from wasi:http', () => {
      assert.ok(run.imports.includes('sighost:handler/directives@0.1.0'), run.imports.join(' '));
      assert.deepEqual(run.imports.filter((i) => i.startsWith('wasi:http')), []);
    });

    test('writes console output, with live clocks', () => {
      const times = [...run.stdout.matchAll(/now=(\d+) random=([0-9.]+) attempt=2/g)];
      assert.equal(times.length, names.length, run.stdout);
      for (const [, now] of times) {
        assert.ok(Number(now) >= run.before - 1000 && Number(now) <= run.after + 1000, now);
      }
      assert.notEqual(times[0][2], times[1][2], 'Math.random is not frozen at build time');
    });

    test('requests directives with the default key of its package name', () => {
      const { result, requests } = run.results.ask;
      assert.deepEqual(result, { ok: true });
      assert.deepEqual(requests[0], {
        name: 'mail.send',
        payload: '{"to":"a"}',
        idempotencyKey: defaultIdempotencyKey('org_acme', 'sig_1', 'component-fixture', 'mail.send'),
        ...(requests[0].scheduledAt === null ? { scheduledAt: null } : {}),
      });
      assert.match(run.stdout, /receipt=\{"directiveId":"d1","status":"accepted"\}/);
      assert.match(run.stdout, /refused=not-permitted/);
    });

    test('maps each way a handler ends to the WIT result', () => {
      const result = (name) => run.results[name].result;
      assert.deepEqual(result('refused'), {
        err: { tag: 'permanent', val: 'directive refused (not permitted): not.allowed is not allowed' },
      });
      assert.deepEqual(result('transient'), { err: { tag: 'transient', val: 'try later' } });
      assert.deepEqual(result('permanent'), { err: { tag: 'permanent', val: 'never for org_acme' } });
      assert.deepEqual(result('bad-payload'), {
        err: { tag: 'permanent', val: 'payload of bad-payload does not fit: no thread_id' },
      });
      assert.match(result('crash').trap, /unreachable/);
    });
  });
}
