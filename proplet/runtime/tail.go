package runtime

import "io"

// tail keeps the last max bytes written to it and forwards everything to an
// optional writer. It lets a module print without bound while the proplet's
// memory and event sizes stay bounded. Only the module's goroutine writes,
// and Bytes is read after the module has returned.
type tail struct {
	max int
	buf []byte
	tee io.Writer
}

func newTail(max int, tee io.Writer) *tail { return &tail{max: max, tee: tee} }

func (t *tail) Write(p []byte) (int, error) {
	if t.tee != nil {
		// A failing tee must not fail the module's write: the tail is
		// still useful.
		_, _ = t.tee.Write(p)
	}
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	// Compact only at twice the bound, so many small writes cost amortised
	// O(1) instead of a shift each.
	if len(t.buf) > 2*t.max {
		n := copy(t.buf, t.buf[len(t.buf)-t.max:])
		t.buf = t.buf[:n]
	}
	return len(p), nil
}

// Bytes returns a copy of at most max trailing bytes.
func (t *tail) Bytes() []byte {
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
