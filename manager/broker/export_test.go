package broker

// Idle reports whether no connection is being served, so a test can close
// the broker after a refused connection has fully ended.
func (b *Broker) Idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns == 0
}
