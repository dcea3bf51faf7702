// Package outbox is a small crash-safe queue of MQTT messages on disk, plus
// a few durable "marks" (small key/value facts) that callers want committed
// atomically with their messages, such as the proplet's attempt ledger.
//
// # Layout
//
// The directory holds append-only segment files seg-<n>.log. Only the
// newest segment is written to. Every record is framed as
//
//	u32 LE body length | u32 LE CRC-32C of body | body
//
// so a record torn by a crash (short, or with a wrong checksum, or the
// zero-filled tail some file systems expose) is detected on Open, and it
// and everything after it in that segment are discarded. A record is only
// reported durable after the fsync that covers it returned, so whatever a
// crash discards was never acknowledged to a caller.
//
// # Group commit
//
// A single writer goroutine owns the active segment. Callers enqueue their
// records and wait; the writer takes everything queued, writes it with one
// write call, fsyncs once and wakes every waiter of the batch. While it
// waits for the disk, new requests pile up and share the next fsync, so the
// cost per message falls as concurrency rises instead of the disk becoming
// a serial bottleneck.
//
// # Publish before persist
//
// Submit queues a batch and returns at once: its messages are visible to
// PendingAfter and Read (served from memory) before the writer made them
// durable, so a sender can publish them while the fsync is under way. The
// caller learns from the returned channel when the batch is durable and
// must not treat whatever produced the messages as settled before that (the
// proplet acknowledges the command that caused them only then). A message
// acknowledged before its record is durable is removed like any other: its
// record is still written, followed by its tombstone.
//
// Removals are tombstone records. They are not fsynced on their own: a lost
// tombstone only means the message is published once more after a crash,
// which the at-least-once contract (the manager deduplicates by task and
// attempt) already allows. They reach the disk with the next fsync.
//
// # Compaction
//
// When the active segment grows past its bound, the writer starts a new
// segment with a checkpoint of the live state (next sequence number, marks,
// pending messages), fsyncs it and the directory, and deletes the older
// segments. Open does the same after replaying, so the log never appends
// behind a torn record and its size stays proportional to the live state.
// Replaying an old segment that survived a crash next to a newer checkpoint
// is harmless: every record is idempotent and the checkpoint comes later.
package outbox

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/absmach/propeller/internal/durable"
)

const (
	segPrefix = "seg-"
	segSuffix = ".log"
	headerLen = 8
	// maxBody rejects absurd lengths read from a torn header before
	// allocating for them.
	maxBody = 1 << 30
)

// Record kinds.
const (
	kindMessage = 'M' // seq, flags, key, topic, payload
	kindRemove  = 'D' // seq
	kindMark    = 'K' // value, key
	kindNextSeq = 'S' // next sequence number, written in checkpoints
)

const flagTerminal = 1

