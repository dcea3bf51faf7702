package mosquitto_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/mosquitto"
)

// The generated files are exercised against a real Mosquitto by the
// broker and link tests (test/mqtttest); this checks the shape.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path, err := mosquitto.Write(dir, mosquitto.Config{
		Listen: "127.0.0.1:1883", ManagerUser: "m", ManagerSecret: "s",
		Proplets: map[string]string{"p1": "x"},
	})
	require.NoError(t, err)
	conf, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(conf), "listener 1883 127.0.0.1\n")
	require.Contains(t, string(conf), "allow_anonymous false\n")
	pw, err := os.ReadFile(filepath.Join(dir, mosquitto.PasswordFile))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(pw)), "\n")
	require.Len(t, lines, 2)
	require.True(t, strings.HasPrefix(lines[1], "p1:$7$101$"))

	cases := []mosquitto.Config{
		{Listen: "nohostport", ManagerUser: "m", ManagerSecret: "s"},
		{Listen: "127.0.0.1:1", ManagerUser: "", ManagerSecret: "s"},
		{Listen: "127.0.0.1:1", ManagerUser: "m", ManagerSecret: "s", Proplets: map[string]string{"bad/id": "x"}},
	}
	for _, c := range cases {
		_, err := mosquitto.Write(t.TempDir(), c)
		require.Error(t, err)
	}
}

func TestACL(t *testing.T) {
	acl := string(mosquitto.ACL("", "mgr"))
	require.Contains(t, acl, "pattern read propeller/v1/proplets/%u/commands\n")
	require.Contains(t, acl, "pattern write propeller/v1/proplets/%u/events\n")
	require.NotContains(t, acl, "pattern write propeller/v1/proplets/%u/commands")
	require.True(t, strings.HasSuffix(acl, "user mgr\ntopic readwrite #\n"))
}
