;; A component whose core start function never returns: it spins in wasm
;; code while the component is instantiated. Loading it must end within the
;; host's load budget, saying so. Its export has the arity of a handler, so it
;; passes the shape check and reaches instantiation.
(component
  (core module $m
    (func $spin (loop $forever (br $forever)))
    (start $spin)
    (func (export "handle-signal") (param i32)))
  (core instance $i (instantiate $m))
  (func (export "handle-signal") (param "signal" u32)
    (canon lift (core func $i "handle-signal"))))
