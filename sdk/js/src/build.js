// What `sighost-handler-build` does (bin/build.js parses the command line).
// Runs in Node only; never bundled into a handler.

import { copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { handlerNameFor } from './package-name.js';

export { handlerNameFor };

const SDK = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The repository's WIT: two levels above the SDK. */
export const DEFAULT_WIT = resolve(SDK, '../../wit');
export const WORLDS = ['tenant-handler', 'context-handler', 'signal-handler'];
export const BACKENDS = ['starlingmonkey', 'quickjs'];

/**
 * One ES module with the handler and the SDK in it. `#host` resolves to
 * host-guest.js (the `sighost-guest` condition); the WIT and WASI imports stay
 * imports for the componentizer to bind.
 */
export async function bundle(entry, handlerName, { console: withConsole = false } = {}) {
  const { build } = await import('rolldown');
  const dir = await mkdtemp(join(tmpdir(), 'sighost-bundle-'));
  try {
    let input = resolve(entry);
    if (withConsole) {
      // The console must exist before the handler module's own top level runs.
      input = join(dir, 'entry.js');
      const console = join(SDK, 'src/quickjs-console.js');
      await writeFile(
        input,
        `import ${JSON.stringify(console)};\nexport * from ${JSON.stringify(resolve(entry))};\n`,
      );
    }
    const output = await build({
      input,
      platform: 'neutral',
      external: [/^sighost:/, /^wasi:/],
      resolve: { conditionNames: ['sighost-guest', 'import', 'default'] },
      transform: { define: { __SIGHOST_HANDLER_NAME__: JSON.stringify(handlerName) } },
      output: { format: 'esm', codeSplitting: false },
      write: false,
      logLevel: 'warn',
    });
    return output.output[0].code;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function starlingmonkey(source, wit, world) {
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize(source, {
    sourceName: 'handler.js',
    witPath: wit,
    worldName: world,
    // stdio, clocks and random stay on: console output reaches the host's
    // captured log, Date.now() and Math.random() are live.
    disableFeatures: ['http', 'fetch-event'],
  });
  return component;
}

async function quickjs(source, wit, world) {
  const { componentize } = await import('componentize-qjs');
  // The handler's WIT plus the stdio the console needs (wit-extras/README.md).
  const dir = await mkdtemp(join(tmpdir(), 'sighost-wit-'));
  try {
    let pkg;
    for (const file of await readdir(wit)) {
      if (!file.endsWith('.wit')) continue;
      await copyFile(join(wit, file), join(dir, file));
      pkg ??= /^\s*package\s+([^;\s]+)\s*;/m.exec(await readFile(join(wit, file), 'utf8'))?.[1];
    }
    if (pkg === undefined) throw new Error(`no WIT package declared in ${wit}`);
    await cp(join(SDK, 'wit-extras/deps'), join(dir, 'deps'), { recursive: true });
    await writeFile(
      join(dir, 'zz-quickjs.wit'),
      `package ${pkg};\n\nworld ${world}-quickjs {\n    include ${world};\n` +
        `    import wasi:cli/stdout@0.2.12;\n    import wasi:cli/stderr@0.2.12;\n}\n`,
    );
    const entry = join(dir, 'handler.js');
    await writeFile(entry, source);
    const { component } = await componentize({
      witPath: dir,
      jsSource: source,
      jsPath: entry,
      world: `${world}-quickjs`,
      // The host does not enable the component-model async ABI.
      sync: true,
    });
    return component;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The component's imports, as `ns:pkg/iface@version` names. */
export async function componentImports(bytes) {
  const { componentWit } = await import('../scripts/jco.js');
  const wit = await componentWit(bytes);
  return [...wit.matchAll(/^\s*import\s+([^;:\s]+:[^;\s]+);/gm)].map((m) => m[1]);
}

export async function buildHandler({ entry, out, world = 'tenant-handler', backend = 'starlingmonkey', wit }) {
  if (!WORLDS.includes(world)) throw new Error(`unknown world ${world}; one of ${WORLDS.join(', ')}`);
  if (!BACKENDS.includes(backend)) throw new Error(`unknown backend ${backend}; one of ${BACKENDS.join(', ')}`);
  const started = Date.now();
  const witDir = resolve(wit ?? DEFAULT_WIT);
  const handlerName = handlerNameFor(dirname(resolve(entry)));
  const source = await bundle(entry, handlerName, { console: backend === 'quickjs' });
  const component = await (backend === 'quickjs' ? quickjs : starlingmonkey)(source, witDir, world);
  const forbidden = (await componentImports(component)).filter((name) => name.startsWith('wasi:http/'));
  if (forbidden.length > 0) {
    throw new Error(`the component imports ${forbidden.join(', ')}; the host refuses wasi:http`);
  }
  await mkdir(dirname(resolve(out)), { recursive: true });
  await writeFile(out, component);
  return { out, handlerName, world, backend, bytes: component.length, millis: Date.now() - started };
}
