package artifact_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/artifact"
)

// exchange is one request an origin server saw.
type exchange struct {
	ifNoneMatch, ifModifiedSince string
	status                       int
	bodyBytes                    int64
}

// recorder logs every exchange of the handler it wraps, including body
// bytes written, so tests can tell a 304 from a download. An exchange is
// updated before each write reaches the connection, so the log is complete
// by the time the client has the response.
type recorder struct {
	mu  sync.Mutex
	log []*exchange
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

func (r *recorder) last() exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.log[len(r.log)-1]
}

func (r *recorder) since(i int) []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []exchange
	for _, e := range r.log[i:] {
		out = append(out, *e)
	}
	return out
}

func (r *recorder) bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, e := range r.log {
		n += e.bodyBytes
	}
	return n
}

type countingWriter struct {
	http.ResponseWriter
	rec *recorder
	ex  *exchange
}

func (w *countingWriter) WriteHeader(code int) {
	w.rec.mu.Lock()
	if w.ex.status == 0 {
		w.ex.status = code
	}
	w.rec.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.rec.mu.Lock()
	if w.ex.status == 0 {
		w.ex.status = http.StatusOK
	}
	w.ex.bodyBytes += int64(len(p))
	w.rec.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func serve(tb testing.TB, h http.Handler) (*recorder, string) {
	tb.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &exchange{ifNoneMatch: r.Header.Get("If-None-Match"), ifModifiedSince: r.Header.Get("If-Modified-Since")}
		rec.mu.Lock()
		rec.log = append(rec.log, ex)
		rec.mu.Unlock()
		h.ServeHTTP(&countingWriter{ResponseWriter: w, rec: rec, ex: ex}, r)
	}))
	tb.Cleanup(srv.Close)
	return rec, srv.URL
}

// module is what an origin serves; its fields can change between fetches.
type module struct {
	mu           sync.Mutex
	body         []byte
	etag         string
	modTime      time.Time // zero: no Last-Modified
	cacheControl string
	expiresIn    time.Duration // non-zero: Expires = now + expiresIn
	age          string
}

func (m *module) set(body []byte, etag string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.body, m.etag = body, etag
}

// ServeHTTP answers as a real origin would: http.ServeContent evaluates
// If-None-Match against the ETag and If-Modified-Since against modTime.
func (m *module) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	body, etag, mod, cc, exp, age := m.body, m.etag, m.modTime, m.cacheControl, m.expiresIn, m.age
	m.mu.Unlock()
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	if exp != 0 {
		now := time.Now()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", now.Add(exp).UTC().Format(http.TimeFormat))
	}
	if age != "" {
		w.Header().Set("Age", age)
	}
	http.ServeContent(w, r, "", mod, bytes.NewReader(body))
}

