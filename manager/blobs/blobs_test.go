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

// Scratch blobs are deleted by DeleteScratch unless the same content was
// also stored as kept, before or after.
func TestScratch(t *testing.T) {
	dir := t.TempDir()
	s, err := blobs.Open(dir)
	require.NoError(t, err)
	ctx := context.Background()

	upd, err := s.PutScratch([]byte("update"))
	require.NoError(t, err)
	again, err := s.PutScratch([]byte("update"))
	require.NoError(t, err)
	require.Equal(t, upd, again)
	kept, err := s.PutBytes([]byte("module"))
	require.NoError(t, err)
	same, err := s.PutScratch([]byte("module")) // an update equal to a kept blob
	require.NoError(t, err)
	require.Equal(t, kept, same)
	later, err := s.PutScratch([]byte("checkpoint"))
	require.NoError(t, err)
	_, err = s.PutBytes([]byte("checkpoint")) // kept after the fact
	require.NoError(t, err)

	got, err := s.Scratch()
	require.NoError(t, err)
	require.Equal(t, []string{upd}, got)
	for _, d := range []string{upd, kept, later} {
		require.NoError(t, s.DeleteScratch(d))
	}
	_, err = s.Blob(ctx, upd)
	require.ErrorIs(t, err, blobs.ErrNotFound)
	for _, d := range []string{kept, later} {
		_, err = s.Blob(ctx, d)
		require.NoError(t, err)
	}
	got, err = s.Scratch()
	require.NoError(t, err)
	require.Empty(t, got)
	require.NoError(t, s.DeleteScratch(upd), "deleting twice")

	// A marker that outlived its blob (a crash between the two removes)
	// is listed and removed.
	upd, err = s.PutScratch([]byte("update 2"))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "sha256", upd[len("sha256:"):])))
	got, err = s.Scratch()
	require.NoError(t, err)
	require.Equal(t, []string{upd}, got)
	require.NoError(t, s.DeleteScratch(upd))
	got, err = s.Scratch()
	require.NoError(t, err)
	require.Empty(t, got)

	// Reopening keeps the markers.
	upd, err = s.PutScratch([]byte("update 3"))
	require.NoError(t, err)
	s2, err := blobs.Open(dir)
	require.NoError(t, err)
	got, err = s2.Scratch()
	require.NoError(t, err)
	require.Equal(t, []string{upd}, got)
}
