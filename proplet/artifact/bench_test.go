package artifact_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/artifact"
)

// BenchmarkFetchHTTPRevalidate fetches one 2 MB module by http URI with no
// task digest, over and over, as a proplet does for a task run many times a
// second. "download" is an origin that sends no validators, so every fetch
// is a full GET, hash and cache lookup: the cost every fetch had before
// revalidation. "etag" and "last-modified" (a plain http.FileServer) answer
// each conditional GET with 304; "fresh" says max-age=3600, so fetches need
// no request at all. body-B/op is response body bytes the server sent per
// fetch, requests/op the requests it saw.
func BenchmarkFetchHTTPRevalidate(b *testing.B) {
	const size = 2 << 20
	mod := randomModule(42, size)
	dir := b.TempDir()
	path := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(path, mod, 0o600); err != nil {
		b.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		b.Fatal(err)
	}
	origins := []struct {
		name string
		h    http.Handler
	}{
		{"download", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(mod) })},
		{"etag", &module{body: mod, etag: `"m1"`, cacheControl: "no-cache"}},
		{"last-modified", http.FileServer(http.Dir(dir))},
		{"fresh", &module{body: mod, etag: `"m1"`, cacheControl: "max-age=3600"}},
	}
	for _, o := range origins {
		b.Run(o.name, func(b *testing.B) {
			rec, url := serve(b, o.h)
			f := newFetcher(b, artifact.Config{})
			art := wire.Artifact{URI: url + "/m.wasm"}
			ctx := context.Background()
			if _, err := f.Fetch(ctx, art); err != nil { // fill the cache
				b.Fatal(err)
			}
			reqs, sent := rec.n(), rec.bytes()
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				blob, err := f.Fetch(ctx, art)
				if err != nil || len(blob.Data) != size {
					b.Fatal(err, len(blob.Data))
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(rec.bytes()-sent)/float64(b.N), "body-B/op")
			b.ReportMetric(float64(rec.n()-reqs)/float64(b.N), "requests/op")
		})
	}
}
