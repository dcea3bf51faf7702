//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package runtime

import "errors"

// mmapBacked reports whether linear memories are mapped rather than
// allocated on the Go heap; on this platform they stay on the heap.
const mmapBacked = false

func mapMemory(int) ([]byte, error) { return nil, errors.New("mmap not supported") }

func unmapMemory([]byte) error { return nil }
