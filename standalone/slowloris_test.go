package standalone_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/standalone"
)

// TestUnfinishedBodyIsCutOff sends a request whose body never comes: the
// server must close the connection once its read timeout passes, instead of
// holding the connection and a handler forever.
func TestUnfinishedBodyIsCutOff(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan standalone.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- standalone.Run(ctx, standalone.Config{
			DataDir: dataDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler), HTTPReadTimeout: 300 * time.Millisecond,
			Ready: func(a standalone.Addrs) { addrs <- a },
		})
	}()
	var a standalone.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	token, err := os.ReadFile(filepath.Join(dataDir, standalone.APITokenFile))
	require.NoError(t, err)

	conn, err := net.Dial("tcp", a.HTTP)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /v1/tasks HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer "+strings.TrimSpace(string(token))+"\r\nContent-Length: 1000000\r\n\r\n{\"name\":")
	require.NoError(t, err)
	// A safety net so a regression fails instead of hanging: far above the
	// 300 ms under test.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Minute)))
	_, err = io.ReadAll(conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server held the connection open: %v", err)
}
