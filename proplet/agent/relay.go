package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/absmach/propeller/api/wire"
)

// ErrRelay wraps every failure reported by the manager's artifact relay or
// detected while assembling its chunks.
var ErrRelay = errors.New("agent: artifact relay")

// assembly collects the chunks of one digest for every Fetch waiting on it.
type assembly struct {
	waiters int
	total   int
	size    int64
	chunks  map[int][]byte
	bytes   int64
	done    chan struct{}
	data    []byte
	err     error
}

// Fetch asks the manager for the blob with the given digest
// ("sha256:<hex>") over MQTT and returns it once every chunk arrived and
// the sha256 matches. It gives up when ctx ends. Concurrent fetches of the
// same digest share one transfer.
func (a *Agent) Fetch(ctx context.Context, digest string) ([]byte, error) {
	want, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	a.relayMu.Lock()
	as, ok := a.fetches[digest]
	if !ok {
		as = &assembly{chunks: map[int][]byte{}, done: make(chan struct{})}
		a.fetches[digest] = as
	}
	as.waiters++
	a.relayMu.Unlock()
	defer func() {
		a.relayMu.Lock()
		as.waiters--
		if as.waiters == 0 && a.fetches[digest] == as {
			delete(a.fetches, digest)
		}
		a.relayMu.Unlock()
	}()

	if !ok {
		if err := a.requestArtifact(digest); err != nil {
			return nil, fmt.Errorf("%w: request %s: %w", ErrRelay, digest, err)
		}
	}
	select {
	case <-as.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrRelay, digest, ctx.Err())
	}
	if as.err != nil {
		return nil, as.err
	}
	if sum := sha256.Sum256(as.data); !bytes.Equal(sum[:], want) {
		return nil, fmt.Errorf("%w: %s: digest mismatch, got sha256:%x", ErrRelay, digest, sum)
	}
	return as.data, nil
}

func parseDigest(d string) ([]byte, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return nil, fmt.Errorf("%w: invalid digest %q", ErrRelay, d)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid digest %q", ErrRelay, d)
	}
	return b, nil
}

func (a *Agent) requestArtifact(digest string) error {
	c := a.current()
	if c == nil {
		// Sent by rerequestFetches once connected.
		return nil
	}
	payload, err := wire.Encode(&wire.ArtifactRequest{Digest: digest})
	if err != nil {
		return err
	}
	_, err = a.publishAck(c, a.topics.ArtifactRequest(a.cfg.ID), false, payload)
	return err
}

// rerequestFetches asks again for transfers still in progress after a
// reconnect; chunks lost with the old connection would otherwise never
// come. Duplicate chunks are harmless.
func (a *Agent) rerequestFetches() {
	a.relayMu.Lock()
	var digests []string
	for d, as := range a.fetches {
		select {
		case <-as.done:
		default:
			digests = append(digests, d)
		}
	}
	a.relayMu.Unlock()
	for _, d := range digests {
		if err := a.requestArtifact(d); err != nil {
			a.log.Warn("artifact re-request", "digest", d, "err", err)
		}
	}
}

func (a *Agent) onChunk(payload []byte) {
	var c wire.ArtifactChunk
	if err := wire.Decode(payload, &c); err != nil {
		a.log.Warn("dropping undecodable artifact chunk", "err", err)
		return
	}
	a.relayMu.Lock()
	defer a.relayMu.Unlock()
	as, ok := a.fetches[c.Digest]
	if !ok {
		return // nobody waits any more
	}
	select {
	case <-as.done:
		return
	default:
	}
	fail := func(format string, args ...any) {
		as.err = fmt.Errorf("%w: %s: %s", ErrRelay, c.Digest, fmt.Sprintf(format, args...))
		as.chunks = nil
		close(as.done)
	}
	switch {
	case c.Error != "":
		fail("manager: %s", c.Error)
		return
	case c.Total <= 0 || c.Index < 0 || c.Index >= c.Total:
		fail("chunk %d of %d out of range", c.Index, c.Total)
		return
	case as.total != 0 && as.total != c.Total:
		fail("chunk count changed from %d to %d", as.total, c.Total)
		return
	case c.Size > a.cfg.RelayMaxBytes:
		fail("size %d exceeds limit %d", c.Size, a.cfg.RelayMaxBytes)
		return
	}
	as.total = c.Total
	if c.Size > 0 {
		as.size = c.Size
	}
	if _, dup := as.chunks[c.Index]; dup {
		return
	}
	as.chunks[c.Index] = c.Data
	as.bytes += int64(len(c.Data))
	if as.bytes > a.cfg.RelayMaxBytes {
		fail("more than %d bytes", a.cfg.RelayMaxBytes)
		return
	}
	if len(as.chunks) < as.total {
		return
	}
	if as.size > 0 && as.bytes != as.size {
		fail("got %d bytes, announced %d", as.bytes, as.size)
		return
	}
	data := make([]byte, 0, as.bytes)
	for i := range as.total {
		data = append(data, as.chunks[i]...)
	}
	as.data = data
	as.chunks = nil
	close(as.done)
}
