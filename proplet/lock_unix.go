//go:build unix

package proplet

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock(2) without waiting. flock belongs to
// the open file, so a second open in the same process conflicts too.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLocked
		default:
			return err
		}
	}
}
