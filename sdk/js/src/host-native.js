// The `#host` module under Node: there is no host, so the testing harness
// installs a recorder here for the length of a run.
//
// The SDK reaches the host only through `#host` (see package.json "imports").
// Node resolves it to this file; the build resolves it, with the
// `sighost-guest` condition, to host-guest.js, which calls the WIT import.
// Nothing else in the SDK knows which of the two it runs on.

import { DirectiveError } from './errors.js';

let current = null;

/**
 * Makes `recorder` ({ handlerName, request(request) }) answer directive
 * requests until the returned function is called.
 */
export function install(recorder) {
  const previous = current;
  current = recorder;
  return () => {
    current = previous;
  };
}

/** The handler whose default keys are being derived. */
export function handlerName() {
  return current?.handlerName ?? '';
}

/** Returns a receipt or throws a DirectiveError, as the host would. */
export function requestDirective(request) {
  if (current === null) {
    throw new DirectiveError(
      'invalid',
      'directives can only be requested inside a handler invocation or a testing harness run',
    );
  }
  return current.request(request);
}
