;; A component whose core start function blocks for 60 s inside a host call
;; (a `wasi:clocks` timer, waited on with `wasi:io/poll`) while the component
;; is instantiated. Loading it must end within the host's load budget and
;; hold back no other load meanwhile. Its export has the arity of a handler,
;; so it passes the shape check and reaches instantiation.
(component
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type $p))
    (export "pollable" (type (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core module $m
    (import "wasi" "subscribe-duration" (func $subscribe (param i64) (result i32)))
    (import "wasi" "block" (func $block (param i32)))
    (func $wait (call $block (call $subscribe (i64.const 60000000000))))
    (start $wait)
    (func (export "handle-signal") (param i32)))
  (core instance $wasi
    (export "subscribe-duration" (func $subscribe))
    (export "block" (func $block)))
  (core instance $i (instantiate $m (with "wasi" (instance $wasi))))
  (func (export "handle-signal") (param "signal" u32)
    (canon lift (core func $i "handle-signal"))))
