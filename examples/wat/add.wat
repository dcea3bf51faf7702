;; add.wat: a tiny reactor with one export per numeric type, used to test
;; argument conversion and to benchmark instantiate-and-call overhead.
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add)
  (func (export "add64") (param i64 i64) (result i64)
    local.get 0
    local.get 1
    i64.add)
  (func (export "addf32") (param f32 f32) (result f32)
    local.get 0
    local.get 1
    f32.add)
  (func (export "mulf64") (param f64 f64) (result f64)
    local.get 0
    local.get 1
    f64.mul)
  (func (export "divmod") (param i32 i32) (result i32 i32)
    local.get 0
    local.get 1
    i32.div_s
    local.get 0
    local.get 1
    i32.rem_s))
