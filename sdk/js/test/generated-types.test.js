import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from '../scripts/generate-types.js';

const committed = fileURLToPath(new URL('../types/generated', import.meta.url));

async function tree(root) {
  const files = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath ?? entry.path, entry.name);
    files[path.slice(root.length + 1)] = await readFile(path, 'utf8');
  }
  return files;
}

test('types/generated is what jco generates from wit/ now (run `npm run types`)', async () => {
  const fresh = await mkdtemp(join(tmpdir(), 'sighost-types-'));
  try {
    await generate(fresh);
    assert.deepEqual(await tree(committed), await tree(fresh));
  } finally {
    await rm(fresh, { recursive: true, force: true });
  }
});
