//go:build linux || darwin || freebsd || netbsd || openbsd

package runtime

import "syscall"

// mmapBacked reports whether linear memories are mapped rather than
// allocated on the Go heap.
const mmapBacked = true

// mapMemory reserves n bytes of zeroed, private, read-write memory outside
// the Go heap. Pages cost physical memory only once touched.
func mapMemory(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, mmapFlags)
}

func unmapMemory(b []byte) error { return syscall.Munmap(b) }
