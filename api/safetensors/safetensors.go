// Package safetensors reads and writes the safetensors tensor format, the
// one model format Propeller uses for federated learning: the manager's
// aggregators and checkpoints, and the WASM training clients (it uses the
// standard library only, so it compiles for GOOS=wasip1).
//
// # Format
//
// A file is an 8-byte little-endian header length N, N bytes of JSON, then
// the data buffer. The JSON maps each tensor name to
//
//	{"dtype": "F32", "shape": [10, 64], "data_offsets": [begin, end]}
//
// with offsets relative to the start of the data buffer, plus an optional
// "__metadata__" object of string values. Tensor data is little-endian and
// row-major; tensors tile the buffer without gaps or overlaps. The header
// may be padded with spaces so the buffer starts 8-byte aligned; Encode
// does so.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// DType is a tensor element type, spelled as in the safetensors spec.
type DType string

// Element types. Decode accepts all of them; F32 has typed accessors
// because that is what the aggregators work on.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// Limits that keep a hostile file from making Decode allocate wildly: a
// header is small JSON, and a shape is a handful of dimensions.
const (
	MaxHeaderSize = 100 << 20
	maxRank       = 16
)

// ErrFormat wraps every problem with the bytes being decoded.
var ErrFormat = errors.New("safetensors: malformed file")

// Tensor is one named array. Data holds the raw little-endian bytes.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// FromF32 builds an F32 tensor; len(vals) must equal the shape's product.
func FromF32(shape []int, vals []float32) (Tensor, error) {
	t := Tensor{DType: F32, Shape: slices.Clone(shape)}
	if n := t.NumElements(); n != len(vals) {
		return Tensor{}, fmt.Errorf("safetensors: shape %v holds %d values, got %d", shape, n, len(vals))
	}
	t.Data = make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
	}
	return t, nil
}

// F32 returns the values of an F32 tensor.
func (t Tensor) F32() ([]float32, error) {
	if t.DType != F32 {
		return nil, fmt.Errorf("safetensors: tensor is %s, not F32", t.DType)
	}
	if len(t.Data)%4 != 0 {
		return nil, fmt.Errorf("safetensors: F32 data of %d bytes: %w", len(t.Data), ErrFormat)
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// File is a decoded safetensors file.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// Names returns the tensor names, sorted.
func (f File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type entry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

const metadataKey = "__metadata__"

// Encode writes tensors (in name order, so equal input gives equal bytes and
// so equal digests) and optional metadata.
func Encode(f File) ([]byte, error) {
	header := make(map[string]any, len(f.Tensors)+1)
	if len(f.Metadata) > 0 {
		header[metadataKey] = f.Metadata
	}
	names := f.Names()
	var off int64
	for _, name := range names {
		t := f.Tensors[name]
		if name == "" || name == metadataKey {
			return nil, fmt.Errorf("safetensors: invalid tensor name %q", name)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[name] = entry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	// Pad so the data buffer starts 8-byte aligned, as the reference
	// implementation does; readers may then map it in place.
	if pad := (8 - len(hdr)%8) % 8; pad > 0 {
		hdr = append(hdr, bytes.Repeat([]byte{' '}, pad)...)
	}
	out := make([]byte, 8, 8+int64(len(hdr))+off)
	binary.LittleEndian.PutUint64(out, uint64(len(hdr)))
	out = append(out, hdr...)
	for _, name := range names {
		out = append(out, f.Tensors[name].Data...)
	}
	return out, nil
}

func (t Tensor) check() error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("unknown dtype %q", t.DType)
	}
	if len(t.Shape) > maxRank {
		return fmt.Errorf("rank %d above %d", len(t.Shape), maxRank)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
		n *= int64(d)
		if n > math.MaxInt32*8 {
			return fmt.Errorf("shape %v too large", t.Shape)
		}
	}
	if n*int64(size) != int64(len(t.Data)) {
		return fmt.Errorf("shape %v of %s needs %d bytes, data has %d", t.Shape, t.DType, n*int64(size), len(t.Data))
	}
	return nil
}

// Decode parses and validates a file. Tensor data aliases b.
func Decode(b []byte) (File, error) {
	bad := func(format string, args ...any) (File, error) {
		return File{}, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrFormat)
	}
	if len(b) < 8 {
		return bad("%d bytes is shorter than the header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeaderSize || n > uint64(len(b)-8) {
		return bad("header length %d does not fit in %d bytes", n, len(b))
	}
	hdr := b[8 : 8+n]
	if len(hdr) == 0 || hdr[0] != '{' {
		return bad("header is not a JSON object")
	}
	data := b[8+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return bad("header: %v", err)
	}
	f := File{Tensors: make(map[string]Tensor, len(raw))}
	type span struct {
		begin, end int64
		name       string
	}
	spans := make([]span, 0, len(raw))
	for name, v := range raw {
		if name == metadataKey {
			if err := json.Unmarshal(v, &f.Metadata); err != nil {
				return bad("metadata must map strings to strings: %v", err)
			}
			continue
		}
		var e entry
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return bad("tensor %q: %v", name, err)
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > int64(len(data)) {
			return bad("tensor %q: offsets [%d, %d] outside a %d-byte buffer", name, begin, end, len(data))
		}
		t := Tensor{DType: e.DType, Shape: e.Shape, Data: data[begin:end:end]}
		if err := t.check(); err != nil {
			return bad("tensor %q: %v", name, err)
		}
		f.Tensors[name] = t
		spans = append(spans, span{begin, end, name})
	}
	// Tensors must tile the buffer exactly: no gap could hide data, no
	// overlap could make two tensors share bytes.
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var next int64
	for _, s := range spans {
		if s.begin != next {
			return bad("tensor %q starts at %d, expected %d (gap or overlap)", s.name, s.begin, next)
		}
		next = s.end
	}
	if next != int64(len(data)) {
		return bad("tensors cover %d of %d data bytes", next, len(data))
	}
	return f, nil
}

// EncodeF32 is Encode for F32 tensors given as values and shapes.
func EncodeF32(vals map[string][]float32, shapes map[string][]int, metadata map[string]string) ([]byte, error) {
	f := File{Tensors: make(map[string]Tensor, len(vals)), Metadata: metadata}
	for name, v := range vals {
		shape, ok := shapes[name]
		if !ok {
			shape = []int{len(v)}
		}
		t, err := FromF32(shape, v)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		f.Tensors[name] = t
	}
	return Encode(f)
}

// DecodeF32 decodes a file whose tensors are all F32, returning values and
// shapes by name.
func DecodeF32(b []byte) (vals map[string][]float32, shapes map[string][]int, err error) {
	f, err := Decode(b)
	if err != nil {
		return nil, nil, err
	}
	vals = make(map[string][]float32, len(f.Tensors))
	shapes = make(map[string][]int, len(f.Tensors))
	for name, t := range f.Tensors {
		v, err := t.F32()
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		vals[name] = v
		shapes[name] = t.Shape
	}
	return vals, shapes, nil
}
