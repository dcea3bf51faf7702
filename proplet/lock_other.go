//go:build !unix && !windows

package proplet

import "os"

// lockFile: these platforms have no advisory file locks; the dir is not
// guarded against a second proplet there.
func lockFile(*os.File) error { return nil }
