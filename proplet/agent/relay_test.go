package agent_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// serveChunks answers a request with data split into chunks of size n,
// sent in a shuffled order (the relay must not rely on arrival order).
func serveChunks(t testing.TB, m *manager, id string, req wire.ArtifactRequest, data []byte, n int) {
	var chunks []wire.ArtifactChunk
	total := (len(data) + n - 1) / n
	for i := range total {
		chunks = append(chunks, wire.ArtifactChunk{Digest: req.Digest, Index: i, Total: total,
			Size: int64(len(data)), Data: data[i*n : min((i+1)*n, len(data))]})
	}
	rand.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
	for _, c := range chunks {
		m.publish(t, m.topics.ArtifactChunks(id), &c)
	}
}

func TestRelayFetch(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")

	blob := make([]byte, 100_000)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	tampered := append([]byte{}, blob...)
	tampered[500] ^= 0xff
	good := digestOf(blob)
	other := digestOf([]byte("other"))
	mismatch := digestOf([]byte("what was asked for"))

	m.onRequest = func(pid string, req wire.ArtifactRequest) {
		if pid != id {
			return
		}
		switch req.Digest {
		case good:
			serveChunks(t, m, pid, req, blob, 16_384)
		case mismatch:
			serveChunks(t, m, pid, req, tampered, 16_384)
		case other:
			m.publish(t, m.topics.ArtifactChunks(pid), &wire.ArtifactChunk{Digest: req.Digest, Error: "unknown blob"})
		}
		// Any other digest is never answered.
	}
	a := startOnline(t, m, testConfig(t, b.URL(), id), newFakeExec())

	cases := []struct {
		name    string
		digest  string
		timeout time.Duration
		want    []byte
		errLike string
	}{
		{"round trip", good, waitFor, blob, ""},
		{"digest mismatch rejected", mismatch, waitFor, nil, "digest mismatch"},
		{"manager error", other, waitFor, nil, "unknown blob"},
		{"invalid digest", "md5:abc", waitFor, nil, "invalid digest"},
		{"no answer", digestOf([]byte("nobody has it")), 200 * time.Millisecond, nil, context.DeadlineExceeded.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			got, err := a.Fetch(ctx, tc.digest)
			if tc.errLike != "" {
				require.ErrorIs(t, err, agent.ErrRelay)
				require.ErrorContains(t, err, tc.errLike)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("concurrent fetches of one digest", func(t *testing.T) {
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				got, err := a.Fetch(context.Background(), good)
				if err == nil && len(got) != len(blob) {
					err = fmt.Errorf("got %d bytes", len(got))
				}
				errs <- err
			}()
		}
		for range 4 {
			require.NoError(t, <-errs)
		}
	})
}
