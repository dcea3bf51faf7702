// Package outbox is a small crash-safe queue of MQTT messages on disk.
//
// Every message is written to its own file (temp file, fsync, rename, fsync
// of the directory) before the caller publishes it, and the file is removed
// only once the broker acknowledged the publish. A proplet that crashes or
// loses its broker therefore re-sends, in order, whatever was not yet
// acknowledged. One file per message keeps the format trivial and makes a
// torn write impossible to observe: a half-written temp file is never
// renamed into place and is discarded on the next Open.
package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const (
	fileSuffix = ".msg"
	tempPrefix = ".tmp-"
)

// Defaults used when Options leaves a bound at zero.
const (
	DefaultMaxEntries = 10000
	DefaultMaxBytes   = 256 << 20
)

// ErrClosed is returned by operations on a closed outbox.
var ErrClosed = errors.New("outbox: closed")

// Message is one publish waiting for its acknowledgement.
type Message struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
	// Key deduplicates: appending a message whose Key equals that of a
	// pending message is a no-op. Empty means no deduplication.
	Key string `json:"key,omitempty"`
	// Terminal messages (final task events, FL updates) carry results that
	// exist nowhere else, so they are never dropped to make room.
	Terminal bool `json:"terminal,omitempty"`
}

// Entry is a pending message's handle, without its payload.
type Entry struct {
	Seq      uint64
	Topic    string
	Key      string
	Terminal bool
	Size     int64
}

// Options bound the outbox. Zero values take the defaults.
type Options struct {
	MaxEntries int
	MaxBytes   int64
	Logger     *slog.Logger
	// NoSync skips fsync; only for benchmarks that measure the rest.
	NoSync bool
}

// Outbox is safe for concurrent use.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	closed  bool
	next    uint64
	entries []Entry // ordered by Seq
	keys    map[string]uint64
	bytes   int64
	notify  chan struct{}
}

// Open loads the pending messages in dir, creating it if needed.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: create dir: %w", err)
	}
	o := &Outbox{
		dir:    dir,
		opts:   opts,
		log:    log.With("component", "outbox"),
		next:   1,
		keys:   map[string]uint64{},
		notify: make(chan struct{}, 1),
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: read dir: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, tempPrefix) {
			// A crash between create and rename; the caller never got
			// an acknowledgement of this append, so it is not pending.
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		seqStr, ok := strings.CutSuffix(name, fileSuffix)
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if err != nil {
			continue
		}
		m, size, err := o.readFile(seq)
		if err != nil {
			// Rename instead of delete so an operator can inspect it; it
			// must not block the queue forever.
			o.log.Error("outbox: unreadable message set aside", "seq", seq, "err", err)
			_ = os.Rename(o.path(seq), o.path(seq)+".corrupt")
			continue
		}
		o.entries = append(o.entries, Entry{Seq: seq, Topic: m.Topic, Key: m.Key, Terminal: m.Terminal, Size: size})
		if m.Key != "" {
			o.keys[m.Key] = seq
		}
		o.bytes += size
		o.next = max(o.next, seq+1)
	}
	slices.SortFunc(o.entries, func(a, b Entry) int { return cmpSeq(a.Seq, b.Seq) })
	if len(o.entries) > 0 {
		o.log.Info("outbox: pending messages loaded", "count", len(o.entries), "bytes", o.bytes)
	}
	return o, nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (o *Outbox) path(seq uint64) string {
	// Fixed width keeps lexical order equal to numeric order for humans
	// listing the directory.
	return filepath.Join(o.dir, fmt.Sprintf("%020d%s", seq, fileSuffix))
}

func (o *Outbox) readFile(seq uint64) (Message, int64, error) {
	data, err := os.ReadFile(o.path(seq))
	if err != nil {
		return Message{}, 0, err
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, 0, err
	}
	return m, int64(len(data)), nil
}

