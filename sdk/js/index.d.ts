// The API of `sighost-handler`, written by hand. The WIT values themselves are
// declared in types/generated/, which `npm run types` regenerates from wit/.

/// <reference path="./types/generated/tenant-handler/interfaces/sighost-handler-types.d.ts" />

import type {
  Context as WitContext,
  EntityRef,
  Signal as WitSignal,
} from 'sighost:handler/types@0.1.0';

export type { EntityRef };

/** Turns a parsed JSON value into what the handler wants, or throws. */
export type Check<T> = (value: any) => T;

/** An immutable, tenant-scoped fact, as the host delivered it. */
export declare class Signal {
  constructor(fields: SignalFields);
  readonly id: string;
  readonly tenant: string;
  /** Dot-delimited, lowercase: `forum.thread.created`. */
  readonly name: string;
  /** The payload as the host sent it: a JSON object, as text. */
  readonly payloadJson: string;
  /** The metadata: a JSON object, as text. */
  readonly metadataJson: string;
  readonly dedupeKey: string | undefined;
  /** RFC 3339, UTC. */
  readonly occurredAt: string;
  readonly correlationId: string | undefined;
  readonly causationId: string | undefined;
  readonly actor: EntityRef | undefined;
  readonly subject: EntityRef | undefined;
  readonly source: string | undefined;
  readonly insertedAt: string;
  /**
   * The payload, parsed and passed through `check`. Invalid JSON, or a
   * `check` that throws, is a PermanentError.
   */
  payload<T = any>(check?: Check<T>): T;
  /** The metadata, parsed and passed through `check`; a mismatch is permanent. */
  metadata<T = any>(check?: Check<T>): T;
}

export interface SignalFields {
  id: string;
  tenant: string;
  name: string;
  payloadJson: string;
  metadataJson: string;
  dedupeKey?: string | null;
  occurredAt: string;
  correlationId?: string | null;
  causationId?: string | null;
  actor?: EntityRef | null;
  subject?: EntityRef | null;
  source?: string | null;
  insertedAt: string;
}

/**
 * What a handler may know besides the signal: its own options and the
 * invoking tenant's settings and packages, nothing of any other tenant.
 */
export declare class Context {
  constructor(fields: ContextFields);
  readonly tenant: string;
  readonly signalId: string;
  readonly signalName: string;
  readonly correlationId: string | undefined;
  readonly causationId: string | undefined;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** The handler's manifest options: a JSON object, as text. */
  readonly optionsJson: string;
  /** The tenant's settings: a JSON object, as text. */
  readonly settingsJson: string;
  /** The packages the tenant has installed. */
  readonly packages: readonly string[];
  /** The handler's options, parsed and checked; a mismatch is permanent. */
  options<T = any>(check?: Check<T>): T;
  /** The tenant's settings, parsed and checked; a mismatch is permanent. */
  settings<T = any>(check?: Check<T>): T;
  /** One setting by JSON pointer (`/forum/auto_summaries`), undefined if absent. */
  setting(pointer: string): unknown;
  hasPackage(name: string): boolean;
}

export interface ContextFields {
  tenant: string;
  signalId: string;
  signalName: string;
  correlationId?: string | null;
  causationId?: string | null;
  attempt: number;
  maxAttempts: number;
  optionsJson: string;
  settingsJson: string;
  packages: readonly string[];
}

/**
 * The base of the two ways a handler fails. Throw a TransientError or a
 * PermanentError; a HandlerError that is neither is permanent.
 */
export declare class HandlerError extends Error {
  readonly kind: 'transient' | 'permanent';
}

/** Retried with backoff. */
export declare class TransientError extends HandlerError {
  readonly kind: 'transient';
}

/** Discards the delivery at once. */
export declare class PermanentError extends HandlerError {
  readonly kind: 'permanent';
}

export type DirectiveErrorKind =
  | 'not-permitted'
  | 'invalid'
  | 'too-large'
  | 'secret-detected'
  | 'limit-exceeded'
  | 'conflict';

/**
 * The host refused a directive request. Catch it to go on; thrown out of the
 * handler it fails the delivery permanently.
 */
export declare class DirectiveError extends Error {
  constructor(kind: DirectiveErrorKind, reason: string);
  readonly kind: DirectiveErrorKind;
  /** The host's message. */
  readonly reason: string;
}

/** The host's answer to an accepted request. */
export interface Receipt {
  directiveId: string;
  /** `duplicate`: this invocation already requested the key with this payload. */
  status: 'accepted' | 'duplicate';
}

/** A directive being built. */
export declare class Directive {
  constructor(name: string);
  /** Anything that serializes to a JSON object; the default is `{}`. */
  payload(value: unknown): this;
  /** The default is defaultIdempotencyKey(tenant, signal id, handler name, directive name). */
  idempotencyKey(key: string): this;
  /** The earliest time the directive may run: RFC 3339 text or a Date. */
  scheduledAt(at: string | Date): this;
  /**
   * Asks the host for the directive on behalf of the signal's tenant. Throws
   * a DirectiveError when refused (`invalid` if the payload does not
   * serialize).
   */
  request(signal: Pick<Signal, 'tenant' | 'id'>): Receipt;
}

/** Starts a directive request; finish it with `.request(signal)`. */
export declare function directive(name: string): Directive;

/**
 * Lowercase hex SHA-256 of tenant, signal id, handler name and directive name
 * joined by NUL bytes: the key of a directive that sets none.
 */
export declare function defaultIdempotencyKey(
  tenant: string,
  signalId: string,
  handler: string,
  directive: string,
): string;

/** What a handler function may do: return nothing, or throw. */
type Returns = void;

/** The component's `handle-signal` export, which the harness can also run. */
export interface HandlerExport<Shape extends 'tenant' | 'context' | 'signal', Fn> {
  readonly shape: Shape;
  readonly handler: Fn;
}

export type TenantHandlerFn = (signal: Signal, tenant: string, context: Context) => Returns;
export type ContextHandlerFn = (signal: Signal, context: Context) => Returns;
export type SignalHandlerFn = (signal: Signal) => Returns;

/** `fn(signal, tenant, context)`: world tenant-handler, the recommended shape. */
export declare function tenantHandler(
  fn: TenantHandlerFn,
): ((signal: WitSignal, tenant: string, context: WitContext) => void) &
  HandlerExport<'tenant', TenantHandlerFn>;

/** `fn(signal, context)`: world context-handler. */
export declare function contextHandler(
  fn: ContextHandlerFn,
): ((signal: WitSignal, context: WitContext) => void) & HandlerExport<'context', ContextHandlerFn>;

/** `fn(signal)`: world signal-handler; cannot see settings or packages. */
export declare function signalHandler(
  fn: SignalHandlerFn,
): ((signal: WitSignal) => void) & HandlerExport<'signal', SignalHandlerFn>;
