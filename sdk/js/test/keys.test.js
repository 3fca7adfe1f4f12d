import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { defaultIdempotencyKey } from '../src/index.js';
import { sha256Hex } from '../src/sha256.js';
import { utf8 } from '../src/utf8.js';

// The shared vectors every SDK runs, read from the repository at test time.
const shared = JSON.parse(
  await readFile(new URL('../../../wit/cases/default-keys.json', import.meta.url), 'utf8'),
);

test('the default key matches every shared vector', () => {
  assert.ok(shared.cases.length > 0);
  for (const c of shared.cases) {
    assert.equal(defaultIdempotencyKey(c.tenant, c.signal_id, c.handler, c.directive), c.key, c.tenant);
  }
});

test('SHA-256 agrees with node:crypto around every padding boundary', () => {
  // 55/56 and 63/64 bytes are where the length no longer fits the last
  // block; a multi-byte character checks the UTF-8 encoding as well.
  for (const length of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 1000]) {
    const text = 'é'.repeat(length % 3) + 'a'.repeat(length);
    assert.equal(sha256Hex(utf8(text)), createHash('sha256').update(text).digest('hex'), `${length}`);
  }
});

test('UTF-8 matches TextEncoder, astral characters and lone surrogates included', () => {
  for (const text of ['', 'abc', 'ünï', '€', '😀', 'a\0b', 'x\ud800y']) {
    assert.deepEqual(utf8(text), new TextEncoder().encode(text), JSON.stringify(text));
  }
});