func randomModule(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// clock is a settable Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

func newFetcher(t testing.TB, cfg artifact.Config) *artifact.Fetcher {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	f, err := artifact.New(cfg)
	require.NoError(t, err)
	return f
}

// TestHTTPRevalidateETag: the second fetch of an unchanged module is a
// conditional GET answered 304 with no body; a changed one is downloaded
// and its new digest returned.
func TestHTTPRevalidateETag(t *testing.T) {
	v1, v2 := randomModule(1, 4096), randomModule(2, 4096)
	modTime := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := &module{body: v1, etag: `"v1"`, modTime: modTime}
	rec, url := serve(t, m)
	f := newFetcher(t, artifact.Config{})
	ctx := context.Background()
	art := wire.Artifact{URI: url + "/m.wasm"}

	b, err := f.Fetch(ctx, art)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	require.Equal(t, artifact.Digest(v1), b.Digest)
	require.Equal(t, exchange{status: 200, bodyBytes: 4096}, rec.last())

	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.True(t, b.CacheHit)
	require.True(t, b.Revalidated)
	require.Equal(t, v1, b.Data)
	require.Equal(t, artifact.Digest(v1), b.Digest)
	require.Equal(t, "http", b.Source)
	require.Equal(t, 2, rec.n())
	require.Equal(t, exchange{ifNoneMatch: `"v1"`, ifModifiedSince: modTime.Format(http.TimeFormat), status: 304}, rec.last())

	m.set(v2, `"v2"`)
	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	require.False(t, b.Revalidated)
	require.Equal(t, artifact.Digest(v2), b.Digest)
	require.Equal(t, v2, b.Data)
	require.Equal(t, 200, rec.last().status)
	require.Equal(t, `"v1"`, rec.last().ifNoneMatch)

	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.True(t, b.Revalidated)
	require.Equal(t, artifact.Digest(v2), b.Digest)
	require.Equal(t, exchange{ifNoneMatch: `"v2"`, ifModifiedSince: modTime.Format(http.TimeFormat), status: 304}, rec.last())

	// A task digest is still authoritative: the cached copy is used with
	// no request, and a digest the server does not serve is an error.
	b, err = f.Fetch(ctx, wire.Artifact{URI: art.URI, Digest: artifact.Digest(v2)})
	require.NoError(t, err)
	require.True(t, b.CacheHit)
	require.Equal(t, 4, rec.n())
	_, err = f.Fetch(ctx, wire.Artifact{URI: art.URI, Digest: artifact.Digest(randomModule(3, 10))})
	require.ErrorIs(t, err, artifact.ErrDigestMismatch)
	require.Equal(t, exchange{status: 200, bodyBytes: 4096}, rec.last(), "a digest miss downloads unconditionally")
}

// TestHTTPRevalidateFileServer: a plain static file server sends only
// Last-Modified; that is enough to revalidate.
func TestHTTPRevalidateFileServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.wasm")
	v1, v2 := randomModule(1, 3000), randomModule(2, 3000)
	require.NoError(t, os.WriteFile(path, v1, 0o600))
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(path, mtime, mtime))
	rec, url := serve(t, http.FileServer(http.Dir(dir)))
	f := newFetcher(t, artifact.Config{})
	ctx := context.Background()
	art := wire.Artifact{URI: url + "/m.wasm"}

	b, err := f.Fetch(ctx, art)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.True(t, b.Revalidated)
	require.Equal(t, v1, b.Data)
	require.Equal(t, exchange{ifModifiedSince: mtime.UTC().Format(http.TimeFormat), status: 304}, rec.last())

	require.NoError(t, os.WriteFile(path, v2, 0o600))
	later := mtime.Add(30 * time.Minute)
	require.NoError(t, os.Chtimes(path, later, later))
	b, err = f.Fetch(ctx, art)
	require.NoError(t, err)
	require.False(t, b.CacheHit)
	require.Equal(t, artifact.Digest(v2), b.Digest)
	require.Equal(t, exchange{ifModifiedSince: mtime.UTC().Format(http.TimeFormat), status: 200, bodyBytes: 3000}, rec.last())
	require.Equal(t, int64(6000), rec.bytes())
}

