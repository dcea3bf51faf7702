package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "1000": 1000, "128Mi": 128 << 20, "2Gi": 2 << 30, "64Ki": 64 << 10, "1Ti": 1 << 40} {
		got, err := parseBytes(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"12.5Mi", "-1", "1MB", "Mi", "9999999999Ti", "1 Mi"} {
		_, err := parseBytes(in)
		require.ErrorContains(t, err, `"`+in+`"`, in)
	}
}
