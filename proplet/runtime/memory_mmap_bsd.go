//go:build darwin || freebsd || netbsd || openbsd

package runtime

import "syscall"

// No MAP_NORESERVE: FreeBSD rejects it and the others ignore it; these
// kernels reserve no swap for an untouched anonymous mapping anyway.
const mmapFlags = syscall.MAP_PRIVATE | syscall.MAP_ANON
