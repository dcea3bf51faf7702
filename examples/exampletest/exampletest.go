// Package exampletest builds the example WASM modules from source for tests
// and benchmarks, so `go test` needs no prior `make examples`. It follows
// the Makefile's rules: examples/NAME/main.go is built with GOOS=wasip1
// GOARCH=wasm (plus examples/NAME/buildflags), examples/wat/NAME.wat with
// wat2wasm.
package exampletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// built caches module bytes per test binary: a Go example takes seconds to
// link and every test wants the same bytes.
var (
	mu    sync.Mutex
	built = map[string]*entry{}
)

type entry struct {
	once sync.Once
	wasm []byte
	err  string
}

// Dir returns the absolute path of the examples folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Build returns the bytes of example NAME (a Go example directory, or a WAT
// file under examples/wat without its extension), building it on first use.
// It fails tb when the build fails.
func Build(tb testing.TB, name string) []byte {
	tb.Helper()
	mu.Lock()
	e, ok := built[name]
	if !ok {
		e = &entry{}
		built[name] = e
	}
	mu.Unlock()
	e.once.Do(func() { e.wasm, e.err = build(name) })
	if e.err != "" {
		tb.Fatalf("build example %s: %s", name, e.err)
	}
	return e.wasm
}

func build(name string) ([]byte, string) {
	dir := Dir()
	out, err := os.MkdirTemp("", "exampletest-")
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(out)
	target := filepath.Join(out, name+".wasm")

	var cmd *exec.Cmd
	if wat := filepath.Join(dir, "wat", name+".wat"); fileExists(wat) {
		cmd = exec.Command("wat2wasm", wat, "-o", target)
	} else if fileExists(filepath.Join(dir, name, "main.go")) {
		args := []string{"build"}
		if flags, err := os.ReadFile(filepath.Join(dir, name, "buildflags")); err == nil {
			args = append(args, strings.Fields(string(flags))...)
		}
		args = append(args, "-o", target, ".")
		cmd = exec.Command("go", args...)
		cmd.Dir = filepath.Join(dir, name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	} else {
		return nil, "no such example"
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, err.Error() + ": " + string(msg)
	}
	wasm, err := os.ReadFile(target)
	if err != nil {
		return nil, err.Error()
	}
	return wasm, ""
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
