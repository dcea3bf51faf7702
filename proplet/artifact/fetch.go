// Package artifact fetches WebAssembly modules for a proplet: inline bytes,
// http(s)://, oci:// (a wasm OCI artifact, layer media type
// application/wasm) and relay://sha256:<hex> through the manager. Every blob
// is verified by sha256 before its bytes are returned and kept in a
// size-bounded content-addressed disk cache, so a module is downloaded once
// per device. Resolve can leave a cached blob unread (Blob.Load) for a
// caller that may need only its digest.
//
// An http(s) URI without a digest may change behind the same name, so it
// cannot be answered from the cache by digest alone. Instead the Fetcher
// follows HTTP caching (RFC 9111) as a private cache: it remembers each
// URI's validators (ETag, Last-Modified) and freshness, answers from the
// cache while the server said the response is fresh, and otherwise sends a
// conditional GET, which costs a round trip and no body when the module is
// unchanged (304). Concurrent fetches of one URI share one request.
package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/absmach/propeller/api/wire"
)

// Media types of the wasm OCI artifact layout.
const (
	MediaTypeWasm = "application/wasm"
	// MediaTypeWasmLegacy is the layer type older wasm-to-oci tools push.
	MediaTypeWasmLegacy = "application/vnd.wasm.content.layer.v1+wasm"
	// MediaTypeWasmConfig is the config type (and OCI 1.1 artifactType) of
	// a wasm artifact, as wasm-to-oci tools push it.
	MediaTypeWasmConfig = "application/vnd.wasm.config.v0+json"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBytes      = 64 << 20
	DefaultCacheMaxBytes = 512 << 20
	DefaultTimeout       = time.Minute
)

// Errors a caller may want to tell apart.
var (
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrTooLarge       = errors.New("artifact too large")
	ErrUnsupported    = errors.New("unsupported artifact source")
	ErrNoRelay        = errors.New("no artifact relay configured")
)

// Relay fetches a blob by digest through the manager, for proplets that can
// reach only the broker. The agent implements it over MQTT.
type Relay interface {
	Fetch(ctx context.Context, digest string) ([]byte, error)
}

// PlainHTTP says when oci:// may talk to a registry without TLS.
type PlainHTTP int

const (
	// PlainHTTPNever always uses TLS.
	PlainHTTPNever PlainHTTP = iota
	// PlainHTTPLoopback allows plain HTTP to localhost and loopback IPs
	// only: a registry on the device itself or a test server.
	PlainHTTPLoopback
	// PlainHTTPAlways never uses TLS (trusted networks only).
	PlainHTTPAlways
)

// Config is fixed for the life of a Fetcher.
type Config struct {
	// CacheDir holds the blob cache; empty disables it.
	CacheDir string
	// CacheMaxBytes bounds the cache.
	CacheMaxBytes int64
	// MaxBytes bounds one artifact; bigger ones fail with ErrTooLarge
	// before they are read in full.
	MaxBytes int64
	// Timeout bounds one network fetch.
	Timeout time.Duration
	// HTTPClient is used for http(s):// and oci://; nil uses a client
	// with default transport.
	HTTPClient *http.Client
	// OCIPlainHTTP selects registries reached without TLS.
	OCIPlainHTTP PlainHTTP
	// OCICredential resolves registry credentials; nil is anonymous.
	OCICredential auth.CredentialFunc
	// Relay serves relay:// URIs; nil makes them fail with ErrNoRelay.
	Relay Relay
	// HTTPIndexEntries bounds how many http(s) URIs validators are kept
	// for (see DefaultHTTPIndexEntries). They are kept only with a cache.
	HTTPIndexEntries int
	// Now is the clock HTTP freshness (max-age, Expires) is judged by; nil
	// is time.Now. Tests step it past max-age instead of sleeping.
	Now func() time.Time
}

// Fetcher resolves wire.Artifacts to verified bytes. It is safe for
// concurrent use.
type Fetcher struct {
	cfg   Config
	cache *Cache
	http  *http.Client
	// index remembers validators and freshness per http(s) URI; nil
	// without a cache, since a 304 is no use without the bytes.
	index   *httpIndex
	flights flightGroup
}

// Blob is a fetched, verified module.
type Blob struct {
	Digest string
	Data   []byte
	// Source is the scheme it came from: inline, http, oci, relay.
	Source string
	// CacheHit is true when the bytes came from the local cache rather
	// than being downloaded: either no network access was needed or, with
	// Revalidated, the server answered a conditional GET with 304.
	CacheHit bool
	// Revalidated is true when an http(s) server confirmed the cached
	// copy is current (304 Not Modified): one round trip, no body.
	Revalidated bool
	// Load, set only on a cache hit returned by Resolve (Data is nil
	// then), reads the blob from the cache on demand, verified against
	// Digest. A caller that may not need the bytes at all (the runtime,
	// when the module is already compiled) so skips reading and hashing
	// a file of megabytes per task. A cached copy found corrupt or gone
	// by then is dropped and fetched again, pinned to Digest.
	Load func(ctx context.Context) ([]byte, error)
}

