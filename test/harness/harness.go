// Package harness runs the real propeller binary for end-to-end tests and
// load harnesses: a standalone manager and proplets as separate processes,
// over the embedded broker or Mosquitto, driven through the REST API.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/manager/mosquitto"
	"github.com/absmach/propeller/proplet/agent"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/test/apitest"
)

// Binary is the propeller binary the processes run; Main sets it.
var Binary string

// Main builds the binary once for a test package, runs its tests and
// removes the build: call it from TestMain. Extra builds (say a WASM
// module for GOOS=wasip1) run in the same temporary dir; their outputs are
// returned by path.
func Main(m interface{ Run() int }, extra ...Build) {
	dir, err := os.MkdirTemp("", "propeller-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	Binary = filepath.Join(dir, "propeller")
	builds := append([]Build{{Out: &Binary, Pkg: "./cmd/propeller"}}, extra...)
	for _, b := range builds {
		*b.Out = filepath.Join(dir, filepath.Base(b.Pkg)+b.Suffix)
		cmd := exec.Command("go", "build", "-o", *b.Out, b.Pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), b.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.Pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Build is one extra `go build` for Main.
type Build struct {
	Out    *string // receives the output path
	Pkg    string  // package path relative to the repository root
	Suffix string  // appended to the output file name, e.g. ".wasm"
	Env    []string
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// proc is a child process whose output goes to a log file, shown when the
// test fails.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	// Done is closed when the process has exited.
	Done chan struct{}
}

func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(Binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &Proc{name: name, cmd: cmd, log: logPath, Done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.Done)
	}()
	t.Cleanup(func() {
		p.Kill()
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
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.Done
}

// Signal sends sig (SIGSTOP and SIGCONT pause and resume the process).
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// ExitCode is the process's exit status once Done is closed (-1 when a
// signal ended it).
func (p *Proc) ExitCode() int {
	<-p.Done
	return p.cmd.ProcessState.ExitCode()
}

// Pid is the process id, for /proc readings such as RSS.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

func (p *Proc) LogContains(s string) bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte(s))
}

func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// system is one manager with its proplets.
type System struct {
	t        testing.TB
	DataDir  string
	HTTPAddr string
	MQTTAddr string
	// BrokerURL is what proplets dial; external is set for Mosquitto.
	BrokerURL string
	external  *externalBroker
	Manager   *Proc
	// Client is the SDK client; HTTP is the client under it, for requests
	// a test builds itself, and URL the manager's base URL. Both send
	// through apitest.Transport unless WithoutValidation was called, so
	// every request and answer is held to the OpenAPI document.
	Client *rest.Client
	HTTP   *http.Client
	URL    string
	// APIToken is the manager's bearer token.
	APIToken   string
	unverified bool
	mu         sync.Mutex
	Proplets   map[string]*Proc
	tls        *TLSFiles
}

// TLSFiles are PEM files for WithTLS: the manager's certificate and key,
// and the CA the proplets and the client trust.
type TLSFiles struct {
	Cert, Key, CA string
}

type externalBroker struct {
	managerSecret string
	secrets       map[string]string
	start         func() // starts Mosquitto and waits until it listens
	stop          func()
}

func NewSystem(t testing.TB) *System {
	s := &System{t: t, DataDir: t.TempDir(), HTTPAddr: FreeAddr(t), MQTTAddr: FreeAddr(t), Proplets: map[string]*Proc{}}
	s.BrokerURL = "mqtt://" + s.MQTTAddr
	return s
}

// WithTLS makes the manager serve HTTPS and MQTT over TLS only, and the
// proplets and the client verify it with f.CA.
func (s *System) WithTLS(f TLSFiles) *System {
	s.tls = &f
	s.BrokerURL = "mqtts://" + s.MQTTAddr
	return s
}

// WithoutValidation sends requests without checking them against the
// OpenAPI document: for load benchmarks, which measure the manager and
// not the validator.
func (s *System) WithoutValidation() *System {
	s.unverified = true
	return s
}

// withMosquitto starts Mosquitto with per-proplet credentials and an ACL
// equivalent to the embedded broker's, for the given proplet ids.
func (s *System) WithMosquitto(ids ...string) *System {
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
		Listen: s.MQTTAddr, ManagerUser: "propeller-manager", ManagerSecret: ext.managerSecret,
		Proplets: ext.secrets, User: user,
	})
	require.NoError(t, err)
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = logf.Close() })
	var cmd *exec.Cmd
	ext.stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	ext.start = func() {
		cmd = exec.Command("/usr/sbin/mosquitto", "-c", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool {
			c, err := net.DialTimeout("tcp", s.MQTTAddr, time.Second)
			if err != nil {
				return false
			}
			_ = c.Close()
			return true
		}, 10*time.Second, 20*time.Millisecond, "mosquitto did not listen")
	}
	ext.start()
	t.Cleanup(func() { ext.stop() })
	s.external = ext
	return s
}

