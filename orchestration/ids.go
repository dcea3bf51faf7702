package orchestration

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// IDGen returns a new unique id for each call.
type IDGen func() string

// NewTimeIDGen returns a generator of UUIDv7-shaped ids whose string order is
// creation order, also within one millisecond (a counter fills the bits
// below the timestamp). Stores list tasks in id order, so listing is
// chronological without a secondary index.
func NewTimeIDGen(clock Clock) IDGen {
	var (
		mu     sync.Mutex
		lastMS int64
		seq    uint16
	)
	return func() string {
		mu.Lock()
		ms := clock.Now().UnixMilli()
		if ms <= lastMS {
			ms = lastMS
			seq++
			if seq > 0x0fff { // counter exhausted: borrow the next millisecond
				ms++
				seq = 0
			}
		} else {
			seq = 0
		}
		lastMS = ms
		s := seq
		mu.Unlock()

		var b [16]byte
		_, _ = rand.Read(b[8:])
		b[0] = byte(ms >> 40)
		b[1] = byte(ms >> 32)
		b[2] = byte(ms >> 24)
		b[3] = byte(ms >> 16)
		b[4] = byte(ms >> 8)
		b[5] = byte(ms)
		b[6] = 0x70 | byte(s>>8)
		b[7] = byte(s)
		b[8] = 0x80 | b[8]&0x3f
		var out [36]byte
		hex.Encode(out[0:8], b[0:4])
		out[8] = '-'
		hex.Encode(out[9:13], b[4:6])
		out[13] = '-'
		hex.Encode(out[14:18], b[6:8])
		out[18] = '-'
		hex.Encode(out[19:23], b[8:10])
		out[23] = '-'
		hex.Encode(out[24:], b[10:])
		return string(out[:])
	}
}
