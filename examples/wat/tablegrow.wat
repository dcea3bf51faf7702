;; tablegrow.wat: a small table without a maximum; grow asks for 50M more
;; entries (400 MiB in wazero) and returns what table.grow answered (-1 when
;; refused).
(module
  (table $t 1 funcref)
  (func (export "grow") (result i32)
    (table.grow $t (ref.null func) (i32.const 50000000))))