// Bytes returns the blob's bytes, loading them if the blob is lazy.
func (b Blob) Bytes(ctx context.Context) ([]byte, error) {
	if b.Data != nil || b.Load == nil {
		return b.Data, nil
	}
	return b.Load(ctx)
}

// New creates a Fetcher and opens its cache.
func New(cfg Config) (*Fetcher, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.CacheMaxBytes <= 0 {
		cfg.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HTTPIndexEntries <= 0 {
		cfg.HTTPIndexEntries = DefaultHTTPIndexEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Fetcher{cfg: cfg, http: cfg.HTTPClient}
	if f.http == nil {
		f.http = &http.Client{}
	}
	if cfg.CacheDir != "" {
		c, err := OpenCache(cfg.CacheDir, cfg.CacheMaxBytes)
		if err != nil {
			return nil, err
		}
		f.cache = c
		f.index = newHTTPIndex(cfg.HTTPIndexEntries)
	}
	return f, nil
}

// Cache returns the blob cache, nil when disabled.
func (f *Fetcher) Cache() *Cache { return f.cache }

// Fetch returns the module bytes an artifact names. When a.Digest is set
// the result always hashes to it (a mismatch is an error wrapping
// ErrDigestMismatch) and a cached copy is used without any network access.
// Without a digest an http(s) URI is revalidated as HTTP caching allows
// (see the package comment); oci:// resolves its tag on every call.
func (f *Fetcher) Fetch(ctx context.Context, a wire.Artifact) (Blob, error) {
	for range 3 {
		b, err := f.Resolve(ctx, a)
		if err != nil || b.Load == nil {
			return b, err
		}
		if data, ok := f.cache.Get(b.Digest); ok {
			b.Data, b.Load = data, nil
			return b, nil
		}
		// Evicted, or found corrupt and dropped, since Resolve saw it:
		// resolving again goes to the network, as for any cache miss.
		// (Not b.Load: that pins the digest, and nothing here has
		// committed to it yet.)
	}
	return Blob{}, fmt.Errorf("artifact %s: its cached copy kept disappearing", a.URI)
}

// Resolve is Fetch without reading a cached blob: it does everything
// Fetch does to learn which blob the artifact names (digest checks, HTTP
// revalidation, resolving an OCI tag), but when that blob is in the cache
// it returns it with Data nil and Load set instead of reading and
// re-hashing the file. Inline and downloaded blobs come with Data as from
// Fetch. The digest of a lazy blob is always the cache key it was found
// under, so a runtime keyed by digest can run it without the bytes.
func (f *Fetcher) Resolve(ctx context.Context, a wire.Artifact) (Blob, error) {
	want := a.Digest
	if want != "" {
		if _, err := parseDigest(want); err != nil {
			return Blob{}, err
		}
	}
	switch {
	case a.URI != "" && len(a.Inline) > 0:
		return Blob{}, errors.New("artifact has both uri and inline bytes")
	case a.URI == "" && len(a.Inline) == 0:
		return Blob{}, errors.New("artifact has neither uri nor inline bytes")
	case len(a.Inline) > 0:
		if int64(len(a.Inline)) > f.cfg.MaxBytes {
			return Blob{}, fmt.Errorf("%w: inline module is %d bytes, limit %d", ErrTooLarge, len(a.Inline), f.cfg.MaxBytes)
		}
		return f.accept(a.Inline, want, "inline", "inline")
	}

	scheme, rest, ok := strings.Cut(a.URI, "://")
	if !ok {
		return Blob{}, fmt.Errorf("%w: %q has no scheme", ErrUnsupported, a.URI)
	}
	source := scheme
	if scheme == "https" {
		source = "http"
	}
	if scheme == "relay" {
		// The URI itself names the content.
		if _, err := parseDigest(rest); err != nil {
			return Blob{}, fmt.Errorf("relay uri: %w", err)
		}
		if want != "" && want != rest {
			return Blob{}, fmt.Errorf("%w: relay uri names %s, task says %s", ErrDigestMismatch, rest, want)
		}
		want = rest
	}
	if want != "" {
		if b, ok := f.cached(a.URI, want, source); ok {
			return b, nil
		}
	}

	if scheme == "http" || scheme == "https" {
		return f.fetchHTTPArtifact(ctx, a.URI, want, source)
	}

	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	switch scheme {
	case "oci":
		return f.fetchOCI(ctx, rest, want)
	case "relay":
		if f.cfg.Relay == nil {
			return Blob{}, ErrNoRelay
		}
		data, err := f.cfg.Relay.Fetch(ctx, want)
		if err != nil {
			return Blob{}, fmt.Errorf("relay %s: %w", want, err)
		}
		return f.accept(data, want, a.URI, source)
	default:
		return Blob{}, fmt.Errorf("%w: scheme %q", ErrUnsupported, scheme)
	}
}

// cached returns a lazy Blob (see Blob.Load) when digest is in the cache,
// without touching the file: it is read and verified only if loaded. uri
// is where the blob came from, so a copy found corrupt at load time can
// be fetched again.
func (f *Fetcher) cached(uri, digest, source string) (Blob, bool) {
	if f.cache == nil || !f.cache.Has(digest) {
		return Blob{}, false
	}
	return Blob{Digest: digest, Source: source, CacheHit: true, Load: f.loader(uri, digest)}, true
}

// loader reads digest from the cache (Cache.Get verifies it, and drops a
// corrupt copy) and, when that fails, fetches uri again with digest
// pinned: whoever holds the lazy Blob has already committed to that
// digest (the runtime keys its compiled modules by it), so different
// bytes now behind uri fail with ErrDigestMismatch rather than run.
func (f *Fetcher) loader(uri, digest string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		if data, ok := f.cache.Get(digest); ok {
			return data, nil
		}
		b, err := f.Fetch(ctx, wire.Artifact{URI: uri, Digest: digest})
		if err != nil {
			return nil, fmt.Errorf("cached %s is gone or corrupt, fetching it again: %w", digest, err)
		}
		return b.Data, nil
	}
}

// accept verifies data against want (when set) and caches it.
func (f *Fetcher) accept(data []byte, want, from, source string) (Blob, error) {
	got := Digest(data)
	if want != "" && got != want {
		return Blob{}, fmt.Errorf("%w: %s has %s, expected %s", ErrDigestMismatch, from, got, want)
	}
	if f.cache != nil {
		// A full disk must not fail a task whose bytes we already hold.
		_, _ = f.cache.Put(data)
	}
	return Blob{Digest: got, Data: data, Source: source}, nil
}

// fetchHTTPArtifact fetches an http(s) artifact the cache could not answer
// by digest. Without a digest, an entry the server declared fresh is used
// with no network access; otherwise the request shares a flight with any
// concurrent fetch of the same URI (and digest).
func (f *Fetcher) fetchHTTPArtifact(ctx context.Context, uri, want, source string) (Blob, error) {
	if want == "" && f.index != nil {
		if e, ok := f.index.get(uri); ok && f.cfg.Now().Before(e.freshUntil) {
			if b, ok := f.cached(uri, e.digest, source); ok {
				return b, nil
			}
		}
	}
	key := uri
	if want != "" {
		key = uri + " " + want
	}
	return f.flights.do(ctx, key, func(ctx context.Context) (Blob, error) {
		ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
		defer cancel()
		return f.revalidateHTTP(ctx, uri, want, source)
	})
}

// revalidateHTTP does the network part of an http(s) fetch: a conditional
// GET when the URI's last response left validators and its blob is still
// cached (never with a task digest: the task, not the server, says which
// bytes are right, so a digest miss always downloads), else a plain GET.
func (f *Fetcher) revalidateHTTP(ctx context.Context, uri, want, source string) (Blob, error) {
	var (
		e     httpEntry
		known bool
		cond  http.Header
	)
	if want == "" && f.index != nil {
		e, known = f.index.get(uri)
		// A flight that finished just before this one may have refreshed it.
		if known && f.cfg.Now().Before(e.freshUntil) {
			if b, ok := f.cached(uri, e.digest, source); ok {
				return b, nil
			}
		}
		if known && f.cache.Has(e.digest) {
			cond = conditional(e.hdr)
		}
	}
	sent := f.cfg.Now()
	resp, data, err := f.getHTTP(ctx, uri, cond)
	if err != nil {
		return Blob{}, err
	}
	if resp.StatusCode == http.StatusNotModified {
		if b, ok := f.cached(uri, e.digest, source); ok {
			f.remember(uri, e.digest, mergeHeaders(e.hdr, resp.Header), resp.Header, sent)
			b.Revalidated = true
			return b, nil
		}
		// The blob was evicted (or dropped as corrupt) after the request
		// went out: the 304 is of no use, ask for the body. A copy that is
		// corrupt but still indexed is found when loaded (see loader).
		sent = f.cfg.Now()
		if resp, data, err = f.getHTTP(ctx, uri, nil); err != nil {
			return Blob{}, err
		}
	}
	b, err := f.accept(data, want, uri, source)
	if err != nil {
		return Blob{}, err
	}
	f.remember(uri, b.Digest, cachingHeaders(resp.Header), resp.Header, sent)
	return b, nil
}

// remember records what the server said about uri's current response.
// Nothing is kept when the response says no-store, or when it has neither
// validators nor freshness (every fetch downloads anyway).
func (f *Fetcher) remember(uri, digest string, hdr, resp http.Header, sent time.Time) {
	if f.index == nil {
		return
	}
	fresh := freshUntil(hdr, resp, sent)
	if noStore(hdr) || (fresh.IsZero() && conditional(hdr) == nil) {
		f.index.remove(uri)
		return
	}
	f.index.put(httpEntry{uri: uri, digest: digest, hdr: hdr, freshUntil: fresh})
}

// getHTTP sends a GET with the extra (conditional) headers cond. It
// returns the response (body closed) and, on 200, the body; a 304 is
// accepted only when cond was sent.
func (f *Fetcher) getHTTP(ctx context.Context, uri string, cond http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("http artifact: %w", err)
	}
	for k, v := range cond {
		req.Header[k] = v
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("http artifact: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && cond != nil {
		return resp, nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("http artifact %s: status %s", uri, resp.Status)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, uri, resp.ContentLength, f.cfg.MaxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("http artifact %s: %w", uri, err)
	}
	if int64(len(data)) > f.cfg.MaxBytes {
		return nil, nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, uri, f.cfg.MaxBytes)
	}
	return resp, data, nil
}

