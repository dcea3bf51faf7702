package agent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEqualJitter(t *testing.T) {
	d := 4 * time.Second
	require.Equal(t, d, equalJitter(d, 0))
	require.Equal(t, 3*time.Second, equalJitter(d, 0.5))
	require.Equal(t, 2*time.Second, equalJitter(d, 1), "never under half")
	require.Equal(t, 2*time.Second, equalJitter(d, 7), "out-of-range draws are clamped")
	require.Equal(t, d, equalJitter(d, -1))
}