// RestartBroker kills Mosquitto and starts it again on the same address.
// It runs without persistence, so every session and every message queued
// in one is lost, though their publishers hold the broker's PUBACK.
func (s *System) RestartBroker() {
	require.NotNil(s.t, s.external, "RestartBroker needs WithMosquitto")
	s.external.stop()
	s.external.start()
}

func (s *System) StartManager(extra ...string) {
	t := s.t
	args := []string{"manager", "standalone", "--data-dir", s.DataDir, "--http-addr", s.HTTPAddr,
		"--heartbeat-timeout", "10s", "--log-level", "debug"}
	if s.external != nil {
		args = append(args, "--broker", s.BrokerURL, "--broker-password", s.external.managerSecret)
	} else {
		args = append(args, "--mqtt-addr", s.MQTTAddr)
	}
	scheme := "http"
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 256
	if s.tls != nil {
		args = append(args, "--tls-cert", s.tls.Cert, "--tls-key", s.tls.Key)
		pem, err := os.ReadFile(s.tls.CA)
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(pem))
		scheme, base.TLSClientConfig = "https", &tls.Config{RootCAs: pool}
	}
	var rt http.RoundTripper = base
	if !s.unverified {
		rt = apitest.Transport(t, base)
	}
	s.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: rt}
	s.URL = scheme + "://" + s.HTTPAddr
	s.Manager = Start(t, "manager", append(args, extra...)...)
	var tok []byte
	require.Eventually(t, func() bool {
		tok, _ = os.ReadFile(filepath.Join(s.DataDir, standalone.APITokenFile))
		return len(bytes.TrimSpace(tok)) > 0
	}, 20*time.Second, 10*time.Millisecond)
	s.APIToken = strings.TrimSpace(string(tok))
	var err error
	s.Client, err = rest.NewClient(s.URL, s.APIToken, rest.WithHTTPClient(s.HTTP))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		// Each probe is bounded: one request stuck on a loaded machine
		// must not use up the whole wait.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := s.Client.ListTasks(ctx, rest.TaskFilter{Page: rest.Page{Limit: 1}})
		if ctx.Err() != nil {
			t.Logf("manager probe timed out: %v", err)
		}
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "manager did not serve")
}

func (s *System) Token(id string) string {
	if s.external != nil {
		return s.external.secrets[id]
	}
	b, err := os.ReadFile(filepath.Join(s.DataDir, standalone.JoinTokenFile))
	require.NoError(s.t, err)
	return strings.TrimSpace(string(b))
}

// EnrolledSecret is the credential proplet id was issued when it enrolled
// with the join token, once it stored it under its cache dir: since
// enrollment, the join token no longer logs an enrolled id in.
func (s *System) EnrolledSecret(id string) string {
	s.t.Helper()
	var b []byte
	require.Eventually(s.t, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(s.DataDir, "proplet-"+id, "state", agent.CredentialFile))
		return err == nil
	}, time.Minute, 20*time.Millisecond, "proplet %s did not enroll", id)
	return strings.TrimSpace(string(b))
}

func (s *System) StartProplet(id string, extra ...string) *Proc {
	args := []string{"proplet", "--broker", s.BrokerURL, "--id", id, "--token", s.Token(id),
		"--cache-dir", filepath.Join(s.DataDir, "proplet-"+id), "--heartbeat-interval", "500ms", "--log-level", "debug"}
	if s.tls != nil {
		args = append(args, "--tls-ca", s.tls.CA)
	}
	p := Start(s.t, "proplet-"+id, append(args, extra...)...)
	s.mu.Lock()
	s.Proplets[id] = p
	s.mu.Unlock()
	return p
}

// waitAlive waits until the manager sees every id alive.
func (s *System) WaitAlive(ids ...string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		alive := map[string]bool{}
		for p, err := range s.Client.Proplets(ctx) {
			if err != nil {
				return false
			}
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

func (s *System) Wait(id string) rest.Task {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	task, err := s.Client.WaitTask(ctx, id, 20*time.Millisecond)
	require.NoError(s.t, err, "task %s did not finish: %+v", id, task)
	return task
}

func (s *System) Create(req rest.TaskRequest) rest.Task {
	s.t.Helper()
	task, err := s.Client.CreateTask(context.Background(), req)
	require.NoError(s.t, err)
	return task
}

// ListProplets lists every proplet the manager knows, following pages.
func (s *System) ListProplets(ctx context.Context) ([]rest.Proplet, error) {
	var ps []rest.Proplet
	for p, err := range s.Client.Proplets(ctx) {
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}
