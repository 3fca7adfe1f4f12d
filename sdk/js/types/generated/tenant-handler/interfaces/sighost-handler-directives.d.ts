/// <reference path="./sighost-handler-types.d.ts" />
declare module 'sighost:handler/directives@0.1.0' {
  export function requestDirective(request: DirectiveRequest): Receipt;
  export type DirectiveRequest = import('sighost:handler/types@0.1.0').DirectiveRequest;
  export type Receipt = import('sighost:handler/types@0.1.0').Receipt;
  export type DirectiveError = import('sighost:handler/types@0.1.0').DirectiveError;
}
