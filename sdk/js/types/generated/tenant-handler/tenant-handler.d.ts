/// <reference path="./interfaces/sighost-handler-directives.d.ts" />
/// <reference path="./interfaces/sighost-handler-types.d.ts" />
declare module 'sighost:handler/tenant-handler@0.1.0' {
  export type Signal = import('sighost:handler/types@0.1.0').Signal;
  export type Context = import('sighost:handler/types@0.1.0').Context;
  export type HandlerError = import('sighost:handler/types@0.1.0').HandlerError;
  export type * as SighostHandlerDirectives010 from 'sighost:handler/directives@0.1.0'; // import sighost:handler/directives@0.1.0
  export type * as SighostHandlerTypes010 from 'sighost:handler/types@0.1.0'; // import sighost:handler/types@0.1.0
  export function handleSignal(signal: Signal, tenant: string, context: Context): void;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
