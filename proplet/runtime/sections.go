package runtime

import (
	"bytes"
	"errors"
	"fmt"
)

// tableEntryBytes is what wazero keeps per table element (one uintptr), so
// a table of n entries costs n*8 bytes of proplet memory.
const tableEntryBytes = 8

// MaxTableGrowEntries bounds how far a table may grow at run time: wazero
// has no per-task table limit or growth hook, so a table that declares no
// maximum (or a larger one) gets this one written into the module before
// it is compiled. 1M entries is 8 MiB; Go and Rust modules use a few
// thousand and never grow their table.
const MaxTableGrowEntries = 1 << 20

// limits is a memory's (in pages) or table's (in entries) declared size.
type limits struct {
	min    uint64
	max    uint64
	hasMax bool
}

// shape is what a module declares it needs before it runs: every linear
// memory and table, imported, exported and private alike. wazero's
// CompiledModule lists only imported and exported memories, and no tables.
type shape struct {
	memories []limits
	tables   []limits
}

var errMalformed = errors.New("malformed module")

type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errMalformed
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); shift < bits+7; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errMalformed
}

func (r *reader) skip(n uint64) error {
	if n > uint64(len(r.b)-r.off) {
		return errMalformed
	}
	r.off += int(n)
	return nil
}

func (r *reader) name() error {
	n, err := r.uleb(32)
	if err != nil {
		return err
	}
	return r.skip(n)
}

func (r *reader) limits() (limits, error) {
	flag, err := r.byte()
	if err != nil {
		return limits{}, err
	}
	if flag > 0x07 {
		return limits{}, fmt.Errorf("%w: limits flag %#x", errMalformed, flag)
	}
	bits := uint(32)
	if flag&0x04 != 0 { // memory64
		bits = 64
	}
	var l limits
	if l.min, err = r.uleb(bits); err != nil {
		return l, err
	}
	if flag&0x01 != 0 {
		l.hasMax = true
		if l.max, err = r.uleb(bits); err != nil {
			return l, err
		}
	}
	return l, nil
}

// section is one top-level section: its id and payload bounds in the module.
type section struct {
	id         byte
	start, end int // payload
	head       int // where the id byte is
}

func sections(wasm []byte) ([]section, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: no wasm header", errMalformed)
	}
	r := &reader{b: wasm, off: 8}
	var out []section
	for r.off < len(wasm) {
		head := r.off
		id, _ := r.byte()
		size, err := r.uleb(32)
		if err != nil {
			return nil, err
		}
		start := r.off
		if err := r.skip(size); err != nil {
			return nil, err
		}
		out = append(out, section{id: id, start: start, end: r.off, head: head})
	}
	return out, nil
}

const (
	sectionImport = 2
	sectionTable  = 4
	sectionMemory = 5
)

// readShape reads the import, table and memory sections of a module.
func readShape(wasm []byte) (shape, error) {
	secs, err := sections(wasm)
	if err != nil {
		return shape{}, err
	}
	var s shape
	for _, sec := range secs {
		r := &reader{b: wasm[:sec.end], off: sec.start}
		switch sec.id {
		case sectionImport:
			err = s.readImports(r)
		case sectionTable:
			s.tables, err = readVec(r, func(r *reader) (limits, error) {
				if _, err := r.byte(); err != nil { // reftype
					return limits{}, err
				}
				return r.limits()
			}, s.tables)
		case sectionMemory:
			s.memories, err = readVec(r, (*reader).limits, s.memories)
		}
		if err != nil {
			return shape{}, fmt.Errorf("section %d: %w", sec.id, err)
		}
	}
	return s, nil
}

func readVec(r *reader, item func(*reader) (limits, error), into []limits) ([]limits, error) {
	n, err := r.uleb(32)
	if err != nil {
		return nil, err
	}
	for range n {
		l, err := item(r)
		if err != nil {
			return nil, err
		}
		into = append(into, l)
	}
	return into, nil
}

func (s *shape) readImports(r *reader) error {
	n, err := r.uleb(32)
	if err != nil {
		return err
	}
	for range n {
		if err := r.name(); err != nil {
			return err
		}
		if err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // func: type index
			_, err = r.uleb(32)
		case 0x01: // table: reftype, limits
			if _, err = r.byte(); err == nil {
				var l limits
				l, err = r.limits()
				s.tables = append(s.tables, l)
			}
		case 0x02:
			var l limits
			l, err = r.limits()
			s.memories = append(s.memories, l)
		case 0x03: // global: valtype, mutability
			err = r.skip(2)
		case 0x04: // tag: attribute, type index
			if _, err = r.byte(); err == nil {
				_, err = r.uleb(32)
			}
		default:
			return fmt.Errorf("%w: import kind %#x", errMalformed, kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// check refuses a module whose declared minimums exceed limit bytes: any
// linear memory, or any table (at tableEntryBytes per entry).
func (s shape) check(limit uint64) error {
	pages := limit / 65536
	for _, m := range s.memories {
		if m.min > pages {
			return &limitError{fmt.Sprintf("module needs %d memory pages at start, the limit is %d", m.min, pages)}
		}
	}
	for _, t := range s.tables {
		if t.min > limit/tableEntryBytes {
			return &limitError{fmt.Sprintf("module declares a table of %d entries (%d bytes), the memory limit is %d bytes", t.min, t.min*tableEntryBytes, limit)}
		}
	}
	return nil
}

// boundTables returns the module with every table it defines given a
// maximum of at most MaxTableGrowEntries (or its minimum, when larger):
// table.grow past it then returns -1 as the spec says, instead of growing
// the proplet's heap without bound. The module is returned unchanged when
// every table already has such a maximum.
func boundTables(wasm []byte) ([]byte, error) {
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	for _, sec := range secs {
		if sec.id != sectionTable {
			continue
		}
		r := &reader{b: wasm[:sec.end], off: sec.start}
		n, err := r.uleb(32)
		if err != nil {
			return nil, err
		}
		body := appendULEB(nil, n)
		changed := false
		for range n {
			ref, err := r.byte()
			if err != nil {
				return nil, err
			}
			l, err := r.limits()
			if err != nil {
				return nil, err
			}
			bound := max(l.min, MaxTableGrowEntries)
			if !l.hasMax || l.max > bound {
				l.max, l.hasMax, changed = bound, true, true
			}
			body = append(body, ref, 0x01)
			body = appendULEB(body, l.min)
			body = appendULEB(body, l.max)
		}
		if !changed {
			return wasm, nil
		}
		out := make([]byte, 0, len(wasm)+16)
		out = append(out, wasm[:sec.head]...)
		out = append(out, sectionTable)
		out = appendULEB(out, uint64(len(body)))
		out = append(out, body...)
		return append(out, wasm[sec.end:]...), nil
	}
	return wasm, nil
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
