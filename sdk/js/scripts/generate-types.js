#!/usr/bin/env node
// Regenerates types/generated/<world>/ from the repository's WIT, one directory
// per handler world: `npm run types` (default out dir) or
// `node scripts/generate-types.js <out-dir>` (used by the drift test).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { types } from './jco.js';

export const WORLDS = ['tenant-handler', 'context-handler', 'signal-handler'];
const here = dirname(fileURLToPath(import.meta.url));
export const WIT = resolve(here, '../../../wit');

export async function generate(outDir) {
  await rm(outDir, { recursive: true, force: true });
  for (const world of WORLDS) {
    const files = await types(WIT, { worldName: world, guest: true, outDir: join(outDir, world) });
    for (const [path, bytes] of Object.entries(files)) {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, bytes);
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await generate(resolve(process.argv[2] ?? join(here, '../types/generated')));
}