// TestHTTPFreshness steps a fake clock through each response's freshness
// lifetime: a fresh entry costs no request at all, a stale one a
// conditional GET, and the 304 renews the lifetime.
func TestHTTPFreshness(t *testing.T) {
	body := randomModule(1, 2048)
	type step struct {
		at       time.Duration // since the first fetch
		requests int           // total after this fetch
		status   int           // of the last request, if one was made now
	}
	cases := []struct {
		name  string
		m     *module
		steps []step
	}{
		{
			name: "max-age=60",
			m:    &module{etag: `"a"`, cacheControl: "public, max-age=60"},
			steps: []step{
				{at: 59 * time.Second, requests: 1},
				{at: 61 * time.Second, requests: 2, status: 304},
				{at: 61*time.Second + 59*time.Second, requests: 2},
				{at: 61*time.Second + 61*time.Second, requests: 3, status: 304},
			},
		},
		{
			name:  "no-cache beats max-age",
			m:     &module{etag: `"a"`, cacheControl: "no-cache, max-age=60"},
			steps: []step{{at: 0, requests: 2, status: 304}, {at: time.Second, requests: 3, status: 304}},
		},
		{
			name:  "max-age=0 must-revalidate",
			m:     &module{etag: `"a"`, cacheControl: "max-age=0, must-revalidate"},
			steps: []step{{at: 0, requests: 2, status: 304}, {at: time.Second, requests: 3, status: 304}},
		},
		{
			name:  "no-store is not remembered",
			m:     &module{etag: `"a"`, cacheControl: "no-store"},
			steps: []step{{at: 0, requests: 2, status: 200}, {at: time.Hour, requests: 3, status: 200}},
		},
		{
			name:  "age already spent",
			m:     &module{etag: `"a"`, cacheControl: "max-age=60", age: "50"},
			steps: []step{{at: 9 * time.Second, requests: 1}, {at: 11 * time.Second, requests: 2, status: 304}},
		},
		{
			// Expires-Date is the server's own clock, so the device's
			// clock being years off does not matter.
			name:  "expires",
			m:     &module{etag: `"a"`, expiresIn: time.Minute},
			steps: []step{{at: 58 * time.Second, requests: 1}, {at: 61 * time.Second, requests: 2, status: 304}},
		},
		{
			name:  "max-age without validators",
			m:     &module{cacheControl: "max-age=60"},
			steps: []step{{at: 30 * time.Second, requests: 1}, {at: 61 * time.Second, requests: 2, status: 200}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			m.body = body
			rec, url := serve(t, m)
			clk := newClock()
			start := clk.Now()
			f := newFetcher(t, artifact.Config{Now: clk.Now})
			art := wire.Artifact{URI: url + "/m.wasm"}
			ctx := context.Background()
			b, err := f.Fetch(ctx, art)
			require.NoError(t, err)
			require.False(t, b.CacheHit)
			for _, s := range tc.steps {
				clk.set(start.Add(s.at))
				b, err := f.Fetch(ctx, art)
				require.NoError(t, err, s.at)
				require.Equal(t, body, b.Data)
				require.Equal(t, s.requests, rec.n(), "requests after fetch at +%s", s.at)
				if s.status == 0 {
					require.True(t, b.CacheHit, s.at)
					require.False(t, b.Revalidated, s.at)
					continue
				}
				require.Equal(t, s.status, rec.last().status, s.at)
				require.Equal(t, s.status == 304, b.CacheHit, s.at)
				require.Equal(t, s.status == 304, b.Revalidated, s.at)
			}
		})
	}
}

