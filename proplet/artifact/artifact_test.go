package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/proplet/runtime"
	"github.com/absmach/propeller/test/ocitest"
)

// pushWasm pushes wasm to the registry at reg as repo:tag, a one-layer
// application/wasm artifact, and returns the manifest digest.
func pushWasm(t *testing.T, reg, repo, tag string, wasm []byte) string {
	t.Helper()
	r, err := ocipush.ParseRegistry("oci://" + reg + "/" + repo)
	require.NoError(t, err)
	res, err := ocipush.Push(t.Context(), r, tag, wasm, ocipush.Options{MediaType: artifact.MediaTypeWasm, ArtifactType: artifact.MediaTypeWasmConfig})
	require.NoError(t, err)
	return res.Manifest
}

// newRegistry serves the OCI distribution API on loopback. tamper, when
// set, rewrites blob downloads as a hostile mirror would.
func newRegistry(t *testing.T, tamper func(path string, body []byte) []byte) string {
	t.Helper()
	reg := ocitest.Handler()
	h := reg
	if tamper != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				reg.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			body := tamper(r.URL.Path, rec.Body.Bytes())
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// relayFunc is a stand-in for the agent's MQTT relay in these unit tests.
type relayFunc func(ctx context.Context, digest string) ([]byte, error)

func (f relayFunc) Fetch(ctx context.Context, digest string) ([]byte, error) { return f(ctx, digest) }

func flip(b []byte) []byte {
	out := bytes.Clone(b)
	out[len(out)-1] ^= 0xff
	return out
}

func TestFetchSources(t *testing.T) {
	wasm := exampletest.Build(t, "add")
	other := exampletest.Build(t, "trap")
	digest := artifact.Digest(wasm)
	ctx := context.Background()

	var httpHits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/add.wasm", func(w http.ResponseWriter, r *http.Request) { httpHits.Add(1); _, _ = w.Write(wasm) })
	mux.HandleFunc("/tampered.wasm", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(flip(wasm)) })
	mux.HandleFunc("/big.wasm", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(make([]byte, 4096)) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)

	reg := newRegistry(t, nil)
	manifest := pushWasm(t, reg, "wasm/add", "v1", wasm)
	pushWasm(t, reg, "wasm/trap", "v1", other)

	relay := relayFunc(func(_ context.Context, d string) ([]byte, error) {
		switch d {
		case digest:
			return wasm, nil
		case artifact.Digest(other):
			return flip(other), nil // a broken relay
		}
		return nil, errors.New("unknown blob")
	})

	cases := []struct {
		name    string
		art     wire.Artifact
		source  string
		errIs   error
		errText string
	}{
		{name: "inline", art: wire.Artifact{Inline: wasm}, source: "inline"},
		{name: "inline with digest", art: wire.Artifact{Inline: wasm, Digest: digest}, source: "inline"},
		{name: "inline tampered", art: wire.Artifact{Inline: flip(wasm), Digest: digest}, errIs: artifact.ErrDigestMismatch},
		{name: "http", art: wire.Artifact{URI: web.URL + "/add.wasm"}, source: "http"},
		{name: "http tampered", art: wire.Artifact{URI: web.URL + "/tampered.wasm", Digest: digest}, errIs: artifact.ErrDigestMismatch},
		{name: "http too large", art: wire.Artifact{URI: web.URL + "/big.wasm"}, errIs: artifact.ErrTooLarge},
		{name: "http not found", art: wire.Artifact{URI: web.URL + "/missing.wasm"}, errText: "404"},
		{name: "oci tag", art: wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1"}, source: "oci"},
		{name: "oci manifest digest", art: wire.Artifact{URI: "oci://" + reg + "/wasm/add@" + manifest}, source: "oci"},
		{name: "oci with task digest", art: wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1", Digest: digest}, source: "oci"},
		{name: "oci other module than task says", art: wire.Artifact{URI: "oci://" + reg + "/wasm/trap:v1", Digest: digest}, errIs: artifact.ErrDigestMismatch},
		{name: "oci missing tag", art: wire.Artifact{URI: "oci://" + reg + "/wasm/add:nope"}, errText: "resolve"},
		{name: "relay", art: wire.Artifact{URI: wire.RelayScheme + digest}, source: "relay"},
		{name: "relay tampered", art: wire.Artifact{URI: wire.RelayScheme + artifact.Digest(other)}, errIs: artifact.ErrDigestMismatch},
		{name: "relay uri and digest disagree", art: wire.Artifact{URI: wire.RelayScheme + digest, Digest: artifact.Digest(other)}, errIs: artifact.ErrDigestMismatch},
		{name: "relay bad digest", art: wire.Artifact{URI: wire.RelayScheme + "md5:abc"}, errIs: artifact.ErrBadDigest},
		{name: "unsupported scheme", art: wire.Artifact{URI: "ftp://example/add.wasm"}, errIs: artifact.ErrUnsupported},
		{name: "both uri and inline", art: wire.Artifact{URI: web.URL + "/add.wasm", Inline: wasm}, errText: "both"},
		{name: "nothing", art: wire.Artifact{}, errText: "neither"},
		{name: "malformed digest", art: wire.Artifact{Inline: wasm, Digest: "sha256:XYZ"}, errIs: artifact.ErrBadDigest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// No cache: every case really goes to its source.
			f, err := artifact.New(artifact.Config{MaxBytes: 1024, OCIPlainHTTP: artifact.PlainHTTPLoopback, Relay: relay})
			require.NoError(t, err)
			b, err := f.Fetch(ctx, tc.art)
			if tc.errIs != nil || tc.errText != "" {
				require.Error(t, err)
				if tc.errIs != nil {
					require.ErrorIs(t, err, tc.errIs)
				}
				require.Contains(t, err.Error(), tc.errText)
				return
			}
			require.NoError(t, err)
			require.Equal(t, wasm, b.Data)
			require.Equal(t, digest, b.Digest)
			require.Equal(t, tc.source, b.Source)
			require.False(t, b.CacheHit)
		})
	}

	t.Run("no relay configured", func(t *testing.T) {
		f, err := artifact.New(artifact.Config{})
		require.NoError(t, err)
		_, err = f.Fetch(ctx, wire.Artifact{URI: wire.RelayScheme + digest})
		require.ErrorIs(t, err, artifact.ErrNoRelay)
	})
	t.Run("tls required by default", func(t *testing.T) {
		f, err := artifact.New(artifact.Config{Timeout: 10 * time.Second})
		require.NoError(t, err)
		_, err = f.Fetch(ctx, wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1"})
		require.Error(t, err)
	})
}

// TestOCITamperedLayer serves a layer whose bytes do not match the
// manifest: the pull must fail even when the task names no digest.
func TestOCITamperedLayer(t *testing.T) {
	wasm := exampletest.Build(t, "add")
	layerPath := "/blobs/" + artifact.Digest(wasm)
	reg := newRegistry(t, func(path string, body []byte) []byte {
		if strings.HasSuffix(path, layerPath) {
			return flip(body)
		}
		return body
	})
	ctx := context.Background()
	pushWasm(t, reg, "wasm/add", "v1", wasm)

	f, err := artifact.New(artifact.Config{CacheDir: t.TempDir(), OCIPlainHTTP: artifact.PlainHTTPLoopback})
	require.NoError(t, err)
	_, err = f.Fetch(ctx, wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "mismatch")
	require.Zero(t, f.Cache().Len(), "a tampered blob is never cached")
}

// TestOCIRunsInRuntime pulls a module from the registry and runs it, the
// path a proplet takes for an oci:// task.
func TestOCIRunsInRuntime(t *testing.T) {
	wasm := exampletest.Build(t, "add")
	reg := newRegistry(t, nil)
	ctx := context.Background()
	pushWasm(t, reg, "wasm/add", "v1", wasm)

	f, err := artifact.New(artifact.Config{CacheDir: t.TempDir(), OCIPlainHTTP: artifact.PlainHTTPLoopback})
	require.NoError(t, err)
	blob, err := f.Fetch(ctx, wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1"})
	require.NoError(t, err)

	rt, err := runtime.New(ctx, runtime.Config{CompilationCacheDir: t.TempDir()})
	require.NoError(t, err)
	defer rt.Close(ctx)
	res := rt.Run(ctx, runtime.Job{Wasm: blob.Data, Digest: blob.Digest, Function: "add", Inputs: []float64{20, 22}})
	require.True(t, res.OK(), res.Error)
	require.Equal(t, []float64{42}, res.Results)
}

func TestFetchCacheAndRestart(t *testing.T) {
	wasm := exampletest.Build(t, "add")
	digest := artifact.Digest(wasm)
	var hits atomic.Int64
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(wasm)
	}))
	t.Cleanup(web.Close)
	reg := newRegistry(t, nil)
	ctx := context.Background()
	pushWasm(t, reg, "wasm/add", "v1", wasm)

	dir := t.TempDir()
	cfg := artifact.Config{CacheDir: dir, OCIPlainHTTP: artifact.PlainHTTPLoopback}
	byDigest := wire.Artifact{URI: web.URL + "/add.wasm", Digest: digest}

	f, err := artifact.New(cfg)
	require.NoError(t, err)
	steps := []struct {
		name     string
		art      wire.Artifact
		hit      bool
		httpHits int64
	}{
		{name: "first fetch downloads", art: byDigest, hit: false, httpHits: 1},
		{name: "same digest is cached", art: byDigest, hit: true, httpHits: 1},
		{name: "relay of a cached digest needs no relay", art: wire.Artifact{URI: wire.RelayScheme + digest}, hit: true, httpHits: 1},
		{name: "no digest: http must download", art: wire.Artifact{URI: web.URL + "/add.wasm"}, hit: false, httpHits: 2},
		{name: "oci tag resolves, layer cached", art: wire.Artifact{URI: "oci://" + reg + "/wasm/add:v1"}, hit: true, httpHits: 2},
	}
	for _, s := range steps {
		b, err := f.Fetch(ctx, s.art)
		require.NoError(t, err, s.name)
		require.Equal(t, s.hit, b.CacheHit, s.name)
		require.Equal(t, wasm, b.Data, s.name)
		require.Equal(t, s.httpHits, hits.Load(), s.name)
	}

	// A new Fetcher on the same dir (a proplet restart) still has it.
	restarted, err := artifact.New(cfg)
	require.NoError(t, err)
	b, err := restarted.Fetch(ctx, byDigest)
	require.NoError(t, err)
	require.True(t, b.CacheHit)
	require.Equal(t, int64(2), hits.Load())

	// A blob corrupted on disk is dropped and fetched again.
	path, err := restarted.Cache().Path(digest)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, flip(wasm), 0o600))
	b, err = restarted.Fetch(ctx, byDigest)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	require.Equal(t, wasm, b.Data)
	require.Equal(t, int64(3), hits.Load())
}