// Append stores m durably and returns its sequence number. added is false
// when a pending message already has m's Key, or when m was the one dropped
// because the outbox is full of messages that may not be dropped.
func (o *Outbox) Append(m Message) (seq uint64, added bool, err error) {
	data, err := json.Marshal(m)
	if err != nil {
		return 0, false, fmt.Errorf("outbox: encode: %w", err)
	}
	size := int64(len(data))

	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, false, ErrClosed
	}
	if m.Key != "" {
		if s, ok := o.keys[m.Key]; ok {
			return s, false, nil
		}
	}
	if !o.makeRoom(size, m.Terminal) {
		o.log.Warn("outbox: full, dropping new non-terminal message",
			"topic", m.Topic, "key", m.Key, "entries", len(o.entries), "bytes", o.bytes)
		return 0, false, nil
	}
	seq = o.next
	if err := o.writeFile(seq, data); err != nil {
		return 0, false, err
	}
	o.next++
	o.entries = append(o.entries, Entry{Seq: seq, Topic: m.Topic, Key: m.Key, Terminal: m.Terminal, Size: size})
	if m.Key != "" {
		o.keys[m.Key] = seq
	}
	o.bytes += size
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return seq, true, nil
}

// makeRoom drops the oldest non-terminal messages until one more message of
// size fits. It reports false when a non-terminal message cannot fit; a
// terminal one is always admitted, over the bound if it must.
func (o *Outbox) makeRoom(size int64, terminal bool) bool {
	full := func() bool {
		return len(o.entries)+1 > o.opts.MaxEntries || o.bytes+size > o.opts.MaxBytes
	}
	for full() {
		i := slices.IndexFunc(o.entries, func(e Entry) bool { return !e.Terminal })
		if i < 0 {
			if !terminal {
				return false
			}
			o.log.Error("outbox: over its bound with only terminal messages; keeping them",
				"entries", len(o.entries), "bytes", o.bytes,
				"max_entries", o.opts.MaxEntries, "max_bytes", o.opts.MaxBytes)
			return true
		}
		e := o.entries[i]
		o.log.Warn("outbox: full, dropping oldest non-terminal message",
			"seq", e.Seq, "topic", e.Topic, "key", e.Key)
		o.removeLocked(i)
	}
	return true
}

func (o *Outbox) writeFile(seq uint64, data []byte) error {
	tmp := filepath.Join(o.dir, fmt.Sprintf("%s%d", tempPrefix, seq))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: create: %w", err)
	}
	_, err = f.Write(data)
	if err == nil && !o.opts.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, o.path(seq))
	}
	if err == nil && !o.opts.NoSync {
		err = syncDir(o.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("outbox: write: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Pending lists the pending messages in append order.
func (o *Outbox) Pending() []Entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.entries)
}

// Len is the number of pending messages.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// Read returns a pending message with its payload. It fails with
// os.ErrNotExist when seq was removed or dropped meanwhile.
func (o *Outbox) Read(seq uint64) (Message, error) {
	m, _, err := o.readFile(seq)
	if err != nil {
		return Message{}, fmt.Errorf("outbox: read %d: %w", seq, err)
	}
	return m, nil
}

// Remove forgets an acknowledged message. Removing an unknown seq is a
// no-op, since a dropped message may still be acknowledged later.
func (o *Outbox) Remove(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, ok := slices.BinarySearchFunc(o.entries, seq, func(e Entry, s uint64) int { return cmpSeq(e.Seq, s) })
	if !ok {
		return nil
	}
	return o.removeLocked(i)
}

func (o *Outbox) removeLocked(i int) error {
	e := o.entries[i]
	o.entries = slices.Delete(o.entries, i, i+1)
	if e.Key != "" && o.keys[e.Key] == e.Seq {
		delete(o.keys, e.Key)
	}
	o.bytes -= e.Size
	// No directory fsync: if the unlink is lost in a crash the message is
	// sent once more, which the manager's deduplication absorbs.
	if err := os.Remove(o.path(e.Seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: remove %d: %w", e.Seq, err)
	}
	return nil
}

// Notify returns a channel that receives after each Append. It has a buffer
// of one, so a reader that drains Pending after each receive misses nothing.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Close makes further Appends fail. Pending messages stay on disk.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return nil
}