// fetchOCI pulls the manifest ref names, picks its wasm layer and pulls
// that, verified against the layer descriptor. A tag is resolved on every
// call (tags move), but a layer already cached is not downloaded again.
func (f *Fetcher) fetchOCI(ctx context.Context, ref, want string) (Blob, error) {
	repo, err := f.repository(ref)
	if err != nil {
		return Blob{}, err
	}
	reference := repo.Reference.Reference
	if reference == "" {
		reference = "latest"
	}
	mdesc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return Blob{}, fmt.Errorf("oci %s: resolve: %w", ref, err)
	}
	raw, err := content.ReadAll(rc, mdesc)
	rc.Close()
	if err != nil {
		return Blob{}, fmt.Errorf("oci %s: manifest: %w", ref, err)
	}
	layer, err := wasmLayer(mdesc, raw)
	if err != nil {
		return Blob{}, fmt.Errorf("oci %s: %w", ref, err)
	}
	if want != "" && layer.Digest.String() != want {
		return Blob{}, fmt.Errorf("%w: oci %s holds %s, expected %s", ErrDigestMismatch, ref, layer.Digest, want)
	}
	if b, ok := f.cached("oci://"+ref, layer.Digest.String(), "oci"); ok {
		return b, nil
	}
	if layer.Size > f.cfg.MaxBytes {
		return Blob{}, fmt.Errorf("%w: oci %s layer is %d bytes, limit %d", ErrTooLarge, ref, layer.Size, f.cfg.MaxBytes)
	}
	// content.FetchAll checks size and digest against the descriptor.
	data, err := content.FetchAll(ctx, repo, layer)
	if err != nil {
		return Blob{}, fmt.Errorf("oci %s: layer %s: %w", ref, layer.Digest, err)
	}
	return f.accept(data, layer.Digest.String(), "oci://"+ref, "oci")
}

