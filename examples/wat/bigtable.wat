;; bigtable.wat: declares a 100M-entry table (800 MiB in wazero) and fills it.
(module
  (table $t 100000000 funcref)
  (func (export "_start")
    (table.fill $t (i32.const 0) (ref.null func) (i32.const 100000000))))
