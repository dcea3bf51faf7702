package runtime

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

var (
	errNotCached      = errors.New("module is not cached and the job carries no bytes")
	errDigestMismatch = errors.New("digest mismatch")
)

// loadError is a Job.Load failure: the module's bytes could not be had,
// which is the artifact's fault, not the module's.
type loadError struct {
	digest string
	err    error
}

func (e *loadError) Error() string { return "load module " + e.digest + ": " + e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// Digest returns the "sha256:<hex>" digest of a module, the key under which
// it is cached here and addressed everywhere else in Propeller.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// cachedModule is one compiled module shared by concurrent runs. refs keeps
// an evicted module's code alive until its last instance finishes.
type cachedModule struct {
	digest string
	ready  chan struct{} // closed when compiled (or failed)
	mod    wazero.CompiledModule
	shape  shape // every memory and table the module declares
	err    error

	refs    int
	evicted bool
}

// moduleCache is an LRU of compiled modules keyed by digest. It compiles
// each digest once even when many tasks for it arrive together.
type moduleCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cachedModule, most recently used first
	items map[string]*list.Element
}

func newModuleCache(max int) *moduleCache {
	return &moduleCache{max: max, lru: list.New(), items: map[string]*list.Element{}}
}

func (c *moduleCache) has(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[digest]
	if !ok {
		return false
	}
	m := el.Value.(*cachedModule)
	select {
	case <-m.ready:
		return m.err == nil
	default:
		return true
	}
}

// acquire returns a referenced module, compiling it with compile when
// missing. hit is true when the module was already cached or being
// compiled by another caller.
func (c *moduleCache) acquire(digest string, compile func() (wazero.CompiledModule, shape, time.Duration, error)) (*cachedModule, bool, time.Duration, error) {
	c.mu.Lock()
	if el, ok := c.items[digest]; ok {
		m := el.Value.(*cachedModule)
		m.refs++
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		<-m.ready
		if m.err != nil {
			c.release(context.Background(), m)
			return nil, false, 0, m.err
		}
		return m, true, 0, nil
	}
	m := &cachedModule{digest: digest, ready: make(chan struct{}), refs: 1}
	c.items[digest] = c.lru.PushFront(m)
	c.mu.Unlock()

	mod, sh, took, err := compile()
	m.mod, m.shape, m.err = mod, sh, err
	close(m.ready)

	c.mu.Lock()
	if err != nil {
		// Failures are not cached: the next task may carry good bytes.
		if el, ok := c.items[digest]; ok && el.Value == m {
			c.lru.Remove(el)
			delete(c.items, digest)
		}
		m.evicted = true
		m.refs--
		c.mu.Unlock()
		return nil, false, took, err
	}
	victims := c.evictLocked()
	c.mu.Unlock()
	for _, v := range victims {
		_ = v.Close(context.Background())
	}
	return m, false, took, nil
}

// evictLocked drops least recently used modules beyond max and returns the
// compiled code that nobody references any more.
func (c *moduleCache) evictLocked() []wazero.CompiledModule {
	var victims []wazero.CompiledModule
	for el := c.lru.Back(); el != nil && c.lru.Len() > c.max; {
		prev := el.Prev()
		m := el.Value.(*cachedModule)
		select {
		case <-m.ready:
		default:
			// Still compiling: its owner will evict later.
			el = prev
			continue
		}
		c.lru.Remove(el)
		delete(c.items, m.digest)
		m.evicted = true
		if m.refs == 0 && m.mod != nil {
			victims = append(victims, m.mod)
		}
		el = prev
	}
	return victims
}

func (c *moduleCache) release(ctx context.Context, m *cachedModule) {
	c.mu.Lock()
	m.refs--
	free := m.evicted && m.refs == 0 && m.mod != nil
	c.mu.Unlock()
	if free {
		_ = m.mod.Close(ctx)
	}
}

func (c *moduleCache) closeAll(ctx context.Context) {
	c.mu.Lock()
	var mods []wazero.CompiledModule
	for el := c.lru.Front(); el != nil; el = el.Next() {
		m := el.Value.(*cachedModule)
		m.evicted = true
		select {
		case <-m.ready:
			if m.mod != nil && m.refs == 0 {
				mods = append(mods, m.mod)
			}
		default:
		}
	}
	c.lru.Init()
	c.items = map[string]*list.Element{}
	c.mu.Unlock()
	for _, m := range mods {
		_ = m.Close(ctx)
	}
}
