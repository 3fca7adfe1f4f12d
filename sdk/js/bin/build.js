#!/usr/bin/env node
// sighost-handler-build <entry.ts|js> -o <out.wasm> [--world tenant-handler]
//   [--backend starlingmonkey|quickjs] [--wit <dir>]
//
// Bundles the entry with the SDK, injects the handler name (the `name` in the
// package.json nearest the entry) and componentizes the bundle against the
// WIT. The component may use stdio, clocks and random; it must not import
// wasi:http, and the build fails if it does.
import { parseArgs } from 'node:util';
import { buildHandler } from '../src/build.js';

const USAGE = `usage: sighost-handler-build <entry.ts|js> -o <out.wasm> [--world tenant-handler|context-handler|signal-handler] [--backend starlingmonkey|quickjs] [--wit <dir>]`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      world: { type: 'string', default: 'tenant-handler' },
      backend: { type: 'string', default: 'starlingmonkey' },
      wit: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (error) {
  console.error(`${error.message}\n${USAGE}`);
  process.exit(2);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (positionals.length !== 1 || !values.out) {
  console.error(USAGE);
  process.exit(2);
}

try {
  const built = await buildHandler({
    entry: positionals[0],
    out: values.out,
    world: values.world,
    backend: values.backend,
    wit: values.wit,
  });
  const mib = (built.bytes / 1024 / 1024).toFixed(1);
  console.log(
    `built ${built.out}: handler ${built.handlerName}, world ${built.world}, ` +
      `${built.backend}, ${mib} MiB in ${(built.millis / 1000).toFixed(1)} s`,
  );
} catch (error) {
  console.error(`sighost-handler-build: ${error?.message ?? error}`);
  process.exit(1);
}