// Defaults used when Options leaves a bound at zero.
const (
	DefaultMaxEntries   = 10000
	DefaultMaxBytes     = 256 << 20
	DefaultSegmentBytes = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by operations on a closed outbox.
var ErrClosed = errors.New("outbox: closed")

// Message is one publish waiting for its acknowledgement.
type Message struct {
	Topic   string
	Payload []byte
	// Key deduplicates: appending a message whose Key equals that of a
	// pending message is a no-op. Empty means no deduplication.
	Key string
	// Terminal messages (final task events, FL updates) carry results that
	// exist nowhere else, so they are never dropped to make room.
	Terminal bool
}

// Mark is a small durable fact stored in the same log as the messages, so
// that it can be committed atomically with them. Value 0 forgets Key.
type Mark struct {
	Key   string
	Value byte
}

// Batch is what one Commit makes durable: its messages first, then its
// marks, in order. Should a crash tear the batch, what survives is a prefix,
// so a mark committed with messages never outlives them.
type Batch struct {
	Messages []Message
	Marks    []Mark
}

// Appended is the fate of one message of a Batch.
type Appended struct {
	Seq uint64
	// Added is false when a pending message already had the Key (Seq is
	// then that message's), or when the message was dropped because the
	// outbox is full of messages that may not be dropped (Seq is 0).
	Added bool
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
	// SegmentBytes is the size past which the active segment is
	// checkpointed into a new one.
	SegmentBytes int64
	Logger       *slog.Logger
	// NoSync skips fsync; only for benchmarks that measure the rest.
	NoSync bool
}

type segment struct {
	id   uint64
	f    *os.File
	size int64
}

type entry struct {
	Entry
	seg       *segment // nil until the writer placed the record
	off       int64    // of the record body in seg
	n         int      // body length
	committed bool     // durable
	// early entries came from Submit: visible to Pending and Read before
	// they are durable, served from body until then.
	early   bool
	body    []byte
	removed bool
}

// visible reports whether a sender may see e.
func (e *entry) visible() bool { return e.committed || e.early }

type markState struct {
	value byte
	order uint64
}

// rec is one record waiting for the writer.
type rec struct {
	body []byte
	ent  *entry // the message a kindMessage record stores
	mark *Mark  // the mark a kindMark record sets
}

type request struct {
	recs []rec
	sync bool
	done chan error // nil: nobody waits
}

// Outbox is safe for concurrent use.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	wake    *sync.Cond // the writer waits on it for requests
	closed  bool
	err     error // the log is unusable until a checkpoint succeeds
	next    uint64
	list    []*entry // by Seq; removed ones are pruned lazily
	dead    int      // removed entries still in list
	bySeq   map[uint64]*entry
	keys    map[string]uint64
	count   int
	bytes   int64
	marks   map[string]markState
	markSeq uint64
	queue   []*request
	active  *segment
	older   []*segment // superseded by active's checkpoint, deleted next
	// checkpointed is the size of the last checkpoint; the next one waits
	// until the segment is twice that, so compaction stays amortised O(1)
	// even when the live state is large.
	checkpointed int64

	notify     chan struct{}
	writerDone chan struct{}

	syncs      atomic.Uint64 // fsyncs of the active segment, for tests
	beforeSync func()        // test hook, called by the writer
}

// Open loads the log in dir, creating it if needed, and starts its writer.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: create dir: %w", err)
	}
	o := &Outbox{
		dir:        dir,
		opts:       opts,
		log:        log.With("component", "outbox"),
		next:       1,
		bySeq:      map[uint64]*entry{},
		keys:       map[string]uint64{},
		marks:      map[string]markState{},
		notify:     make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	o.wake = sync.NewCond(&o.mu)
	ids, err := o.segmentIDs()
	if err != nil {
		return nil, err
	}
	// Bodies of the live messages found while replaying; the opening
	// checkpoint copies them into a fresh segment.
	bodies := map[uint64][]byte{}
	for i, id := range ids {
		if err := o.replay(id, i == len(ids)-1, bodies); err != nil {
			return nil, err
		}
	}
	// A checkpoint re-inserts messages that older segments already
	// had, so replay order is not sequence order.
	o.list = slices.DeleteFunc(o.list, func(e *entry) bool { return e.removed })
	slices.SortFunc(o.list, func(a, b *entry) int { return cmpUint(a.Seq, b.Seq) })
	o.dead = 0
	var last uint64
	if len(ids) > 0 {
		last = ids[len(ids)-1]
	}
	for _, id := range ids {
		o.older = append(o.older, &segment{id: id})
	}
	if err := o.checkpoint(last+1, func(e *entry) []byte { return bodies[e.Seq] }); err != nil {
		return nil, err
	}
	if o.count > 0 {
		o.log.Info("outbox: pending messages loaded", "count", o.count, "bytes", o.bytes)
	}
	go o.writer()
	return o, nil
}

