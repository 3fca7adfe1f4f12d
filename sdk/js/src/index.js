// Write sighost signal handlers in JavaScript or TypeScript. See README.md.

export { DirectiveError, HandlerError, PermanentError, TransientError } from './errors.js';
export { Context, Signal } from './types.js';
export { Directive, defaultIdempotencyKey, directive } from './directive.js';
export { contextHandler, signalHandler, tenantHandler } from './handler.js';
