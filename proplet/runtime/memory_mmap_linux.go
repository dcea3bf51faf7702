package runtime

import "syscall"

// MAP_NORESERVE: the reservation is the task's limit, not what it uses, so
// it must not be charged against swap (the kernel still applies its
// overcommit policy; with strict overcommit mmap may fail and the memory
// falls back to the heap).
const mmapFlags = syscall.MAP_PRIVATE | syscall.MAP_ANON | syscall.MAP_NORESERVE
