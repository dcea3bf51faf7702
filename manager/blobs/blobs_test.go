package blobs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/blobs"
)

func TestPutGet(t *testing.T) {
	dir := t.TempDir()
	s, err := blobs.Open(dir)
	require.NoError(t, err)
	content := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(content)
	want := "sha256:" + hex.EncodeToString(sum[:])

	d, size, err := s.Put(bytes.NewReader(content), 100)
	require.NoError(t, err)
	require.Equal(t, want, d)
	require.EqualValues(t, len(content), size)

	got, err := s.Blob(context.Background(), d)
	require.NoError(t, err)
	require.Equal(t, content, got)

	d2, err := s.PutBytes(content)
	require.NoError(t, err)
	require.Equal(t, d, d2, "same content, same blob")

	_, _, err = s.Put(bytes.NewReader(make([]byte, 101)), 100)
	require.ErrorIs(t, err, blobs.ErrTooLarge)
	entries, err := os.ReadDir(filepath.Join(dir, "sha256"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "a refused upload leaves nothing behind")

	_, err = s.Blob(context.Background(), "sha256:"+hex.EncodeToString(make([]byte, 32)))
	require.ErrorIs(t, err, blobs.ErrNotFound)
	_, err = s.Blob(context.Background(), "sha256:../../etc/passwd")
	require.ErrorContains(t, err, "bad digest")

	// Corruption on disk is detected, not served.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sha256", want[7:]), []byte("evil"), 0o600))
	_, err = s.Blob(context.Background(), d)
	require.ErrorContains(t, err, "corrupted")

	require.NoError(t, s.Delete(d))
	require.NoError(t, s.Delete(d))
	_, err = s.Blob(context.Background(), d)
	require.ErrorIs(t, err, blobs.ErrNotFound)
}