// TestHTTPRevalidateLostBlob: validators are useless once the blob is gone
// from the cache. Evicted: the fetcher asks unconditionally. Corrupted on
// disk (noticed only after the 304): it asks again for the body.
func TestHTTPRevalidateLostBlob(t *testing.T) {
	a, b := randomModule(1, 1000), randomModule(2, 1000)
	ma, mb := &module{body: a, etag: `"a"`}, &module{body: b, etag: `"b"`}
	mux := http.NewServeMux()
	mux.Handle("/a.wasm", ma)
	mux.Handle("/b.wasm", mb)
	rec, url := serve(t, mux)
	ctx := context.Background()

	t.Run("evicted", func(t *testing.T) {
		f := newFetcher(t, artifact.Config{CacheMaxBytes: 1500})
		start := rec.n()
		_, err := f.Fetch(ctx, wire.Artifact{URI: url + "/a.wasm"})
		require.NoError(t, err)
		_, err = f.Fetch(ctx, wire.Artifact{URI: url + "/b.wasm"}) // evicts a
		require.NoError(t, err)
		require.False(t, f.Cache().Has(artifact.Digest(a)))
		got, err := f.Fetch(ctx, wire.Artifact{URI: url + "/a.wasm"})
		require.NoError(t, err)
		require.False(t, got.CacheHit)
		require.Equal(t, a, got.Data)
		require.Equal(t, []exchange{
			{status: 200, bodyBytes: 1000},
			{status: 200, bodyBytes: 1000},
			{status: 200, bodyBytes: 1000},
		}, rec.since(start))
	})

	t.Run("corrupt after 304", func(t *testing.T) {
		f := newFetcher(t, artifact.Config{})
		start := rec.n()
		_, err := f.Fetch(ctx, wire.Artifact{URI: url + "/a.wasm"})
		require.NoError(t, err)
		path, err := f.Cache().Path(artifact.Digest(a))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, flip(a), 0o600))
		got, err := f.Fetch(ctx, wire.Artifact{URI: url + "/a.wasm"})
		require.NoError(t, err)
		require.False(t, got.CacheHit)
		require.Equal(t, a, got.Data)
		require.Equal(t, []exchange{
			{status: 200, bodyBytes: 1000},
			{ifNoneMatch: `"a"`, status: 304},
			{status: 200, bodyBytes: 1000},
		}, rec.since(start))
		got, err = f.Fetch(ctx, wire.Artifact{URI: url + "/a.wasm"})
		require.NoError(t, err)
		require.True(t, got.Revalidated)
	})
}

// TestHTTPRevalidateIndexBounded: the URI index keeps at most
// HTTPIndexEntries; a forgotten URI is simply downloaded again.
func TestHTTPRevalidateIndexBounded(t *testing.T) {
	rec, url := serve(t, &module{body: randomModule(1, 100), etag: `"x"`})
	f := newFetcher(t, artifact.Config{HTTPIndexEntries: 2})
	ctx := context.Background()
	for _, p := range []string{"/1", "/2", "/3", "/1"} {
		_, err := f.Fetch(ctx, wire.Artifact{URI: url + p})
		require.NoError(t, err)
	}
	require.Equal(t, 2, f.HTTPIndexLen())
	require.Equal(t, exchange{status: 200, bodyBytes: 100}, rec.last(), "/1 was evicted by /3")
	_, err := f.Fetch(ctx, wire.Artifact{URI: url + "/3"})
	require.NoError(t, err)
	require.Equal(t, 304, rec.last().status)
}

// gate is a handler whose requests wait until released; it reports each
// arrival and each request whose client went away.
type gate struct {
	body      []byte
	arrived   chan struct{}
	release   chan struct{}
	abandoned chan struct{}
}

func newGate(body []byte) *gate {
	return &gate{body: body, arrived: make(chan struct{}, 16), release: make(chan struct{}), abandoned: make(chan struct{}, 16)}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
		w.Header().Set("ETag", `"g"`)
		_, _ = w.Write(g.body)
	case <-r.Context().Done():
		g.abandoned <- struct{}{}
	}
}

