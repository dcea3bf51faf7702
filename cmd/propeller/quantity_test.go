package main

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseBytes: memory sizes follow the CRD's resource.Quantity rules,
// decimal and binary suffixes, fractions and exponents, rounded up to a
// whole byte.
func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"0", 0},
		{"1000", 1000},
		{"128M", 128_000_000},
		{"128Mi", 128 << 20},
		{"1.5Gi", 3 << 29},
		{"12.5Mi", 25 << 19},
		{"64Ki", 64 << 10},
		{"1k", 1000},
		{"1Ti", 1 << 40},
		{"2G", 2_000_000_000},
		{"1e3", 1000},
		{"129e6", 129_000_000},
		{"1.5", 2},
		{"0.1Ki", 103},
		{"100m", 1},
		{"7Ei", 7 << 60},
		// resource.ParseQuantity clamps binary sizes at int64, so does the CRD.
		{"8Ei", math.MaxInt64},
		{".5", 1},
		{"+1", 1},
	} {
		got, err := parseBytes(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, in := range []string{"-1", "-1Mi", "1MB", "Mi", "1 Mi", "1K", "one", "9223372036854775808", "1e30", ".", "1.5.5"} {
		_, err := parseBytes(in)
		require.ErrorContains(t, err, `"`+in+`"`, in)
	}
}

// TestQuantityFlags: --memory, --cache-bytes and --max-upload-bytes take
// quantities, and a bad one is a usage error naming the flag.
func TestQuantityFlags(t *testing.T) {
	_, s, _, _, err := execute(t, "manager", "standalone", "--max-upload-bytes", "1.5Mi")
	require.NoError(t, err)
	require.EqualValues(t, 3<<19, s.maxUploadBytes)

	_, _, _, p, err := execute(t, "proplet", "--cache-bytes", "1G")
	require.NoError(t, err)
	require.EqualValues(t, 1_000_000_000, p.cacheBytes)

	t.Setenv("PROPELLER_CACHE_BYTES", "64Mi")
	_, _, _, p, err = execute(t, "proplet")
	require.NoError(t, err)
	require.EqualValues(t, 64<<20, p.cacheBytes)

	code, _, stderr := runCLI(t, "task", "create", "x", "--image", "oci://r/m:v1", "--memory", "12 Mi")
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, `invalid argument "12 Mi" for "--memory"`)
}
