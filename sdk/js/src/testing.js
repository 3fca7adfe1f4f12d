// A native test harness: run a handler function under `node --test`, no wasm
// involved, and look at the directives it requested.
//
// The harness checks what a handler author can get wrong in the handler
// itself: directive names outside the allow-list you give it, and the same
// key requested twice (duplicate with the same payload, conflict with
// another). Size, secret and count limits are the host's to enforce.

import { dirname, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectiveError } from './errors.js';
import { runHandler } from './handler.js';
import { install } from './host-native.js';
import { parseJsonValue, sameJsonValue } from './json-value.js';
import { handlerNameFor } from './package-name.js';
import { Context, Signal } from './types.js';

/**
 * Answers directive requests the way the host's sandbox does within one
 * invocation (wit/cases/directive-requests.json), and keeps the accepted ones.
 */
export class Recorder {
  /** The payload held by each key of `requested`, as parseJsonValue read it. */
  #exact = new Map();

  /** `allowed`: the directive names a manifest would allow; null allows all. */
  constructor(handlerName, allowed = null) {
    this.handlerName = handlerName;
    this.allowed = allowed;
    /** Accepted requests in order: { name, payload (parsed), idempotencyKey, scheduledAt }. */
    this.requested = [];
  }

  request({ name, payload, idempotencyKey, scheduledAt }) {
    if (this.allowed !== null && !this.allowed.includes(name)) {
      throw new DirectiveError('not-permitted', `directive ${name} is not in the handler's allow-list`);
    }
    let value;
    let exact;
    try {
      value = JSON.parse(payload);
      // What the host compares: keeps 1 apart from 1.0, as serde_json does.
      exact = parseJsonValue(payload);
    } catch (error) {
      throw new DirectiveError('invalid', `payload is not JSON: ${error.message}`);
    }
    const index = this.requested.findIndex((d) => d.idempotencyKey === idempotencyKey);
    if (index >= 0) {
      const earlier = this.requested[index];
      if (earlier.name !== name || !sameJsonValue(this.#exact.get(idempotencyKey), exact)) {
        throw new DirectiveError(
          'conflict',
          `idempotency key ${idempotencyKey} was already requested with another directive`,
        );
      }
      return { directiveId: `test-directive-${index + 1}`, status: 'duplicate' };
    }
    this.requested.push({ name, payload: value, idempotencyKey, scheduledAt });
    this.#exact.set(idempotencyKey, exact);
    return { directiveId: `test-directive-${this.requested.length}`, status: 'accepted' };
  }
}

/**
 * The directory of the file that called `fn` (by `new`), or undefined when
 * the stack does not say (no frames, or not a file).
 */
function callerDirectory(fn) {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  const holder = {};
  try {
    Error.prepareStackTrace = (_, sites) => sites;
    Error.stackTraceLimit = 1;
    // Leaves out `fn` and what it called: the first frame is its caller's.
    Error.captureStackTrace(holder, fn);
    const sites = holder.stack;
    const file = Array.isArray(sites) ? sites[0]?.getFileName?.() : undefined;
    if (typeof file !== 'string') return undefined;
    if (file.startsWith('file:')) return dirname(fileURLToPath(file));
    return isAbsolute(file) ? dirname(file) : undefined;
  } finally {
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
  }
}

/**
 * Builds signals and contexts for one handler and tenant, and runs the
 * handler function on them. The setters return the harness, so they chain.
 */
export class Harness {
  #settings = {};
  #options = {};
  #packages = [];
  #allowed = null;
  #attempt = 1;
  #maxAttempts = 10;
  #nextSignal = 1;

  /**
   * A harness for `tenant`. `handlerName` is the name default idempotency
   * keys are derived from; by default it is read, as the build reads it, from
   * the package.json nearest the file that constructs the harness (the test
   * file), or nearest the working directory when that file is unknown.
   */
  constructor(tenant, { handlerName } = {}) {
    if (typeof tenant !== 'string') {
      throw new TypeError('new Harness(tenant, { handlerName? }): tenant must be a string');
    }
    if (typeof arguments[1] === 'string') {
      throw new TypeError('new Harness(handlerName, tenant) is now new Harness(tenant, { handlerName })');
    }
    this.handlerName = handlerName ?? handlerNameFor(callerDirectory(new.target) ?? process.cwd());
    this.tenant = tenant;
  }

  settings(settings) {
    this.#settings = settings;
    return this;
  }

  options(options) {
    this.#options = options;
    return this;
  }

  packages(packages) {
    this.#packages = [...packages];
    return this;
  }

  /** Refuse directive names outside this list, as a manifest would. */
  allow(names) {
    this.#allowed = [...names];
    return this;
  }

  attempt(attempt, maxAttempts) {
    this.#attempt = attempt;
    this.#maxAttempts = maxAttempts;
    return this;
  }

  /** A signal of this tenant with fresh id `sig_test_N` and fixed timestamps. */
  signal(name, payload = {}) {
    const n = this.#nextSignal++;
    return new Signal({
      id: `sig_test_${n}`,
      tenant: this.tenant,
      name,
      payloadJson: JSON.stringify(payload),
      metadataJson: '{}',
      occurredAt: '2026-01-01T00:00:00Z',
      insertedAt: '2026-01-01T00:00:00Z',
    });
  }

  /** The context the host would pass with `signal`. */
  context(signal) {
    return new Context({
      tenant: this.tenant,
      signalId: signal.id,
      signalName: signal.name,
      correlationId: signal.correlationId,
      causationId: signal.causationId,
      attempt: this.#attempt,
      maxAttempts: this.#maxAttempts,
      optionsJson: JSON.stringify(this.#options),
      settingsJson: JSON.stringify(this.#settings),
      packages: this.#packages,
    });
  }

  /**
   * Runs `handler` on `signal` and returns `{ result, directives }`: `result`
   * is `{ ok: true }` or `{ ok: false, error }` (a TransientError or
   * PermanentError), `directives` the accepted requests, in order
   * (duplicates are not repeated). `handler` is an export made by
   * tenantHandler/contextHandler/signalHandler, or a plain function, which
   * gets (signal, tenant, context). An exception that would trap the
   * component is not caught: it fails the test, as a panic does in Rust.
   */
  run(signal, handler) {
    const shape = handler.shape ?? 'tenant';
    const fn = handler.handler ?? handler;
    const args = {
      tenant: () => [signal, this.tenant, this.context(signal)],
      context: () => [signal, this.context(signal)],
      signal: () => [signal],
    }[shape]();
    const recorder = new Recorder(this.handlerName, this.#allowed);
    const uninstall = install(recorder);
    try {
      return { result: runHandler(fn, args), directives: recorder.requested };
    } finally {
      uninstall();
    }
  }
}
