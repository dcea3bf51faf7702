package install_test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/test/harness"
)

var units = []string{"propeller-manager.service", "propeller-proplet.service"}

// The units pass `systemd-analyze verify` (warnings included), with the
// binary they name standing at the path they name, and hold the
// hardening and state directives docs/install.md promises.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "systemd-analyze is missing: run `make deps` (Debian package systemd)")
	verify := func(t *testing.T, edit func(string) string) string {
		dir := t.TempDir()
		var paths []string
		for _, u := range units {
			b := must(os.ReadFile(filepath.Join(repoRoot(), "deploy", "systemd", u)))
			text := strings.ReplaceAll(string(b), "/usr/local/bin/propeller", harness.Binary)
			p := filepath.Join(dir, u)
			require.NoError(t, os.WriteFile(p, []byte(edit(text)), 0o644))
			paths = append(paths, p)
		}
		out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	require.Empty(t, verify(t, func(s string) string { return s }), "systemd-analyze verify")
	require.Contains(t, verify(t, func(s string) string { return strings.Replace(s, "ProtectSystem=", "ProtectSytem=", 1) }),
		"Unknown key", "a misspelt directive is caught")

	for _, u := range units {
		d := unitDirectives(t, filepath.Join(repoRoot(), "deploy", "systemd", u))
		for k, v := range map[string]string{
			"Type": "notify", "DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
			"Restart": "on-failure", "PrivateTmp": "yes", "ProtectHome": "yes",
		} {
			require.Equal(t, []string{v}, d[k], "%s: %s", u, k)
		}
		require.Len(t, d["StateDirectory"], 1, u)
		require.Len(t, d["EnvironmentFile"], 1, u)
		require.Equal(t, []string{"multi-user.target"}, d["WantedBy"], u)
	}
	proplet := unitDirectives(t, filepath.Join(repoRoot(), "deploy", "systemd", "propeller-proplet.service"))
	require.Equal(t, []string{"propeller-proplet"}, proplet["StateDirectory"], "the proplet's default --cache-dir ($STATE_DIRECTORY)")
	require.Empty(t, proplet["MemoryDenyWriteExecute"], "wazero compiles modules to machine code")
	require.Equal(t, []string{"/usr/local/bin/propeller proplet"}, proplet["ExecStart"], "flags come from the environment file")
}

// unitDirectives reads key=value lines of a unit, all sections together.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			d[k] = append(d[k], v)
		}
	}
	require.NoError(t, sc.Err())
	return d
}

// notifySocket listens where $NOTIFY_SOCKET points, as systemd does for a
// Type=notify unit, and delivers each state sent.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	states := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			states <- string(buf[:n])
		}
	}()
	return path, states
}

// stoppedState waits for the state p sent before it exited.
func stoppedState(t *testing.T, p *proc, states <-chan string, want string) {
	t.Helper()
	<-p.done
	select {
	case s := <-states:
		require.Equal(t, want, s)
	case <-time.After(time.Minute):
		t.Fatalf("%s exited without sending %s", p.name, want)
	}
}

func waitState(t *testing.T, p *proc, states <-chan string, want string) {
	t.Helper()
	select {
	case s := <-states:
		require.Equal(t, want, s)
	case <-p.done:
		t.Fatalf("%s exited before it sent %s: %v", p.name, want, p.err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s never sent %s", p.name, want)
	}
}

// Under Type=notify the manager says READY=1 once it serves and
// STOPPING=1 on SIGTERM; the proplet once it is set up (its broker may
// not be reachable yet).
func TestSystemdNotify(t *testing.T) {
	sock, states := notifySocket(t)
	env := []string{"NOTIFY_SOCKET=" + sock, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	dataDir := t.TempDir()
	mqtt := freeAddr(t)
	m := start(t, "manager", env, "manager", "standalone", "--data-dir", dataDir, "--http-addr", freeAddr(t), "--mqtt-addr", mqtt)
	waitState(t, m, states, "READY=1")
	token := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(dataDir, "join-token")))))

	p := start(t, "proplet", append(env, "STATE_DIRECTORY="+t.TempDir()), "proplet", "--broker", "mqtt://"+mqtt, "--token", token, "--id", "unit-1")
	waitState(t, p, states, "READY=1")
	p.stop()
	stoppedState(t, p, states, "STOPPING=1")
	m.stop()
	stoppedState(t, m, states, "STOPPING=1")
}

// A second proplet on a cache dir a live one holds refuses to start and
// names the dir; once the first is gone the dir is free.
func TestSecondPropletOnDirRefused(t *testing.T) {
	dir := t.TempDir()
	sock, states := notifySocket(t)
	env := []string{"NOTIFY_SOCKET=" + sock, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin", "STATE_DIRECTORY=" + dir}
	args := []string{"proplet", "--broker", "mqtt://" + freeAddr(t), "--token", "t", "--id", "p1"}
	first := start(t, "first", env, args...)
	waitState(t, first, states, "READY=1")

	second := start(t, "second", env, args...)
	<-second.done
	require.Error(t, second.err)
	require.Contains(t, second.output(), "cache dir "+dir+" is in use by another proplet")

	first.stop()
	stoppedState(t, first, states, "STOPPING=1")
	third := start(t, "third", env, args...)
	waitState(t, third, states, "READY=1")
}
