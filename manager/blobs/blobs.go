// Package blobs is the manager's content-addressed store for modules users
// upload and for model checkpoints: files named by their sha256 under one
// directory, written atomically. Both manager modes use it; the MQTT link
// serves it to proplets through the artifact relay.
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
)

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// ErrTooLarge is returned by Put when the content exceeds the limit.
var ErrTooLarge = errors.New("blob too large")

// Store keeps blobs under dir/sha256/<hex>. Safe for concurrent use: writes
// go to a temporary file renamed into place, so readers never see a partial
// blob and two writers of the same content agree.
type Store struct {
	dir string
}

// Open creates dir if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o700); err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
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
// returns its digest and size.
func (s *Store) Put(r io.Reader, limit int64) (digest string, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "sha256"), ".upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("blobs: %w", err)
	}
	defer func() {
		if err != nil {
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
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("blobs: %w", err)
	}
	return digest, size, nil
}

// PutBytes stores b. Content already held is not written again: users
// submit the same module over and over, and each write costs an fsync.
func (s *Store) PutBytes(b []byte) (string, error) {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	p, _ := s.path(d)
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(b)) {
		return d, nil
	}
	d, _, err := s.Put(bytes.NewReader(b), 0)
	return d, err
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

// Delete removes a blob; deleting a missing one is not an error.
func (s *Store) Delete(digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}
