// The directive builder and the default idempotency key.

import { handlerName, requestDirective } from '#host';
import { DirectiveError } from './errors.js';
import { sha256Hex } from './sha256.js';
import { utf8 } from './utf8.js';

/**
 * The key a directive gets unless it sets its own: lowercase hex SHA-256
 * over tenant, signal id, handler name and directive name, joined by NUL
 * bytes, so that a retried or replayed delivery asks for the same key.
 */
export function defaultIdempotencyKey(tenant, signalId, handler, directive) {
  return sha256Hex(utf8([tenant, signalId, handler, directive].join('\0')));
}

/** Starts a directive request; finish it with `.request(signal)`. */
export function directive(name) {
  return new Directive(name);
}

/** A directive being built: payload `{}`, default key and "now" unless set. */
export class Directive {
  #name;
  #payload = '{}';
  /** A serialization failure is kept until `request`, so the builder chains. */
  #payloadError;
  #idempotencyKey;
  #scheduledAt;

  constructor(name) {
    this.#name = name;
  }

  /** The payload: anything that serializes to a JSON object. */
  payload(value) {
    try {
      const text = JSON.stringify(value);
      if (text === undefined) throw new TypeError(`${typeof value} has no JSON form`);
      this.#payload = text;
      this.#payloadError = undefined;
    } catch (error) {
      this.#payloadError = error?.message ?? String(error);
    }
    return this;
  }

  idempotencyKey(key) {
    this.#idempotencyKey = key;
    return this;
  }

  /** The earliest time the directive may run: RFC 3339 text or a Date. */
  scheduledAt(at) {
    this.#scheduledAt = at instanceof Date ? at.toISOString() : at;
    return this;
  }

  /**
   * Asks the host for this directive on behalf of `signal`'s tenant and
   * returns its receipt ({ directiveId, status: 'accepted' | 'duplicate' }).
   * A refusal throws a DirectiveError. The directive is written only if the
   * delivery completes.
   */
  request(signal) {
    if (this.#payloadError !== undefined) {
      throw new DirectiveError('invalid', `payload does not serialize: ${this.#payloadError}`);
    }
    const idempotencyKey =
      this.#idempotencyKey ??
      defaultIdempotencyKey(signal.tenant, signal.id, handlerName(), this.#name);
    return requestDirective({
      name: this.#name,
      payload: this.#payload,
      idempotencyKey,
      scheduledAt: this.#scheduledAt,
    });
  }
}
