// Package flstandalone runs federated learning end to end on real
// processes: the propeller binary as a standalone manager (embedded broker,
// bbolt) and three proplets training examples/fl, driven over REST.
package flstandalone

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/test/harness"
)

// module is examples/fl built for wasip1.
var module []byte

func TestMain(m *testing.M) {
	var wasm string
	harness.Main(&moduleLoader{M: m, path: &wasm}, harness.Build{Out: &wasm, Pkg: "./examples/fl", Suffix: ".wasm", Env: []string{"GOOS=wasip1", "GOARCH=wasm"}})
}

// moduleLoader reads the built module before the tests run.
type moduleLoader struct {
	*testing.M
	path *string
}

func (l *moduleLoader) Run() int {
	var err error
	if module, err = os.ReadFile(*l.path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return l.M.Run()
}

// system is a manager with proplets, plus the FL helpers below.
type system struct {
	*harness.System
	t *testing.T
}

func newSystem(t *testing.T, proplets ...string) *system {
	s := &system{System: harness.NewSystem(t), t: t}
	s.startManager()
	for _, id := range proplets {
		s.StartProplet(id)
	}
	s.WaitAlive(proplets...)
	return s
}

func (s *system) startManager() { s.StartManager() }

// call does one REST request; it returns 0 when the manager is down.
func (s *system) call(method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.APIToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.HTTP.Do(req)
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

func (s *system) create(spec map[string]any) rest.FederatedJob {
	code, body := s.call(http.MethodPost, "/v1/federated-jobs", spec)
	require.Equal(s.t, http.StatusCreated, code, string(body))
	var j rest.FederatedJob
	require.NoError(s.t, json.Unmarshal(body, &j))
	return j
}

func (s *system) job(id string) (rest.FederatedJob, bool) {
	code, body := s.call(http.MethodGet, "/v1/federated-jobs/"+id, nil)
	if code != http.StatusOK {
		return rest.FederatedJob{}, false
	}
	var j rest.FederatedJob
	require.NoError(s.t, json.Unmarshal(body, &j))
	return j, true
}

// waitJob polls until cond holds for the job.
func (s *system) waitJob(id string, timeout time.Duration, cond func(rest.FederatedJob) bool, msg string) rest.FederatedJob {
	s.t.Helper()
	return s.waitJobEvery(id, timeout, 200*time.Millisecond, cond, msg)
}

func (s *system) waitJobEvery(id string, timeout, every time.Duration, cond func(rest.FederatedJob) bool, msg string) rest.FederatedJob {
	s.t.Helper()
	var last rest.FederatedJob
	require.Eventually(s.t, func() bool {
		j, ok := s.job(id)
		if ok {
			last = j
		}
		return ok && cond(j)
	}, timeout, every, "%s; last status: %+v", msg, &last.Status)
	return last
}

func (s *system) waitDone(id string) rest.FederatedJob {
	return s.waitJob(id, 6*time.Minute, func(j rest.FederatedJob) bool { return rest.JobTerminal(j.Status.Phase) }, "job did not finish")
}

// accuracy downloads a model and scores it on the held-out split.
func (s *system) accuracy(digest string) float64 {
	code, body := s.call(http.MethodGet, "/v1/models/"+digest, nil)
	require.Equal(s.t, http.StatusOK, code)
	acc, err := digits.HeldOutAccuracy(body)
	require.NoError(s.t, err)
	return acc
}
