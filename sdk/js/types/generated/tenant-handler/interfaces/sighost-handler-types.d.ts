declare module 'sighost:handler/types@0.1.0' {
  /**
   * Who or what a signal is about or was caused by (`user`/`u_42`).
   */
  export interface EntityRef {
    type: string,
    id: string,
  }
  /**
   * An immutable, tenant-scoped fact.
   */
  export interface Signal {
    id: string,
    tenant: string,
    /**
     * Dot-delimited, lowercase: `forum.thread.created`.
     */
    name: string,
    /**
     * A JSON object, as text.
     */
    payload: string,
    /**
     * A JSON object, as text.
     */
    metadata: string,
    dedupeKey?: string,
    occurredAt: string,
    correlationId?: string,
    causationId?: string,
    actor?: EntityRef,
    subject?: EntityRef,
    source?: string,
    insertedAt: string,
  }
  /**
   * Everything a handler may know about the world besides the signal. It holds
   * the invoking tenant's data only.
   */
  export interface Context {
    tenant: string,
    signalId: string,
    signalName: string,
    correlationId?: string,
    causationId?: string,
    /**
     * 1 for the first attempt.
     */
    attempt: number,
    maxAttempts: number,
    /**
     * The handler's options from its manifest: a JSON object, as text.
     */
    options: string,
    /**
     * The tenant's settings: a JSON object, as text.
     */
    settings: string,
    /**
     * The packages the tenant has installed.
     */
    packages: Array<string>,
  }
  /**
   * An intent the handler asks the host to carry out after the delivery
   * completes. The tenant is always the invoking tenant; a handler cannot name
   * another one.
   */
  export interface DirectiveRequest {
    /**
     * Must be one of the names the handler's manifest allows.
     */
    name: string,
    /**
     * A JSON object, as text.
     */
    payload: string,
    /**
     * Unique per tenant. The same key with the same payload is a duplicate;
     * with a different payload it is a conflict.
     */
    idempotencyKey: string,
    /**
     * When the directive may run at the earliest (RFC 3339); now if absent.
     */
    scheduledAt?: string,
  }
  /**
   * # Variants
   * 
   * ## `"accepted"`
   * 
   * A new directive; it is written when the delivery completes.
   * ## `"duplicate"`
   * 
   * This invocation already requested the same key with the same payload.
   */
  export type ReceiptStatus = 'accepted' | 'duplicate';
  export interface Receipt {
    directiveId: string,
    status: ReceiptStatus,
  }
  /**
   * Why a directive request was refused. The handler may go on and return ok;
   * refusing one request does not fail the delivery.
   */
  export type DirectiveError = DirectiveErrorNotPermitted | DirectiveErrorInvalid | DirectiveErrorTooLarge | DirectiveErrorSecretDetected | DirectiveErrorLimitExceeded | DirectiveErrorConflict;
  /**
   * The manifest does not allow this directive name.
   */
  export interface DirectiveErrorNotPermitted {
    tag: 'not-permitted',
    val: string,
  }
  /**
   * A malformed name, payload, key or schedule.
   */
  export interface DirectiveErrorInvalid {
    tag: 'invalid',
    val: string,
  }
  /**
   * The payload is over the size limit.
   */
  export interface DirectiveErrorTooLarge {
    tag: 'too-large',
    val: string,
  }
  /**
   * The payload carries something shaped like a credential.
   */
  export interface DirectiveErrorSecretDetected {
    tag: 'secret-detected',
    val: string,
  }
  /**
   * Too many directives requested in one invocation.
   */
  export interface DirectiveErrorLimitExceeded {
    tag: 'limit-exceeded',
    val: string,
  }
  /**
   * The key was already requested with a different payload.
   */
  export interface DirectiveErrorConflict {
    tag: 'conflict',
    val: string,
  }
  /**
   * How a handler reports failure. Transient errors are retried with backoff;
   * permanent ones discard the delivery at once.
   */
  export type HandlerError = HandlerErrorTransient | HandlerErrorPermanent;
  export interface HandlerErrorTransient {
    tag: 'transient',
    val: string,
  }
  export interface HandlerErrorPermanent {
    tag: 'permanent',
    val: string,
  }
}
