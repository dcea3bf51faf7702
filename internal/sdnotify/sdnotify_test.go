package sdnotify

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()

	require.NoError(t, Notify(path, Ready))
	buf := make([]byte, 64)
	n, err := ln.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "READY=1", string(buf[:n]))

	require.NoError(t, Notify("", Ready), "no socket: not under systemd")
	require.ErrorContains(t, Notify(filepath.Join(t.TempDir(), "absent"), Ready), "sd_notify")
}
