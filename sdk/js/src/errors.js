// How a handler fails, and why the host refused a directive.

/**
 * The base of the two ways a handler may fail; `kind` is the WIT case. Throw
 * a TransientError or a PermanentError: a HandlerError that is neither (a bare
 * one, or your own subclass) is permanent.
 */
export class HandlerError extends Error {
  get kind() {
    return 'permanent';
  }
}

/** Retried with backoff: the same signal may succeed later. */
export class TransientError extends HandlerError {
  get kind() {
    return 'transient';
  }
}

/** Discards the delivery at once: retrying the same signal cannot help. */
export class PermanentError extends HandlerError {
  get kind() {
    return 'permanent';
  }
}

/** The cases of the WIT `directive-error` variant. */
export const DIRECTIVE_ERROR_KINDS = [
  'not-permitted',
  'invalid',
  'too-large',
  'secret-detected',
  'limit-exceeded',
  'conflict',
];

/**
 * The host refused a directive request. Catch it to go on; thrown out of the
 * handler it fails the delivery permanently, since the same code and signal
 * would be refused again on every retry.
 */
export class DirectiveError extends Error {
  constructor(kind, reason) {
    super(`directive refused (${kind.replace(/-/g, ' ')}): ${reason}`);
    /** One of DIRECTIVE_ERROR_KINDS. */
    this.kind = kind;
    /** The host's message, without the prefix. */
    this.reason = reason;
  }
}
