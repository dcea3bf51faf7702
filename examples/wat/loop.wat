;; loop.wat: a command module that never returns; the deadline or a stop
;; command must end it.
(module
  (func (export "_start")
    (loop $forever
      br $forever))
  (func (export "spin")
    (loop $forever
      br $forever)))
