package proplet

import (
	"context"
	"testing"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/proplet/runtime"
)

// eagerFetcher hides artifact.Fetcher.Resolve, so the executor reads and
// hashes every cached module as it did before Resolve existed.
type eagerFetcher struct{ f *artifact.Fetcher }

func (e eagerFetcher) Fetch(ctx context.Context, a wire.Artifact) (artifact.Blob, error) {
	return e.f.Fetch(ctx, a)
}

// BenchmarkExecuteCachedModule runs one task over and over whose 2 MB
// module is in the disk cache and compiled in memory, as a proplet does
// for a task repeated many times a second: "go" runs the Go wasip1 hello
// command, "tiny-padded" calls add in the WAT example padded to 2 MB with
// a custom section (the per-task cost without Go's start-up). "read" is
// the executor before Resolve: each task reads and hashes the cached file
// although the runtime never looks at the bytes; "lazy" leaves them
// unread.
func BenchmarkExecuteCachedModule(b *testing.B) {
	ctx := context.Background()
	mods := []struct {
		name string
		wasm []byte
		st   wire.StartTask
	}{
		{"go", exampletest.Build(b, "hello"), wire.StartTask{CLIArgs: []string{"bench"}}},
		{"tiny-padded", padModule(exampletest.Build(b, "add"), 2<<20), wire.StartTask{Function: "add", Inputs: []float64{2, 3}}},
	}
	for _, m := range mods {
		digest := artifact.Digest(m.wasm)
		f, err := artifact.New(artifact.Config{CacheDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Cache().Put(m.wasm); err != nil {
			b.Fatal(err)
		}
		rt, err := runtime.New(ctx, runtime.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rt.Close(ctx) })
		st := m.st
		st.TaskID, st.Attempt, st.Artifact = "t", 1, wire.Artifact{URI: wire.RelayScheme + digest}
		for _, mode := range []struct {
			name string
			f    Fetcher
		}{{"read", eagerFetcher{f}}, {"lazy", f}} {
			b.Run(m.name+"/"+mode.name, func(b *testing.B) {
				x := &executor{fetch: mode.f, run: rt, workDir: b.TempDir()}
				if out := x.Execute(ctx, st, func() {}); out.Failed() { // compile
					b.Fatal(out.Reason, out.Err)
				}
				b.ReportAllocs()
				for b.Loop() {
					out := x.Execute(ctx, st, func() {})
					if out.Failed() || !out.Metrics.CacheHit {
						b.Fatal(out.Reason, out.Err)
					}
				}
			})
		}
	}
}

// padModule appends a custom section to a module so it is size bytes
// long, like a module carrying a large data or debug payload: the same
// code, as much to read and hash as a Go-built module.
func padModule(wasm []byte, size int) []byte {
	name := "pad"
	n := size - len(wasm) - 1 - 5 - 1 - len(name)
	if n < 0 {
		return wasm
	}
	out := append([]byte(nil), wasm...)
	out = append(out, 0) // custom section
	ln := uint32(1 + len(name) + n)
	// Fixed-width (5 byte) LEB128, so the arithmetic above holds.
	for i := range 5 {
		c := byte(ln>>(7*i)) & 0x7f
		if i < 4 {
			c |= 0x80
		}
		out = append(out, c)
	}
	out = append(out, byte(len(name)))
	out = append(out, name...)
	return append(out, make([]byte, n)...)
}
