package proplet

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile locks a byte range far past the pid the file holds, so a second
// proplet can still read who holds it (Windows locks are mandatory).
func lockFile(f *os.File) error {
	ol := &windows.Overlapped{Offset: 1 << 30}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}
