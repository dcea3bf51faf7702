// Package e2e runs the real binary: a standalone manager and proplets as
// separate processes, over the embedded broker or Mosquitto, driven through
// the REST API.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/mosquitto"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/standalone/client"
)

// binary is the propeller binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "propeller-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "propeller")
	build := exec.Command("go", "build", "-o", binary, "./cmd/propeller")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build propeller: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a child process whose output goes to a log file, shown when the
// test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log ---\n%s", name, tail(b, 6000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kill sends SIGKILL: no cleanup, no last words but the broker's will.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
}

func (p *proc) logContains(s string) bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte(s))
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// system is one manager with its proplets.
type system struct {
	t        testing.TB
	dataDir  string
	httpAddr string
	mqttAddr string
	// brokerURL is what proplets dial; external is set for Mosquitto.
	brokerURL string
	external  *externalBroker
	manager   *proc
	client    *client.Client
	mu        sync.Mutex
	proplets  map[string]*proc
}

type externalBroker struct {
	managerSecret string
	secrets       map[string]string
}

func newSystem(t testing.TB) *system {
	s := &system{t: t, dataDir: t.TempDir(), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), proplets: map[string]*proc{}}
	s.brokerURL = "mqtt://" + s.mqttAddr
	return s
}

// withMosquitto starts Mosquitto with per-proplet credentials and an ACL
// equivalent to the embedded broker's, for the given proplet ids.
func (s *system) withMosquitto(ids ...string) *system {
	t := s.t
	ext := &externalBroker{managerSecret: "manager-secret", secrets: map[string]string{}}
	for _, id := range ids {
		ext.secrets[id] = "secret-" + id
	}
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	conf, err := mosquitto.Write(dir, mosquitto.Config{
		Listen: s.mqttAddr, ManagerUser: "propeller-manager", ManagerSecret: ext.managerSecret,
		Proplets: ext.secrets, User: user,
	})
	require.NoError(t, err)
	cmd := exec.Command("/usr/sbin/mosquitto", "-c", conf)
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", s.mqttAddr, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 10*time.Second, 20*time.Millisecond, "mosquitto did not listen")
	s.external = ext
	return s
}

func (s *system) startManager(extra ...string) {
	t := s.t
	args := []string{"manager", "standalone", "--data-dir", s.dataDir, "--http-addr", s.httpAddr,
		"--heartbeat-timeout", "3s", "--log-level", "debug"}
	if s.external != nil {
		args = append(args, "--broker", s.brokerURL, "--broker-password", s.external.managerSecret)
	} else {
		args = append(args, "--mqtt-addr", s.mqttAddr)
	}
	s.manager = start(t, "manager", append(args, extra...)...)
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(s.dataDir, standalone.APITokenFile))
		return err == nil
	}, 20*time.Second, 10*time.Millisecond)
	tok, err := os.ReadFile(filepath.Join(s.dataDir, standalone.APITokenFile))
	require.NoError(t, err)
	s.client, err = client.New("http://"+s.httpAddr, strings.TrimSpace(string(tok)), client.Options{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := s.client.ListTasks(context.Background(), client.ListFilter{Limit: 1})
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "manager did not serve")
}

func (s *system) token(id string) string {
	if s.external != nil {
		return s.external.secrets[id]
	}
	b, err := os.ReadFile(filepath.Join(s.dataDir, standalone.JoinTokenFile))
	require.NoError(s.t, err)
	return strings.TrimSpace(string(b))
}

func (s *system) startProplet(id string, extra ...string) *proc {
	args := []string{"proplet", "--broker", s.brokerURL, "--id", id, "--token", s.token(id),
		"--cache-dir", filepath.Join(s.dataDir, "proplet-"+id), "--heartbeat-interval", "500ms", "--log-level", "debug"}
	p := start(s.t, "proplet-"+id, append(args, extra...)...)
	s.mu.Lock()
	s.proplets[id] = p
	s.mu.Unlock()
	return p
}

// waitAlive waits until the manager sees every id alive.
func (s *system) waitAlive(ids ...string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		ps, err := s.client.Proplets(context.Background())
		if err != nil {
			return false
		}
		alive := map[string]bool{}
		for _, p := range ps {
			alive[p.ID] = p.Alive
		}
		for _, id := range ids {
			if !alive[id] {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "proplets %v not alive", ids)
}

func (s *system) wait(id string) standalone.Task {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	task, err := s.client.WaitTask(ctx, id, 20*time.Millisecond)
	require.NoError(s.t, err, "task %s did not finish: %+v", id, task)
	return task
}

func (s *system) create(req standalone.TaskRequest) standalone.Task {
	s.t.Helper()
	task, err := s.client.CreateTask(context.Background(), req)
	require.NoError(s.t, err)
	return task
}
