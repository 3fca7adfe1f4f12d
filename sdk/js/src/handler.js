// The wrappers that turn a handler function into the component's export.

import { DirectiveError, HandlerError, PermanentError, TransientError } from './errors.js';
import { Context, Signal } from './types.js';

/**
 * Runs `fn` and says how it ended: `{ ok: true }` or `{ ok: false, error }`
 * with a TransientError or PermanentError. Any other HandlerError (a bare
 * one, or a subclass of neither) is permanent, as is a DirectiveError that
 * escapes, since the same request would be refused on every retry. Any other
 * exception is a bug in the handler and is rethrown: like a Rust panic it
 * traps the component, and the host retries the delivery.
 */
export function runHandler(fn, args) {
  let returned;
  try {
    returned = fn(...args);
  } catch (error) {
    if (error instanceof TransientError || error instanceof PermanentError) return { ok: false, error };
    if (error instanceof HandlerError || error instanceof DirectiveError) {
      return { ok: false, error: new PermanentError(error.message, { cause: error }) };
    }
    throw error;
  }
  if (typeof returned?.then === 'function') {
    // The component's export is synchronous: nothing would wait for the
    // promise, so its directives and failures would be lost.
    returned.then(undefined, () => {});
    return {
      ok: false,
      error: new PermanentError('the handler returned a Promise; handlers must be synchronous'),
    };
  }
  return { ok: true };
}

function toSignal(raw) {
  return new Signal({ ...raw, payloadJson: raw.payload, metadataJson: raw.metadata });
}

function toContext(raw) {
  return new Context({ ...raw, optionsJson: raw.options, settingsJson: raw.settings });
}

/** How each shape turns the export's WIT arguments into the handler's. */
const SHAPES = {
  tenant: (signal, tenant, context) => [toSignal(signal), tenant, toContext(context)],
  context: (signal, context) => [toSignal(signal), toContext(context)],
  signal: (signal) => [toSignal(signal)],
};

function wrap(shape, fn) {
  const convert = SHAPES[shape];
  function handleSignal(...raw) {
    let outcome;
    try {
      outcome = runHandler(fn, convert(...raw));
    } catch (error) {
      // The trap that follows says little; the captured stderr keeps why.
      console.error(`handler failed: ${error?.stack ?? error}`);
      throw error;
    }
    // A thrown variant value is the WIT `err` case of the export's result.
    // The class decides the case, so an overridden `kind` cannot make an
    // invalid one.
    if (!outcome.ok) {
      const tag = outcome.error instanceof TransientError ? 'transient' : 'permanent';
      throw { tag, val: String(outcome.error.message) };
    }
  }
  // The testing harness runs `fn` itself, with the arguments of this shape.
  handleSignal.shape = shape;
  handleSignal.handler = fn;
  return handleSignal;
}

/** `fn(signal, tenant, context)`: the recommended shape (world tenant-handler). */
export const tenantHandler = (fn) => wrap('tenant', fn);

/** `fn(signal, context)` (world context-handler). */
export const contextHandler = (fn) => wrap('context', fn);

/** `fn(signal)` (world signal-handler); cannot see settings or packages. */
export const signalHandler = (fn) => wrap('signal', fn);
