package outbox

// SetBeforeSync installs a hook the writer calls before each fsync of a
// batch; set it before the first append.
func SetBeforeSync(o *Outbox, f func()) { o.SetBeforeSync(f) }

// Syncs counts the batch fsyncs so far.
func Syncs(o *Outbox) uint64 { return o.Syncs() }

// Queued is the number of requests waiting for the writer.
func Queued(o *Outbox) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}
