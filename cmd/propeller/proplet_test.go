package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Two devices left on defaults must neither share an id (they would take
// each other's MQTT session) nor keep their outbox where a reboot wipes it.
func TestPropletDefaults(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	t.Setenv("STATE_DIRECTORY", "/var/lib/propeller-proplet")
	_, _, _, p, err := execute(t, "proplet")
	require.NoError(t, err)
	require.Equal(t, host, p.id, "default id is the host name")
	require.Equal(t, "/var/lib/propeller-proplet", p.cacheDir, "systemd's StateDirectory=")

	t.Setenv("PROPELLER_CACHE_DIR", "/srv/p")
	_, _, _, p, err = execute(t, "proplet")
	require.NoError(t, err)
	require.Equal(t, "/srv/p", p.cacheDir, "the environment wins over the default")
}

func TestPropletStateDir(t *testing.T) {
	home := "/home/u"
	tests := []struct {
		name string
		euid int
		env  map[string]string
		want string
	}{
		{"systemd StateDirectory", 1000, map[string]string{"STATE_DIRECTORY": "/var/lib/propeller-proplet"}, "/var/lib/propeller-proplet"},
		{"several StateDirectory entries", 0, map[string]string{"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"},
		{"root", 0, nil, "/var/lib/propeller"},
		{"user", 1000, map[string]string{"HOME": home}, filepath.Join(home, ".local", "state", "propeller")},
		{"user with XDG_STATE_HOME", 1000, map[string]string{"HOME": home, "XDG_STATE_HOME": "/x/state"}, "/x/state/propeller"},
		{"relative XDG_STATE_HOME is ignored", 1000, map[string]string{"HOME": home, "XDG_STATE_HOME": "state"}, filepath.Join(home, ".local", "state", "propeller")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("STATE_DIRECTORY", "")
			t.Setenv("XDG_STATE_HOME", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			require.Equal(t, tc.want, propletStateDir(tc.euid))
		})
	}
}
