// Package sdnotify tells systemd how a service is doing, the sd_notify(3)
// protocol without libsystemd: one datagram per state change to the unix
// socket systemd names in $NOTIFY_SOCKET (units with Type=notify wait for
// READY=1 before they count as started).
package sdnotify

import (
	"fmt"
	"net"
)

// The states propeller sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to socket, the value of $NOTIFY_SOCKET: a path, or
// "@name" for Linux's abstract namespace (Go's net package maps the "@").
// Without a socket (not started by systemd, or a unit type that does not
// listen) it does nothing.
func Notify(socket, state string) error {
	if socket == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	return nil
}
