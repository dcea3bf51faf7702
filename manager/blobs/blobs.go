// Package blobs is the manager's content-addressed store for modules users
// upload, model checkpoints and FL client updates: files named by their
// sha256 under one directory, written atomically. Both manager modes use
// it; the MQTT link serves it to proplets through the artifact relay.
//
// A blob is either kept (Put, PutBytes) or scratch (PutScratch). Scratch
// blobs are the ones a garbage collector may delete (DeleteScratch): FL
// client updates, needed only until their round is aggregated. Content
// addressing lets one digest be both: whoever stores content as kept,
// before or after, makes it kept for good, so a collector never deletes a
// module, model or checkpoint that happens to equal an update.
package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/absmach/propeller/internal/durable"
)

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// ErrTooLarge is returned by Put when the content exceeds the limit.
var ErrTooLarge = errors.New("blob too large")

// Store keeps blobs under dir/sha256/<hex>. Safe for concurrent use: writes
// go to a temporary file renamed into place, so readers never see a partial
// blob and two writers of the same content agree.
//
// A scratch blob has an empty marker file dir/scratch/<hex>. The marker is
// durable before the blob is renamed into place, and a kept write removes
// it durably before returning, so after a crash a blob is never kept
// without its writer having been told so, and a scratch blob is never
// left unmarked (at worst a marker outlives its blob: DeleteScratch
// removes it).
type Store struct {
	dir string
	// mu orders marker changes with the renames and deletes they guard.
	mu sync.Mutex
}

// Open creates dir if needed.
func Open(dir string) (*Store, error) {
	for _, sub := range []string{"sha256", "scratch"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("blobs: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("blobs: bad digest %q", digest)
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", fmt.Errorf("blobs: bad digest %q", digest)
	}
	return filepath.Join(s.dir, "sha256", h), nil
}

// Put stores r's content, at most limit bytes (limit <= 0: no limit), and
// returns its digest and size. The blob is kept.
func (s *Store) Put(r io.Reader, limit int64) (digest string, size int64, err error) {
	return s.put(r, limit, false)
}

func (s *Store) put(r io.Reader, limit int64, scratch bool) (digest string, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "sha256"), ".upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("blobs: %w", err)
	}
	renamed := false
	defer func() {
		if err != nil || !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	src := r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	size, err = io.Copy(io.MultiWriter(tmp, h), src)
	if err != nil {
		return "", 0, fmt.Errorf("blobs: write: %w", err)
	}
	if limit > 0 && size > limit {
		return "", 0, fmt.Errorf("blobs: more than %d bytes: %w", limit, ErrTooLarge)
	}
	if err = tmp.Sync(); err != nil {
		return "", 0, fmt.Errorf("blobs: sync: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("blobs: close: %w", err)
	}
	digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	dst, _ := s.path(digest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if scratch {
		if s.heldKept(dst, digest, size) {
			return digest, size, nil // kept content stays kept
		}
		if err = s.mark(digest); err != nil {
			return "", 0, err
		}
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("blobs: %w", err)
	}
	renamed = true
	if !scratch {
		if err = s.unmark(digest); err != nil {
			return "", 0, err
		}
	}
	return digest, size, nil
}

// PutBytes stores b as kept. Content already held is not written again:
// users submit the same module over and over, and each write costs an
// fsync.
func (s *Store) PutBytes(b []byte) (string, error) {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	p, _ := s.path(d)
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(b)) {
		if held, err := s.keep(p, d, int64(len(b))); held || err != nil {
			return d, err
		}
	}
	d, _, err := s.Put(bytes.NewReader(b), 0)
	return d, err
}

// keep makes a blob already held kept, and reports whether it was held.
// Under mu, so a concurrent DeleteScratch either ran before (the blob is
// gone and the caller writes it again) or finds no marker.
func (s *Store) keep(p, digest string, size int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, err := os.Stat(p); err != nil || st.Size() != size {
		return false, nil
	}
	return true, s.unmark(digest)
}

// PutScratch stores b as a scratch blob, one DeleteScratch may remove,
// unless the same content is already held (kept, or scratch already).
func (s *Store) PutScratch(b []byte) (string, error) {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	p, _ := s.path(d)
	s.mu.Lock()
	st, err := os.Stat(p)
	s.mu.Unlock()
	if err == nil && st.Size() == int64(len(b)) {
		return d, nil
	}
	d, _, err = s.put(bytes.NewReader(b), 0, true)
	return d, err
}

// Scratch returns the digests of the scratch blobs.
func (s *Store) Scratch() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "scratch"))
	if err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		d := "sha256:" + e.Name()
		if _, err := s.path(d); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// DeleteScratch deletes a blob if it is scratch; a kept or missing one is
// left alone. Deletes are not synced: one that a crash undoes leaves a
// marked blob behind, which the next collection deletes again.
func (s *Store) DeleteScratch(digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.marked(digest)
	if !ok {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}

// markPath is a digest's scratch marker; digest must be valid.
func (s *Store) markPath(digest string) string {
	return filepath.Join(s.dir, "scratch", strings.TrimPrefix(digest, "sha256:"))
}

// marked reports whether a digest has a scratch marker. Callers hold mu.
func (s *Store) marked(digest string) (string, bool) {
	m := s.markPath(digest)
	_, err := os.Stat(m)
	return m, err == nil
}

// heldKept reports whether the blob at p is present, complete and not
// scratch. Callers hold mu.
func (s *Store) heldKept(p, digest string, size int64) bool {
	st, err := os.Stat(p)
	if err != nil || st.Size() != size {
		return false
	}
	_, marked := s.marked(digest)
	return !marked
}

// mark creates a digest's scratch marker durably. Callers hold mu.
func (s *Store) mark(digest string) error {
	m := s.markPath(digest)
	if _, err := os.Stat(m); err == nil {
		return nil
	}
	f, err := os.OpenFile(m, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("blobs: mark: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blobs: mark: %w", err)
	}
	return s.syncScratchDir()
}

// unmark makes a digest kept, durably. Callers hold mu.
func (s *Store) unmark(digest string) error {
	err := os.Remove(s.markPath(digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobs: unmark: %w", err)
	}
	return s.syncScratchDir()
}

func (s *Store) syncScratchDir() error {
	if err := durable.SyncDir(filepath.Join(s.dir, "scratch")); err != nil {
		return fmt.Errorf("blobs: sync scratch dir: %w", err)
	}
	return nil
}

// Blob returns a blob's content, verified against its digest so a corrupted
// file is reported rather than served.
func (s *Store) Blob(_ context.Context, digest string) ([]byte, error) {
	p, err := s.path(digest)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blobs: %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("blobs: %s is corrupted on disk", digest)
	}
	return b, nil
}

// Open returns a reader for a blob and its size, for streaming it out.
func (s *Store) Open(digest string) (*os.File, int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("blobs: %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("blobs: %w", err)
	}
	return f, st.Size(), nil
}

// Delete removes a blob, kept or scratch; deleting a missing one is not an
// error.
func (s *Store) Delete(digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	if err := os.Remove(s.markPath(digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}
