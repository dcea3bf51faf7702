// Package durable writes files that survive a crash: content is synced
// before it is moved into place, and the directory entry is synced after.
// Both the manager and the proplet use it, so it imports neither.
package durable

import (
	"os"
)

// WriteTemp writes data to a new file in dir, named after pattern as
// os.CreateTemp does, with mode perm, and syncs it. The caller moves it
// into place (rename or link) and removes it if that fails; on error
// nothing is left behind.
func WriteTemp(dir, pattern string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// SyncDir makes the entries created, renamed or removed in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
