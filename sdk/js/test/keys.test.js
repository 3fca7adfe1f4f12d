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
  // The message, a 0x80 byte and an 8-byte length fill whole 64-byte blocks:
  // 55 bytes still fit one block, 56 need a second; 64, 119/120 and 128 are
  // the same edges one block further. Each length is hashed as ASCII and,
  // from 2 bytes up, with a two-byte character in front (UTF-8 checked too).
  for (const length of [0, 1, 2, 3, 54, 55, 56, 57, 62, 63, 64, 65, 118, 119, 120, 121, 127, 128, 129, 1000]) {
    const texts = ['a'.repeat(length)];
    if (length >= 2) texts.push('é' + 'a'.repeat(length - 2));
    for (const text of texts) {
      const bytes = utf8(text);
      assert.equal(bytes.length, length, 'the length under test');
      assert.equal(sha256Hex(bytes), createHash('sha256').update(text).digest('hex'), `${length} ${text[0]}`);
    }
  }
});

test('UTF-8 matches TextEncoder, astral characters and lone surrogates included', () => {
  for (const text of ['', 'abc', 'ünï', '€', '😀', 'a\0b', 'x\ud800y']) {
    assert.deepEqual(utf8(text), new TextEncoder().encode(text), JSON.stringify(text));
  }
});