func TestCacheEviction(t *testing.T) {
	dir := t.TempDir()
	blob := func(b byte) []byte { return bytes.Repeat([]byte{b}, 100) }
	c, err := artifact.OpenCache(dir, 250)
	require.NoError(t, err)

	da, err := c.Put(blob('a'))
	require.NoError(t, err)
	db, err := c.Put(blob('b'))
	require.NoError(t, err)
	_, ok := c.Get(da) // a is now more recent than b
	require.True(t, ok)
	dc, err := c.Put(blob('c'))
	require.NoError(t, err)

	require.Equal(t, 2, c.Len())
	require.Equal(t, int64(200), c.Size())
	require.True(t, c.Has(da))
	require.False(t, c.Has(db), "least recently used is evicted")
	require.True(t, c.Has(dc))
	_, err = os.Stat(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(db, "sha256:")))
	require.ErrorIs(t, err, os.ErrNotExist)

	big, err := c.Put(make([]byte, 300))
	require.NoError(t, err)
	require.False(t, c.Has(big), "a blob bigger than the cache is not kept")

	// Restart with a leftover temp file and a smaller bound: the index is
	// rebuilt from disk, the temp file removed, the oldest blob evicted.
	blobs := filepath.Join(dir, "blobs", "sha256")
	require.NoError(t, os.WriteFile(filepath.Join(blobs, ".tmp-partial"), []byte("x"), 0o600))
	old := time.Now().Add(-time.Hour)
	pathA, _ := c.Path(da)
	require.NoError(t, os.Chtimes(pathA, old, old))

	reopened, err := artifact.OpenCache(dir, 150)
	require.NoError(t, err)
	require.Equal(t, 1, reopened.Len())
	require.False(t, reopened.Has(da))
	got, ok := reopened.Get(dc)
	require.True(t, ok)
	require.Equal(t, blob('c'), got)
	_, err = os.Stat(filepath.Join(blobs, ".tmp-partial"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestResolveLazy checks that Resolve answers a cache hit without reading
// the file (a corrupt copy goes unnoticed until Load), and that Load
// verifies: a corrupt copy is dropped and fetched again pinned to the
// digest, or, with the source gone, fails and stays dropped.
func TestResolveLazy(t *testing.T) {
	wasm := exampletest.Build(t, "add")
	digest := artifact.Digest(wasm)
	var relayHits atomic.Int64
	var relayDown atomic.Bool
	relay := relayFunc(func(_ context.Context, d string) ([]byte, error) {
		relayHits.Add(1)
		if relayDown.Load() {
			return nil, errors.New("manager unreachable")
		}
		return wasm, nil
	})
	f, err := artifact.New(artifact.Config{CacheDir: t.TempDir(), Relay: relay})
	require.NoError(t, err)
	ctx := context.Background()
	art := wire.Artifact{URI: wire.RelayScheme + digest}

	b, err := f.Resolve(ctx, art)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	require.Equal(t, wasm, b.Data, "a download comes with its bytes")
	require.Nil(t, b.Load)
	require.Equal(t, int64(1), relayHits.Load())

	path, err := f.Cache().Path(digest)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, flip(wasm), 0o600))

	b, err = f.Resolve(ctx, art)
	require.NoError(t, err)
	require.True(t, b.CacheHit)
	require.Equal(t, digest, b.Digest)
	require.Nil(t, b.Data, "a cache hit is not read")
	require.NotNil(t, b.Load)
	onDisk, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, flip(wasm), onDisk, "Resolve neither read nor dropped the corrupt copy")

	got, err := b.Bytes(ctx)
	require.NoError(t, err)
	require.Equal(t, wasm, got, "Load found the copy corrupt and fetched it again")
	require.Equal(t, int64(2), relayHits.Load())
	onDisk, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, wasm, onDisk, "the good copy replaced the corrupt one")

	// Corrupt again, with the source unreachable: Load fails and the
	// corrupt copy is gone, so it is never served.
	require.NoError(t, os.WriteFile(path, flip(wasm), 0o600))
	b, err = f.Resolve(ctx, art)
	require.NoError(t, err)
	relayDown.Store(true)
	_, err = b.Load(ctx)
	require.ErrorContains(t, err, "manager unreachable")
	require.ErrorContains(t, err, "gone or corrupt")
	require.False(t, f.Cache().Has(digest))

	// Fetch still hands back bytes, verified.
	relayDown.Store(false)
	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.Equal(t, wasm, b.Data)
	require.Nil(t, b.Load)
	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.True(t, b.CacheHit)
	require.Equal(t, wasm, b.Data)
}
