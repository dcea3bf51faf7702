package artifact

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/absmach/propeller/internal/durable"
)

// Cache is a content-addressed blob store on disk, laid out as
// <dir>/blobs/sha256/<hex>, bounded by total bytes with least-recently-used
// eviction. Writes go through a temp file and a rename so a crash never
// leaves a truncated blob under a digest name, and reads are verified so a
// corrupted file is dropped instead of run. Use order is kept in file
// modification times, so it survives a restart.
type Cache struct {
	dir      string
	maxBytes int64

	mu    sync.Mutex
	size  int64
	lru   *list.List // of *cacheEntry, most recently used first
	items map[string]*list.Element
}

type cacheEntry struct {
	hex  string
	size int64
}

// OpenCache opens (creating if needed) the cache rooted at dir and indexes
// what a previous run left there. maxBytes <= 0 means unbounded.
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	c := &Cache{dir: filepath.Join(dir, "blobs", "sha256"), maxBytes: maxBytes, lru: list.New(), items: map[string]*list.Element{}}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	type found struct {
		cacheEntry
		mtime time.Time
	}
	var blobs []found
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// An interrupted write from a previous run.
			_ = os.Remove(filepath.Join(c.dir, name))
			continue
		}
		if !validHex(name) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		blobs = append(blobs, found{cacheEntry{name, info.Size()}, info.ModTime()})
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].mtime.After(blobs[j].mtime) })
	for _, b := range blobs {
		e := b.cacheEntry
		c.items[e.hex] = c.lru.PushBack(&e)
		c.size += e.size
	}
	c.mu.Lock()
	victims := c.evictLocked()
	c.mu.Unlock()
	c.remove(victims)
	return c, nil
}

// Get returns the verified blob for digest ("sha256:<hex>").
func (c *Cache) Get(digest string) ([]byte, bool) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, false
	}
	c.mu.Lock()
	el, ok := c.items[h]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	path := filepath.Join(c.dir, h)
	data, err := os.ReadFile(path)
	if err != nil || hexDigest(data) != h {
		c.drop(h)
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // best effort: keeps LRU order across restarts
	return data, true
}

// Has reports whether digest is cached, without reading it.
func (c *Cache) Has(digest string) bool {
	h, err := parseDigest(digest)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[h]
	return ok
}

// Put stores data under its own digest and returns that digest. A blob
// larger than the whole cache is not stored (and not an error): caching is
// an optimisation.
func (c *Cache) Put(data []byte) (string, error) {
	h := hexDigest(data)
	digest := "sha256:" + h
	size := int64(len(data))
	if c.maxBytes > 0 && size > c.maxBytes {
		return digest, nil
	}
	c.mu.Lock()
	if el, ok := c.items[h]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		return digest, nil
	}
	c.mu.Unlock()

	tmp, err := durable.WriteTemp(c.dir, ".tmp-"+h[:12]+"-", data, 0o600)
	if err != nil {
		return digest, fmt.Errorf("artifact cache: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, h)); err != nil {
		_ = os.Remove(tmp)
		return digest, fmt.Errorf("artifact cache: %w", err)
	}

	c.mu.Lock()
	if _, ok := c.items[h]; !ok {
		c.items[h] = c.lru.PushFront(&cacheEntry{hex: h, size: size})
		c.size += size
	}
	victims := c.evictLocked()
	c.mu.Unlock()
	c.remove(victims)
	return digest, nil
}

// Size returns the bytes held.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Len returns the number of blobs held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Path returns where the blob for digest lives (whether or not cached), so
// a caller can mount or stream it without another copy.
func (c *Cache) Path(digest string) (string, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.dir, h), nil
}

func (c *Cache) evictLocked() []string {
	var victims []string
	for c.maxBytes > 0 && c.size > c.maxBytes && c.lru.Len() > 0 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.items, e.hex)
		c.size -= e.size
		victims = append(victims, e.hex)
	}
	return victims
}

func (c *Cache) drop(h string) {
	c.mu.Lock()
	if el, ok := c.items[h]; ok {
		c.lru.Remove(el)
		delete(c.items, h)
		c.size -= el.Value.(*cacheEntry).size
	}
	c.mu.Unlock()
	c.remove([]string{h})
}

func (c *Cache) remove(hexes []string) {
	for _, h := range hexes {
		_ = os.Remove(filepath.Join(c.dir, h))
	}
}

// Digest returns the "sha256:<hex>" digest of data.
func Digest(data []byte) string { return "sha256:" + hexDigest(data) }

func hexDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ErrBadDigest reports a digest that is not "sha256:<64 hex>".
var ErrBadDigest = errors.New("digest must be sha256:<64 lowercase hex digits>")

func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !validHex(h) {
		return "", fmt.Errorf("%w: %q", ErrBadDigest, d)
	}
	return h, nil
}

func validHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
