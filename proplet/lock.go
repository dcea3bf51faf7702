package proplet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockName is the file in the cache dir that a running proplet holds
// locked. Two proplets on one dir would share an outbox and a session
// ledger, each replaying and deleting the other's undelivered results.
const lockName = "lock"

// errLocked is what lockFile returns when another process holds the lock.
var errLocked = errors.New("locked")

// lockDir takes the cache dir's lock for as long as the proplet runs; the
// returned func releases it. The operating system drops the lock when the
// process dies, so a crash leaves no stale lock behind. The file holds the
// holder's pid, for the error a second proplet prints.
func lockDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache dir %s: lock: %w", dir, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("cache dir %s: lock %s: %w", dir, path, err)
		}
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil && strings.TrimSpace(string(b)) != "" {
			holder = "process " + strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("cache dir %s is in use by another proplet (%s holds %s): give each proplet its own --cache-dir", dir, holder, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}