// TestHTTPSharedDownload: concurrent fetches of one URI make one request,
// each caller gets its own copy of the bytes, and a caller giving up does
// not fail the others; the request is cancelled when all have given up.
func TestHTTPSharedDownload(t *testing.T) {
	body := randomModule(1, 64<<10)

	t.Run("one download", func(t *testing.T) {
		g := newGate(body)
		rec, url := serve(t, g)
		f := newFetcher(t, artifact.Config{})
		const callers = 8
		var joined sync.WaitGroup
		joined.Add(callers - 1)
		f.OnFlightJoin(func(string) { joined.Done() })
		blobs := make([]artifact.Blob, callers)
		errs := make([]error, callers)
		var done sync.WaitGroup
		for i := range callers {
			done.Go(func() { blobs[i], errs[i] = f.Fetch(context.Background(), wire.Artifact{URI: url + "/m.wasm"}) })
		}
		<-g.arrived
		joined.Wait()
		close(g.release)
		done.Wait()
		require.Equal(t, 1, rec.n())
		for i := range callers {
			require.NoError(t, errs[i])
			require.Equal(t, body, blobs[i].Data)
			require.Equal(t, artifact.Digest(body), blobs[i].Digest)
		}
		blobs[0].Data[0] ^= 0xff
		require.Equal(t, body, blobs[1].Data, "callers do not share one slice")
	})

	t.Run("first caller gives up", func(t *testing.T) {
		g := newGate(body)
		rec, url := serve(t, g)
		f := newFetcher(t, artifact.Config{})
		joined := make(chan struct{}, 1)
		f.OnFlightJoin(func(string) { joined <- struct{}{} })
		art := wire.Artifact{URI: url + "/m.wasm"}
		first, cancel := context.WithCancel(context.Background())
		firstErr := make(chan error, 1)
		go func() { _, err := f.Fetch(first, art); firstErr <- err }()
		<-g.arrived
		type result struct {
			b   artifact.Blob
			err error
		}
		second := make(chan result, 1)
		go func() {
			b, err := f.Fetch(context.Background(), art)
			second <- result{b, err}
		}()
		<-joined
		cancel()
		require.ErrorIs(t, <-firstErr, context.Canceled)
		close(g.release)
		r := <-second
		require.NoError(t, r.err)
		require.Equal(t, body, r.b.Data)
		require.Equal(t, 1, rec.n())
	})

	t.Run("all callers give up", func(t *testing.T) {
		g := newGate(body)
		_, url := serve(t, g)
		f := newFetcher(t, artifact.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := f.Fetch(ctx, wire.Artifact{URI: url + "/m.wasm"}); errc <- err }()
		<-g.arrived
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
		<-g.abandoned // the download itself was cancelled
		close(g.release)
		// A new fetch starts a new download rather than joining the dead one.
		b, err := f.Fetch(context.Background(), wire.Artifact{URI: url + "/m.wasm"})
		require.NoError(t, err)
		require.Equal(t, body, b.Data)
	})
}

// TestHTTPResolveLazy: revalidated (304) and fresh http hits come back
// from Resolve unread. A lazy blob is pinned to its digest: found corrupt
// after the origin changed, Load refuses the new bytes, while Fetch,
// which has committed to nothing, takes them.
func TestHTTPResolveLazy(t *testing.T) {
	v1, v2 := randomModule(1, 4096), randomModule(2, 4096)
	for _, cc := range []string{"no-cache", "max-age=3600"} {
		t.Run(cc, func(t *testing.T) {
			m := &module{body: v1, etag: `"v1"`, cacheControl: cc}
			rec, url := serve(t, m)
			f := newFetcher(t, artifact.Config{})
			ctx := context.Background()
			art := wire.Artifact{URI: url + "/m.wasm"}
			_, err := f.Fetch(ctx, art)
			require.NoError(t, err)

			b, err := f.Resolve(ctx, art)
			require.NoError(t, err)
			require.True(t, b.CacheHit)
			require.Equal(t, cc == "no-cache", b.Revalidated)
			require.Nil(t, b.Data)
			require.Equal(t, artifact.Digest(v1), b.Digest)
			got, err := b.Bytes(ctx)
			require.NoError(t, err)
			require.Equal(t, v1, got)

			b, err = f.Resolve(ctx, art)
			require.NoError(t, err)
			path, err := f.Cache().Path(b.Digest)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, v2, 0o600))
			m.set(v2, `"v2"`)
			n := rec.n()
			_, err = b.Load(ctx)
			require.ErrorIs(t, err, artifact.ErrDigestMismatch)
			require.Equal(t, n+1, rec.n(), "one download, refused")

			b, err = f.Fetch(ctx, art)
			require.NoError(t, err)
			require.Equal(t, v2, b.Data)
		})
	}
}
