// The API of `sighost-handler/testing`, written by hand.

import type {
  Context,
  HandlerExport,
  PermanentError,
  Receipt,
  Signal,
  TenantHandlerFn,
  TransientError,
} from './index.js';

/** A directive the handler requested during a run. */
export interface RequestedDirective {
  name: string;
  /** The payload, parsed. */
  payload: unknown;
  idempotencyKey: string;
  scheduledAt: string | undefined;
}

export type RunResult = { ok: true } | { ok: false; error: TransientError | PermanentError };

export interface Run {
  result: RunResult;
  /** Accepted requests, in order; duplicates are not repeated. */
  directives: RequestedDirective[];
}

/** Answers requests as the host's sandbox does within one invocation. */
export declare class Recorder {
  constructor(handlerName: string, allowed?: readonly string[] | null);
  readonly handlerName: string;
  readonly requested: RequestedDirective[];
  /** Returns a receipt or throws a DirectiveError. */
  request(request: {
    name: string;
    payload: string;
    idempotencyKey: string;
    scheduledAt?: string;
  }): Receipt;
}

/** Builds signals and contexts for one handler and tenant, and runs it. */
export declare class Harness {
  /**
   * `handlerName` (the name default keys derive from) defaults to the `name`
   * in the package.json nearest the file that constructs the harness, as the
   * build reads it; the working directory's when that file is unknown.
   */
  constructor(tenant: string, options?: { handlerName?: string });
  readonly handlerName: string;
  readonly tenant: string;
  settings(settings: unknown): this;
  options(options: unknown): this;
  packages(packages: Iterable<string>): this;
  /** Refuse directive names outside this list, as a manifest would. */
  allow(names: Iterable<string>): this;
  attempt(attempt: number, maxAttempts: number): this;
  /** A signal of this tenant with id `sig_test_N` and fixed timestamps. */
  signal(name: string, payload?: unknown): Signal;
  /** The context the host would pass with `signal`. */
  context(signal: Signal): Context;
  /**
   * Runs an export of tenantHandler/contextHandler/signalHandler, or a plain
   * (signal, tenant, context) function. An exception other than the SDK's
   * errors is rethrown, as the component would trap.
   */
  run(signal: Signal, handler: HandlerExport<any, any> | TenantHandlerFn): Run;
}
