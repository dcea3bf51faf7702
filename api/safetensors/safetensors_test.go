package safetensors_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/safetensors"
)

func TestRoundTripF32(t *testing.T) {
	vals := map[string][]float32{
		"weight": {1, 2, 3, 4, 5, 6},
		"bias":   {-1.5, float32(math.Inf(1))},
		"scalar": {7},
	}
	shapes := map[string][]int{"weight": {2, 3}, "bias": {2}, "scalar": {}}
	b, err := safetensors.EncodeF32(vals, shapes, map[string]string{"round": "3"})
	require.NoError(t, err)

	hlen := binary.LittleEndian.Uint64(b)
	require.Zero(t, (8+hlen)%8, "data buffer must start 8-byte aligned")

	got, gotShapes, err := safetensors.DecodeF32(b)
	require.NoError(t, err)
	require.Equal(t, vals, got)
	require.Equal(t, shapes, gotShapes)

	f, err := safetensors.Decode(b)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"round": "3"}, f.Metadata)
	require.Equal(t, []string{"bias", "scalar", "weight"}, f.Names())

	again, err := safetensors.EncodeF32(vals, shapes, map[string]string{"round": "3"})
	require.NoError(t, err)
	require.Equal(t, b, again, "encoding must be deterministic so digests are stable")
}

// A file written by the reference Python implementation
// (safetensors.torch.save_file({"a": torch.tensor([1.0, 2.0])})), byte for
// byte, so compatibility does not rest on our own encoder only.
func TestDecodeReferenceBytes(t *testing.T) {
	hdr := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(1))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(2))
	vals, shapes, err := safetensors.DecodeF32(b)
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2}, vals["a"])
	require.Equal(t, []int{2}, shapes["a"])
}

func TestDecodeRejects(t *testing.T) {
	file := func(hdr string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		b = append(b, hdr...)
		return append(b, make([]byte, data)...)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short", []byte{1, 2, 3}},
		{"header past end", binary.LittleEndian.AppendUint64(nil, 100)},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, math.MaxUint64)},
		{"not json", file("xx", 0)},
		{"json array", file("[]", 0)},
		{"unknown dtype", file(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, 4)},
		{"size mismatch", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4)},
		{"offsets past end", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 2)},
		{"reversed offsets", file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, 4)},
		{"negative dim", file(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, 0)},
		{"gap", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2)},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3)},
		{"trailing bytes", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2)},
		{"unknown field", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, 1)},
		{"bad metadata", file(`{"__metadata__":{"k":1}}`, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := safetensors.Decode(tc.in)
			require.ErrorIs(t, err, safetensors.ErrFormat)
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		f    safetensors.File
	}{
		{"size mismatch", safetensors.File{Tensors: map[string]safetensors.Tensor{"a": {DType: safetensors.F32, Shape: []int{3}, Data: make([]byte, 8)}}}},
		{"unknown dtype", safetensors.File{Tensors: map[string]safetensors.Tensor{"a": {DType: "X", Shape: []int{1}, Data: make([]byte, 1)}}}},
		{"reserved name", safetensors.File{Tensors: map[string]safetensors.Tensor{"__metadata__": {DType: safetensors.U8, Shape: []int{1}, Data: make([]byte, 1)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := safetensors.Encode(tc.f)
			require.Error(t, err)
		})
	}
	_, err := safetensors.FromF32([]int{2, 2}, []float32{1})
	require.Error(t, err)
	_, err = safetensors.Tensor{DType: safetensors.U8, Shape: []int{1}, Data: []byte{1}}.F32()
	require.Error(t, err)
}

func FuzzDecode(f *testing.F) {
	seed, _ := safetensors.EncodeF32(map[string][]float32{"w": {1, 2}, "b": {3}}, nil, map[string]string{"k": "v"})
	f.Add(seed)
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := safetensors.Decode(b)
		if err != nil {
			require.ErrorIs(t, err, safetensors.ErrFormat)
			return
		}
		// Whatever decodes must re-encode and decode to the same tensors.
		out, err := safetensors.Encode(file)
		require.NoError(t, err)
		again, err := safetensors.Decode(out)
		require.NoError(t, err)
		require.Equal(t, len(file.Tensors), len(again.Tensors))
		for name, tt := range file.Tensors {
			require.Equal(t, tt.DType, again.Tensors[name].DType)
			require.Equal(t, tt.Data, again.Tensors[name].Data)
			require.Equal(t, tt.NumElements(), again.Tensors[name].NumElements())
		}
	})
}
