;; membomb.wat: grows its memory one page at a time until the host refuses,
;; then traps, as a careless allocator would.
(module
  (memory 1)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then unreachable))
      br $grow)))
