;; trap.wat: traps at once, from _start and from an exported function
;; (integer division by zero).
(module
  (func (export "_start")
    unreachable)
  (func (export "divzero") (param i32) (result i32)
    local.get 0
    i32.const 0
    i32.div_s))
