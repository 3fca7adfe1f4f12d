// The handler's name: the `name` in the package.json nearest to it. The build
// reads it for the component (build.js) and the testing harness for its runs
// (testing.js), with this one function, so the two cannot disagree. Node only.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The `name` in the package.json nearest to `start` (a directory). */
export function handlerNameFor(start) {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    let text;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    if (text !== undefined) {
      const manifest = JSON.parse(text);
      if (typeof manifest?.name !== 'string' || manifest.name === '') {
        throw new Error(`${file} has no name`);
      }
      return manifest.name;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json above ${start}`);
  }
}
