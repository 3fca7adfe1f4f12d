// The `#host` module inside the component (see host-native.js for why there
// are two). `sighost-handler-build` picks this file and replaces
// __SIGHOST_HANDLER_NAME__ with the `name` in the handler's package.json.

import { requestDirective as request } from 'sighost:handler/directives@0.1.0';
import { DirectiveError } from './errors.js';

export function handlerName() {
  return __SIGHOST_HANDLER_NAME__;
}

/** Returns a receipt or throws a DirectiveError. */
export function requestDirective({ name, payload, idempotencyKey, scheduledAt }) {
  try {
    return request({ name, payload, idempotencyKey, scheduledAt });
  } catch (error) {
    // A WIT `err` arrives as a thrown error whose payload is the variant.
    const variant = error?.payload;
    if (typeof variant?.tag === 'string') throw new DirectiveError(variant.tag, variant.val);
    throw error;
  }
}