func (o *Outbox) segmentIDs() ([]uint64, error) {
	des, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: read dir: %w", err)
	}
	var ids []uint64
	for _, de := range des {
		s, ok := strings.CutPrefix(de.Name(), segPrefix)
		if !ok {
			continue
		}
		s, ok = strings.CutSuffix(s, segSuffix)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (o *Outbox) segPath(id uint64) string {
	// Fixed width keeps lexical order equal to numeric order for humans.
	return filepath.Join(o.dir, fmt.Sprintf("%s%020d%s", segPrefix, id, segSuffix))
}

// replay applies one segment's records to the in-memory state.
func (o *Outbox) replay(id uint64, last bool, bodies map[uint64][]byte) error {
	data, err := os.ReadFile(o.segPath(id))
	if err != nil {
		return fmt.Errorf("outbox: read segment: %w", err)
	}
	off := 0
	for off < len(data) {
		body, ok := frame(data[off:])
		if ok {
			ok = o.apply(body, bodies)
		}
		if !ok {
			// Only the tail of the newest segment can be torn by a crash;
			// anything else is damage worth an operator's attention.
			lvl := slog.LevelWarn
			if !last {
				lvl = slog.LevelError
			}
			o.log.Log(context.Background(), lvl, "outbox: discarding unreadable log tail",
				"segment", id, "offset", off, "bytes", len(data)-off)
			break
		}
		off += headerLen + len(body)
	}
	return nil
}

// frame returns the body of the record at the start of b, or false when it
// is torn or corrupt.
func frame(b []byte) ([]byte, bool) {
	if len(b) < headerLen {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxBody || uint64(len(b)-headerLen) < uint64(n) {
		return nil, false
	}
	body := b[headerLen : headerLen+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, false
	}
	return body, true
}

func appendFrame(dst, body []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

// apply replays one record during Open.
func (o *Outbox) apply(body []byte, bodies map[uint64][]byte) bool {
	switch body[0] {
	case kindMessage:
		seq, m, ok := decodeMessage(body)
		if !ok {
			return false
		}
		if old, ok := o.bySeq[seq]; ok {
			// A checkpoint repeats messages of the segments before it.
			o.drop(old)
		}
		e := &entry{Entry: Entry{Seq: seq, Topic: m.Topic, Key: m.Key, Terminal: m.Terminal,
			Size: int64(len(body))}, n: len(body), committed: true}
		o.insert(e)
		bodies[seq] = body
		o.next = max(o.next, seq+1)
	case kindRemove:
		seq, n := binary.Uvarint(body[1:])
		if n <= 0 {
			return false
		}
		if e, ok := o.bySeq[seq]; ok {
			o.drop(e)
			delete(bodies, seq)
		}
	case kindMark:
		if len(body) < 2 {
			return false
		}
		o.setMark(Mark{Key: string(body[2:]), Value: body[1]})
	case kindNextSeq:
		next, n := binary.Uvarint(body[1:])
		if n <= 0 {
			return false
		}
		o.next = max(o.next, next)
	default:
		return false
	}
	return true
}

func encodeMessage(seq uint64, m Message) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+1+2*binary.MaxVarintLen32+len(m.Key)+len(m.Topic)+len(m.Payload))
	b = append(b, kindMessage)
	b = binary.AppendUvarint(b, seq)
	var flags byte
	if m.Terminal {
		flags |= flagTerminal
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	return append(b, m.Payload...)
}

func decodeMessage(body []byte) (uint64, Message, bool) {
	b := body[1:]
	seq, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return 0, Message{}, false
	}
	b = b[n:]
	m := Message{Terminal: b[0]&flagTerminal != 0}
	b = b[1:]
	str := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	var ok bool
	if m.Key, ok = str(); !ok {
		return 0, Message{}, false
	}
	if m.Topic, ok = str(); !ok {
		return 0, Message{}, false
	}
	m.Payload = b
	return seq, m, true
}

func encodeRemove(seq uint64) []byte {
	return binary.AppendUvarint([]byte{kindRemove}, seq)
}

func encodeMark(m Mark) []byte {
	return append([]byte{kindMark, m.Value}, m.Key...)
}

func (o *Outbox) insert(e *entry) {
	o.list = append(o.list, e)
	o.bySeq[e.Seq] = e
	if e.Key != "" {
		o.keys[e.Key] = e.Seq
	}
	o.count++
	o.bytes += e.Size
}

// drop forgets e in memory; the caller writes its tombstone if one is
// needed.
func (o *Outbox) drop(e *entry) {
	e.removed = true
	delete(o.bySeq, e.Seq)
	if e.Key != "" && o.keys[e.Key] == e.Seq {
		delete(o.keys, e.Key)
	}
	o.count--
	o.bytes -= e.Size
	o.dead++
	if o.dead > 64 && o.dead > len(o.list)/2 {
		o.list = slices.DeleteFunc(o.list, func(e *entry) bool { return e.removed })
		o.dead = 0
	}
}

func (o *Outbox) setMark(m Mark) {
	if m.Value == 0 {
		delete(o.marks, m.Key)
		return
	}
	o.markSeq++
	o.marks[m.Key] = markState{value: m.Value, order: o.markSeq}
}

// checkpoint writes the live state into a new segment id, makes it durable
// and deletes the older segments. body returns a live message's record
// body. It runs in Open and then only in the writer goroutine.
func (o *Outbox) checkpoint(id uint64, body func(*entry) []byte) error {
	o.mu.Lock()
	marks := make([]Mark, 0, len(o.marks))
	for k, st := range o.marks {
		marks = append(marks, Mark{Key: k, Value: st.value})
	}
	slices.SortFunc(marks, func(a, b Mark) int {
		return cmpUint(o.marks[a.Key].order, o.marks[b.Key].order)
	})
	live := make([]*entry, 0, o.count)
	for _, e := range o.list {
		// Entries still queued for the writer are not placed yet; they
		// are written after the checkpoint, into the new segment.
		if !e.removed && e.committed {
			live = append(live, e)
		}
	}
	next := o.next
	o.mu.Unlock()

	path := o.segPath(id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: create segment: %w", err)
	}
	seg := &segment{id: id, f: f}
	w := bufio.NewWriterSize(f, 256<<10)
	write := func(b []byte) {
		var hdr [headerLen]byte
		binary.LittleEndian.PutUint32(hdr[:], uint32(len(b)))
		binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(b, castagnoli))
		_, _ = w.Write(hdr[:])
		_, _ = w.Write(b)
		seg.size += headerLen + int64(len(b))
	}
	write(binary.AppendUvarint([]byte{kindNextSeq}, next))
	for _, m := range marks {
		write(encodeMark(m))
	}
	offs := make([]int64, len(live))
	for i, e := range live {
		b := body(e)
		if b == nil {
			_ = f.Close()
			return fmt.Errorf("outbox: checkpoint: message %d unreadable", e.Seq)
		}
		offs[i] = seg.size + headerLen
		write(b)
	}
	err = w.Flush()
	if err == nil && !o.opts.NoSync {
		err = f.Sync()
	}
	if err == nil && !o.opts.NoSync {
		err = durable.SyncDir(o.dir)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("outbox: checkpoint: %w", err)
	}

	o.mu.Lock()
	for i, e := range live {
		e.seg, e.off = seg, offs[i]
	}
	old := o.older
	if o.active != nil {
		old = append(old, o.active)
	}
	o.active = seg
	o.older = nil
	o.checkpointed = seg.size
	o.err = nil
	o.mu.Unlock()
	// Readers look up and read entries under mu, so no one reads these
	// files any more. Their deletion need not be durable: see the package
	// comment on replaying an old segment.
	for _, s := range old {
		if s.f != nil {
			_ = s.f.Close()
		}
		if err := os.Remove(o.segPath(s.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			o.log.Warn("outbox: remove old segment", "segment", s.id, "err", err)
		}
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writer is the only goroutine that writes the log after Open.
func (o *Outbox) writer() {
	defer close(o.writerDone)
	var buf []byte
	var spare []*request
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && !o.closed {
			o.wake.Wait()
		}
		if len(o.queue) == 0 {
			o.mu.Unlock()
			return
		}
		batch := o.queue
		o.queue = spare[:0]
		if o.err != nil {
			err := o.err
			o.mu.Unlock()
			// A failed write may have left a torn record behind, after
			// which nothing would replay; only a fresh checkpoint makes
			// the log appendable again.
			if cerr := o.checkpoint(o.active.id+1, o.readBody); cerr != nil {
				o.finish(batch, fmt.Errorf("%w (recovery: %w)", err, cerr))
				spare = batch
				continue
			}
			o.mu.Lock()
		}
		seg := o.active
		buf = buf[:0]
		doSync := false
		for _, r := range batch {
			for _, rc := range r.recs {
				if rc.ent != nil {
					rc.ent.seg, rc.ent.off, rc.ent.n = seg, seg.size+int64(len(buf))+headerLen, len(rc.body)
				}
				buf = appendFrame(buf, rc.body)
			}
			doSync = doSync || r.sync
		}
		o.mu.Unlock()

		_, err := seg.f.WriteAt(buf, seg.size)
		if err == nil && doSync && !o.opts.NoSync {
			if o.beforeSync != nil {
				o.beforeSync()
			}
			err = seg.f.Sync()
			o.syncs.Add(1)
		}

		o.mu.Lock()
		if err != nil {
			err = fmt.Errorf("outbox: write: %w", err)
			o.err = err
		} else {
			seg.size += int64(len(buf))
		}
		added := false
		for _, r := range batch {
			for _, rc := range r.recs {
				switch {
				case rc.ent != nil && err == nil:
					rc.ent.committed = true
					rc.ent.body = nil // readable from the segment now
					added = added || !rc.ent.early
				case rc.ent != nil && !rc.ent.removed:
					// Not durable, so not added: the caller hears the error.
					o.drop(rc.ent)
				case rc.mark != nil && err == nil:
					o.setMark(*rc.mark)
				}
			}
		}
		grow := err == nil && seg.size >= max(o.opts.SegmentBytes, 2*o.checkpointed)
		o.mu.Unlock()

		o.finish(batch, err)
		clear(batch)
		spare = batch
		if added {
			o.signal()
		}
		if grow {
			if err := o.checkpoint(seg.id+1, o.readBody); err != nil {
				o.log.Error("outbox: compaction failed; the log keeps growing", "err", err)
			}
		}
	}
}

func (o *Outbox) finish(batch []*request, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
}

// readBody reads a placed message's record body back from its segment.
// Only the writer calls it, and only the writer closes segments.
func (o *Outbox) readBody(e *entry) []byte {
	o.mu.Lock()
	seg, off, n := e.seg, e.off, e.n
	o.mu.Unlock()
	if seg == nil {
		return nil
	}
	b := make([]byte, n)
	if _, err := seg.f.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

// enqueue hands r to the writer; mu must be held.
func (o *Outbox) enqueue(r *request) {
	o.queue = append(o.queue, r)
	o.wake.Signal()
}

// Commit makes b durable and returns the fate of each of its messages, in
// order. Concurrent Commits share an fsync. Its messages become visible to
// senders once durable.
func (o *Outbox) Commit(b Batch) ([]Appended, error) {
	res, done, err := o.submit(b, false)
	if err != nil {
		return nil, err
	}
	if err := <-done; err != nil {
		return nil, err
	}
	return res, nil
}

// Submit queues b for the next group commit and returns at once with the
// fate of each of its messages; done yields nil once b is durable, or the
// error that kept it from the disk. Unlike Commit's, its messages are
// visible to PendingAfter and Read immediately, so they can be published
// while the fsync is under way (see the package comment). Should the
// commit fail, they are dropped, even if already published.
func (o *Outbox) Submit(b Batch) (res []Appended, done <-chan error) {
	res, ch, err := o.submit(b, true)
	if err != nil {
		ch = make(chan error, 1)
		ch <- err
	}
	return res, ch
}

var doneNil = func() chan error {
	ch := make(chan error, 1)
	close(ch)
	return ch
}()

func (o *Outbox) submit(b Batch, early bool) ([]Appended, chan error, error) {
	bodies := make([][]byte, len(b.Messages))
	res := make([]Appended, len(b.Messages))
	r := &request{sync: true, done: make(chan error, 1)}

	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, nil, ErrClosed
	}
	added := false
	for i, m := range b.Messages {
		if m.Key != "" {
			if s, ok := o.keys[m.Key]; ok {
				res[i] = Appended{Seq: s}
				continue
			}
		}
		// The size accounted is the record body's, known before
		// encoding from the lengths of its parts.
		size := int64(len(m.Topic) + len(m.Key) + len(m.Payload) + 2)
		if !o.makeRoom(size, m.Terminal) {
			o.log.Warn("outbox: full, dropping new non-terminal message",
				"topic", m.Topic, "key", m.Key, "entries", o.count, "bytes", o.bytes)
			continue
		}
		seq := o.next
		o.next++
		bodies[i] = encodeMessage(seq, m)
		e := &entry{Entry: Entry{Seq: seq, Topic: m.Topic, Key: m.Key, Terminal: m.Terminal,
			Size: int64(len(bodies[i]))}, n: len(bodies[i]), early: early}
		if early {
			e.body = bodies[i]
		}
		o.insert(e)
		r.recs = append(r.recs, rec{body: bodies[i], ent: e})
		res[i] = Appended{Seq: seq, Added: true}
		added = true
	}
	for i := range b.Marks {
		r.recs = append(r.recs, rec{body: encodeMark(b.Marks[i]), mark: &b.Marks[i]})
	}
	if len(r.recs) == 0 {
		o.mu.Unlock()
		return res, doneNil, nil
	}
	o.enqueue(r)
	o.mu.Unlock()
	if early && added {
		o.signal()
	}
	return res, r.done, nil
}

func (o *Outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// Append stores m durably and returns its sequence number. added is false
// when a pending message already has m's Key, or when m was the one dropped
// because the outbox is full of messages that may not be dropped.
func (o *Outbox) Append(m Message) (seq uint64, added bool, err error) {
	res, err := o.Commit(Batch{Messages: []Message{m}})
	if err != nil {
		return 0, false, err
	}
	return res[0].Seq, res[0].Added, nil
}

// makeRoom drops the oldest non-terminal messages until one more message of
// size fits. It reports false when a non-terminal message cannot fit; a
// terminal one is always admitted, over the bound if it must.
func (o *Outbox) makeRoom(size int64, terminal bool) bool {
	full := func() bool {
		return o.count+1 > o.opts.MaxEntries || o.bytes+size > o.opts.MaxBytes
	}
	for full() {
		i := slices.IndexFunc(o.list, func(e *entry) bool { return !e.removed && !e.Terminal })
		if i < 0 {
			if !terminal {
				return false
			}
			o.log.Error("outbox: over its bound with only terminal messages; keeping them",
				"entries", o.count, "bytes", o.bytes,
				"max_entries", o.opts.MaxEntries, "max_bytes", o.opts.MaxBytes)
			return true
		}
		e := o.list[i]
		o.log.Warn("outbox: full, dropping oldest non-terminal message",
			"seq", e.Seq, "topic", e.Topic, "key", e.Key)
		o.removeLocked(e)
	}
	return true
}

// Pending lists the pending messages a sender may see, in append order:
// the durable ones and those Submitted.
func (o *Outbox) Pending() []Entry {
	return o.PendingAfter(0, -1)
}

// PendingAfter lists up to limit pending messages a sender may see (see
// Pending) with a sequence number above after, in order; limit < 0 means
// all. Messages become visible in sequence order (a Submitted one behind a
// Committed one still being written waits for it), so a sender that
// remembers the last sequence it handed out sees each message once.
func (o *Outbox) PendingAfter(after uint64, limit int) []Entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, _ := slices.BinarySearchFunc(o.list, after+1, func(e *entry, s uint64) int { return cmpUint(e.Seq, s) })
	var out []Entry
	for _, e := range o.list[i:] {
		if limit >= 0 && len(out) >= limit {
			break
		}
		if e.removed {
			continue
		}
		if !e.visible() {
			break
		}
		out = append(out, e.Entry)
	}
	return out
}

// Len is the number of pending messages, durable or being written.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}

// Marks returns the live marks, oldest first by when they were last set.
func (o *Outbox) Marks() []Mark {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Mark, 0, len(o.marks))
	for k, st := range o.marks {
		out = append(out, Mark{Key: k, Value: st.value})
	}
	slices.SortFunc(out, func(a, b Mark) int { return cmpUint(o.marks[a.Key].order, o.marks[b.Key].order) })
	return out
}

// Read returns a pending message with its payload. It fails with
// os.ErrNotExist when seq was removed or dropped meanwhile.
func (o *Outbox) Read(seq uint64) (Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.bySeq[seq]
	if !ok || !e.visible() {
		return Message{}, fmt.Errorf("outbox: read %d: %w", seq, os.ErrNotExist)
	}
	b := e.body
	if b == nil {
		// Under mu: a checkpoint may move the record and close its segment.
		b = make([]byte, e.n)
		if _, err := e.seg.f.ReadAt(b, e.off); err != nil && !errors.Is(err, io.EOF) {
			return Message{}, fmt.Errorf("outbox: read %d: %w", seq, err)
		}
	}
	_, m, ok := decodeMessage(b)
	if !ok {
		return Message{}, fmt.Errorf("outbox: read %d: corrupt record", seq)
	}
	return m, nil
}

// Remove forgets an acknowledged message. Removing an unknown seq is a
// no-op, since a dropped message may still be acknowledged later. It does
// not wait for the disk: see the package comment.
func (o *Outbox) Remove(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	if e, ok := o.bySeq[seq]; ok {
		o.removeLocked(e)
	}
	return nil
}

func (o *Outbox) removeLocked(e *entry) {
	o.drop(e)
	o.enqueue(&request{recs: []rec{{body: encodeRemove(e.Seq)}}})
}

// Notify returns a channel that receives after messages became visible
// (durable, or Submitted). It
// has a buffer of one, so a reader that drains PendingAfter after each
// receive misses nothing.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Syncs counts the fsyncs of batches so far (checkpoints aside): the cost
// that group commit shares among concurrent writers.
func (o *Outbox) Syncs() uint64 { return o.syncs.Load() }

// SetBeforeSync installs a hook the writer calls before each fsync of a
// batch, so tests can hold a commit in flight. Set it before the first
// commit.
func (o *Outbox) SetBeforeSync(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.beforeSync = f
}

// Close writes what is queued, makes further operations fail and releases
// the files. Pending messages stay on disk.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		<-o.writerDone
		return nil
	}
	o.closed = true
	// Tombstones queued without a waiter are worth an fsync now: they
	// spare the next start from re-sending what was acknowledged.
	if len(o.queue) > 0 {
		o.queue[len(o.queue)-1].sync = true
	}
	o.wake.Broadcast()
	o.mu.Unlock()
	<-o.writerDone

	o.mu.Lock()
	defer o.mu.Unlock()
	var err error
	for _, s := range append(o.older, o.active) {
		if s != nil && s.f != nil {
			err = errors.Join(err, s.f.Close())
		}
	}
	if o.err != nil {
		err = errors.Join(err, o.err)
	}
	return err
}
