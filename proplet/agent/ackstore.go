package agent

import (
	"strconv"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// ackStore wraps paho's in-memory store to learn when a PUBACK really
// arrived. paho's publish token is not enough: after a reconnect paho
// re-sends the stored publish under a fresh token and completes the
// original one without error before the broker acknowledged anything.
// paho deletes "o.<mid>" from its store exactly when the PUBACK arrives, so
// that deletion is the signal the outbox waits for.
type ackStore struct {
	mqtt.Store

	mu   sync.Mutex
	acks map[uint16]chan struct{}
}

func newAckStore() *ackStore {
	return &ackStore{Store: mqtt.NewOrderedMemoryStore(), acks: map[uint16]chan struct{}{}}
}

func outboundMID(key string) (uint16, bool) {
	s, ok := strings.CutPrefix(key, "o.")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

func (s *ackStore) Put(key string, cp packets.ControlPacket) {
	if mid, ok := outboundMID(key); ok {
		if _, pub := cp.(*packets.PublishPacket); pub {
			s.mu.Lock()
			s.acks[mid] = make(chan struct{})
			s.mu.Unlock()
		}
	}
	s.Store.Put(key, cp)
}

func (s *ackStore) Del(key string) {
	s.Store.Del(key)
	if mid, ok := outboundMID(key); ok {
		s.mu.Lock()
		if ch, ok := s.acks[mid]; ok {
			close(ch)
			delete(s.acks, mid)
		}
		s.mu.Unlock()
	}
}

// ackChan returns the channel closed on mid's PUBACK. The caller must hold
// the lock that serialises QoS 1 publishes, so no later publish can have
// reused mid; a missing entry therefore means it was already acknowledged.
func (s *ackStore) ackChan(mid uint16) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.acks[mid]; ok {
		return ch
	}
	return closedChan
}

var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()
