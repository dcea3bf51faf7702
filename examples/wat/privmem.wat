;; privmem.wat: a private (neither exported nor imported) 1 GiB memory that
;; _start fills, so a proplet that checks only exported memories would map
;; and touch all of it.
(module
  (memory 16384)
  (func (export "_start")
    (memory.fill (i32.const 0) (i32.const 1) (i32.const 1073741824))))