func wasmLayer(desc ocispec.Descriptor, raw []byte) (ocispec.Descriptor, error) {
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json":
	default:
		return ocispec.Descriptor{}, fmt.Errorf("manifest media type %q is not an image manifest", desc.MediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest: %w", err)
	}
	var found []ocispec.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == MediaTypeWasm || l.MediaType == MediaTypeWasmLegacy {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("no layer of media type %s", MediaTypeWasm)
	case 1:
		return found[0], nil
	default:
		return ocispec.Descriptor{}, fmt.Errorf("%d wasm layers, expected one", len(found))
	}
}

func (f *Fetcher) repository(ref string) (*remote.Repository, error) {
	return newRepository(ref, f.http, f.cfg.OCIPlainHTTP, f.cfg.OCICredential)
}

func newRepository(ref string, hc *http.Client, plain PlainHTTP, cred auth.CredentialFunc) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, fmt.Errorf("oci reference %q: %w", ref, err)
	}
	switch plain {
	case PlainHTTPAlways:
		repo.PlainHTTP = true
	case PlainHTTPLoopback:
		repo.PlainHTTP = isLoopback(repo.Reference.Registry)
	}
	repo.Client = &auth.Client{Client: hc, Credential: cred, Cache: auth.NewCache()}
	return repo, nil
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
