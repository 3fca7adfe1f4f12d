// `console` for the QuickJS backend, which has none: each call writes one line
// to the component's stdout (log, info, debug) or stderr (warn, error), which
// the host captures. The StarlingMonkey backend has its own console and does
// not load this file.

import { getStderr } from 'wasi:cli/stderr@0.2.12';
import { getStdout } from 'wasi:cli/stdout@0.2.12';
import { utf8 } from './utf8.js';

function format(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ?? String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function writer(stream) {
  return (...values) => {
    stream().blockingWriteAndFlush(utf8(`${values.map(format).join(' ')}\n`));
  };
}

const out = writer(getStdout);
const err = writer(getStderr);
globalThis.console = { log: out, info: out, debug: out, warn: err, error: err };
