package artifact

import (
	"bytes"
	"container/list"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultHTTPIndexEntries bounds how many http(s) URIs a Fetcher remembers
// validators for. An entry is a few hundred bytes; a proplet rarely runs
// more than a handful of distinct modules, so this only caps a pathological
// workload (a fresh URI per task) at about a megabyte.
const DefaultHTTPIndexEntries = 4096

// storedHeaders are the response headers kept per URI: the validators
// (ETag, Last-Modified) for conditional requests and the freshness
// directives. A 304 replaces those it carries and leaves the others as the
// 200 set them (RFC 9111 section 4.3.4).
var storedHeaders = []string{"Etag", "Last-Modified", "Cache-Control", "Expires", "Pragma"}

// httpEntry is what a Fetcher remembers about one http(s) URI after a 200:
// which blob it served and what the server said about reusing it. The
// bytes themselves live in the content-addressed Cache under digest.
type httpEntry struct {
	uri    string
	digest string
	// hdr holds storedHeaders of the response; never modified in place.
	hdr http.Header
	// freshUntil is when the entry stops being usable without asking the
	// server. The zero time means "stale now": revalidate before each use.
	freshUntil time.Time
}

// httpIndex maps URI -> httpEntry, least-recently-used eviction beyond max
// entries. It is in memory only: after a restart the first fetch of each
// URI downloads again, which costs one transfer per URI per restart.
type httpIndex struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *httpEntry, most recently used first
	items map[string]*list.Element
}

func newHTTPIndex(max int) *httpIndex {
	return &httpIndex{max: max, lru: list.New(), items: map[string]*list.Element{}}
}

func (x *httpIndex) get(uri string) (httpEntry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.items[uri]
	if !ok {
		return httpEntry{}, false
	}
	x.lru.MoveToFront(el)
	return *el.Value.(*httpEntry), true
}

func (x *httpIndex) put(e httpEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if el, ok := x.items[e.uri]; ok {
		*el.Value.(*httpEntry) = e
		x.lru.MoveToFront(el)
		return
	}
	x.items[e.uri] = x.lru.PushFront(&e)
	for x.lru.Len() > x.max {
		el := x.lru.Back()
		x.lru.Remove(el)
		delete(x.items, el.Value.(*httpEntry).uri)
	}
}

func (x *httpIndex) remove(uri string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if el, ok := x.items[uri]; ok {
		x.lru.Remove(el)
		delete(x.items, uri)
	}
}

func (x *httpIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lru.Len()
}

// cachingHeaders copies storedHeaders out of a response header.
func cachingHeaders(h http.Header) http.Header {
	return mergeHeaders(http.Header{}, h)
}

