// Package flstandalone runs federated learning end to end on real
// processes: the propeller binary as a standalone manager (embedded broker,
// bbolt) and three proplets training examples/fl, driven over REST.
package flstandalone

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/standalone"
)

var (
	binary string
	module []byte // examples/fl built for wasip1
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "propeller-fl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "propeller")
	wasm := filepath.Join(dir, "fl.wasm")
	for _, b := range []*exec.Cmd{
		exec.Command("go", "build", "-o", binary, "./cmd/propeller"),
		exec.Command("go", "build", "-o", wasm, "./examples/fl"),
	} {
		b.Dir = "../.."
		if strings.HasSuffix(b.Args[len(b.Args)-1], "fl") {
			b.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		}
		if out, err := b.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%v: %v\n%s", b.Args, err, out)
			os.Exit(1)
		}
	}
	if module, err = os.ReadFile(wasm); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 5000 {
				b = b[len(b)-5000:]
			}
			t.Logf("--- %s log ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

type system struct {
	t                  *testing.T
	dataDir            string
	httpAddr, mqttAddr string
	manager            *proc
	token              string
	proplets           map[string]*proc
}

func newSystem(t *testing.T, proplets ...string) *system {
	s := &system{t: t, dataDir: t.TempDir(), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), proplets: map[string]*proc{}}
	s.startManager()
	for _, id := range proplets {
		s.startProplet(id)
	}
	s.waitAlive(proplets...)
	return s
}

func (s *system) startManager() {
	s.manager = start(s.t, "manager", "manager", "standalone", "--data-dir", s.dataDir, "--http-addr", s.httpAddr,
		"--mqtt-addr", s.mqttAddr, "--heartbeat-timeout", "3s")
	require.Eventually(s.t, func() bool {
		b, err := os.ReadFile(filepath.Join(s.dataDir, standalone.APITokenFile))
		s.token = strings.TrimSpace(string(b))
		return err == nil && s.token != ""
	}, 30*time.Second, 20*time.Millisecond)
	require.Eventually(s.t, func() bool {
		code, _ := s.call(http.MethodGet, "/federated-jobs", nil)
		return code == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "manager did not serve")
}

func (s *system) joinToken() string {
	b, err := os.ReadFile(filepath.Join(s.dataDir, standalone.JoinTokenFile))
	require.NoError(s.t, err)
	return strings.TrimSpace(string(b))
}

func (s *system) startProplet(id string) {
	s.proplets[id] = start(s.t, "proplet-"+id, "proplet", "--broker", "mqtt://"+s.mqttAddr, "--id", id,
		"--token", s.joinToken(), "--cache-dir", filepath.Join(s.dataDir, "proplet-"+id), "--heartbeat-interval", "500ms")
}

func (s *system) waitAlive(ids ...string) {
	require.Eventually(s.t, func() bool {
		code, body := s.call(http.MethodGet, "/proplets", nil)
		if code != http.StatusOK {
			return false
		}
		var list standalone.PropletList
		if json.Unmarshal(body, &list) != nil {
			return false
		}
		alive := map[string]bool{}
		for _, p := range list.Proplets {
			alive[p.ID] = p.Alive
		}
		for _, id := range ids {
			if !alive[id] {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "proplets %v not alive", ids)
}

// call does one REST request; it returns 0 when the manager is down.
func (s *system) call(method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.httpAddr+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// jobSpec is the job every test runs, with 3 explicit participants; mod
// adjusts it.
func jobSpec(t *testing.T, rounds int, mod func(map[string]any)) map[string]any {
	var zero digits.Model
	model, err := zero.Encode(nil)
	require.NoError(t, err)
	spec := map[string]any{
		"experimentId":   t.Name(),
		"initialModel":   model,
		"taskWasm":       module,
		"participants":   []map[string]any{{"propletId": "p1"}, {"propletId": "p2"}, {"propletId": "p3"}},
		"timeoutSeconds": 240,
		"rounds":         map[string]any{"total": rounds},
		"aggregator":     map[string]any{"algorithm": "fedavg"},
		"hyperparams":    map[string]any{"lr": lr, "epochs": epochs, "batch_size": batch},
	}
	if mod != nil {
		mod(spec)
	}
	return spec
}

// The recipe clients and the centralised baseline share.
const (
	lr     = 0.5
	epochs = 2
	batch  = 16
)

func (s *system) create(spec map[string]any) fl.Job {
	code, body := s.call(http.MethodPost, "/federated-jobs", spec)
	require.Equal(s.t, http.StatusCreated, code, string(body))
	var j fl.Job
	require.NoError(s.t, json.Unmarshal(body, &j))
	return j
}

func (s *system) job(id string) (fl.Job, bool) {
	code, body := s.call(http.MethodGet, "/federated-jobs/"+id, nil)
	if code != http.StatusOK {
		return fl.Job{}, false
	}
	var j fl.Job
	require.NoError(s.t, json.Unmarshal(body, &j))
	return j, true
}

// waitJob polls until cond holds for the job.
func (s *system) waitJob(id string, timeout time.Duration, cond func(fl.Job) bool, msg string) fl.Job {
	s.t.Helper()
	return s.waitJobEvery(id, timeout, 200*time.Millisecond, cond, msg)
}

func (s *system) waitJobEvery(id string, timeout, every time.Duration, cond func(fl.Job) bool, msg string) fl.Job {
	s.t.Helper()
	var last fl.Job
	require.Eventually(s.t, func() bool {
		j, ok := s.job(id)
		if ok {
			last = j
		}
		return ok && cond(j)
	}, timeout, every, "%s; last status: %+v", msg, &last.Status)
	return last
}

func (s *system) waitDone(id string) fl.Job {
	return s.waitJob(id, 6*time.Minute, func(j fl.Job) bool { return j.Status.Phase.Terminal() }, "job did not finish")
}

// accuracy downloads a model and scores it on the held-out split.
func (s *system) accuracy(digest string) float64 {
	code, body := s.call(http.MethodGet, "/models/"+digest, nil)
	require.Equal(s.t, http.StatusOK, code)
	m, err := digits.Decode(body)
	require.NoError(s.t, err)
	all, err := digits.Load()
	require.NoError(s.t, err)
	_, test := digits.Split(all)
	_, acc := m.Evaluate(test)
	return acc
}