// mergeHeaders returns old updated with the storedHeaders upd carries.
func mergeHeaders(old, upd http.Header) http.Header {
	out := old.Clone()
	for _, k := range storedHeaders {
		if v := upd.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// conditional returns the request headers that ask the server to answer
// 304 if the stored response is still current. If-None-Match is sent as
// stored (weak comparison is what RFC 9110 prescribes for it); a server
// that honours both uses If-None-Match and ignores If-Modified-Since.
func conditional(hdr http.Header) http.Header {
	h := http.Header{}
	if v := hdr.Get("Etag"); v != "" {
		h.Set("If-None-Match", v)
	}
	if v := hdr.Get("Last-Modified"); v != "" {
		h.Set("If-Modified-Since", v)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

// cacheDirectives parses Cache-Control into lower-case directive -> value
// ("" for a directive without argument).
func cacheDirectives(values []string) map[string]string {
	d := map[string]string{}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name == "" {
				continue
			}
			d[strings.ToLower(strings.TrimSpace(name))] = strings.Trim(strings.TrimSpace(arg), `"`)
		}
	}
	return d
}

// noStore reports whether the response forbids remembering it at all.
func noStore(hdr http.Header) bool {
	_, ok := cacheDirectives(hdr.Values("Cache-Control"))["no-store"]
	return ok
}

// maxDeltaSeconds caps max-age and Age as RFC 9111 section 1.2.2 allows.
const maxDeltaSeconds = 1 << 31

// freshUntil computes until when a response may be reused without asking
// the server (RFC 9111 section 4.2), as a private cache: max-age, else
// Expires minus the response's Date, minus the Age the response already
// had. s-maxage is for shared caches and is ignored. no-cache, no-store,
// Pragma: no-cache (without Cache-Control), max-age=0 and an unparseable
// Expires all make the response stale at once. There is no heuristic
// freshness from Last-Modified: a module replaced at a fixed URL must be
// picked up by the next task, and a revalidation costs one small round
// trip, not a download.
//
// The response's age is taken from the Age header only, not from Date
// against the local clock: edge devices' clocks are often far off, and
// Expires-Date are both the server's clock, so neither needs ours to be
// right. must-revalidate needs no handling: a stale entry is never used
// without revalidation. now is when the request was sent (the conservative
// choice of section 4.2.3).
func freshUntil(directives, resp http.Header, now time.Time) time.Time {
	ccValues := directives.Values("Cache-Control")
	cc := cacheDirectives(ccValues)
	if _, ok := cc["no-store"]; ok {
		return time.Time{}
	}
	if _, ok := cc["no-cache"]; ok {
		return time.Time{}
	}
	if len(ccValues) == 0 && strings.Contains(strings.ToLower(directives.Get("Pragma")), "no-cache") {
		return time.Time{}
	}
	var lifetime time.Duration
	if v, ok := cc["max-age"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}
		}
		lifetime = time.Duration(min(n, maxDeltaSeconds)) * time.Second
	} else if v := directives.Get("Expires"); v != "" {
		exp, err := http.ParseTime(v)
		if err != nil {
			return time.Time{}
		}
		date, err := http.ParseTime(resp.Get("Date"))
		if err != nil {
			date = now
		}
		lifetime = exp.Sub(date)
	} else {
		return time.Time{}
	}
	if v := resp.Get("Age"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
			lifetime -= time.Duration(min(n, maxDeltaSeconds)) * time.Second
		}
	}
	if lifetime <= 0 {
		return time.Time{}
	}
	return now.Add(lifetime)
}

// flightGroup makes concurrent fetches of one key share one download: the
// first caller starts it, later ones wait for the same result. The download
// runs on a context detached from any one caller, so the first caller
// giving up (its task stopped) does not fail the others; it is cancelled
// when every waiting caller has given up. (golang.org/x/sync/singleflight
// is only an indirect dependency of this module and does not do the
// last-waiter cancellation, hence this small version.)
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
	// joined, when set (tests), is called after a caller joins a flight
	// already in progress.
	joined func(key string)
}

type flight struct {
	done    chan struct{}
	blob    Blob
	err     error
	waiters int
	taken   bool // the result's Data was handed out once; later callers get a copy
	cancel  context.CancelFunc
}

func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (Blob, error)) (Blob, error) {
	g.mu.Lock()
	fl, ok := g.m[key]
	if ok {
		fl.waiters++
		hook := g.joined
		g.mu.Unlock()
		if hook != nil {
			hook(key)
		}
	} else {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
		if g.m == nil {
			g.m = map[string]*flight{}
		}
		g.m[key] = fl
		g.mu.Unlock()
		go func() {
			b, err := fn(fctx)
			g.mu.Lock()
			if g.m[key] == fl {
				delete(g.m, key)
			}
			fl.blob, fl.err = b, err
			g.mu.Unlock()
			cancel()
			close(fl.done)
		}()
	}
	select {
	case <-fl.done:
		g.mu.Lock()
		b := fl.blob
		if fl.taken {
			// Each caller owns its Data: one task must not see another
			// one's bytes change under it.
			b.Data = bytes.Clone(b.Data)
		}
		fl.taken = true
		g.mu.Unlock()
		return b, fl.err
	case <-ctx.Done():
		g.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			fl.cancel()
			if g.m[key] == fl {
				// A caller arriving now starts afresh rather than joining a
				// cancelled download.
				delete(g.m, key)
			}
		}
		g.mu.Unlock()
		return Blob{}, ctx.Err()
	}
}
