package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/apitest"
	"github.com/absmach/propeller/test/harness"
)

// primes below N, as examples/cpu prints them.
const (
	cpuArg    = "3000000"
	cpuPrimes = "216816\n"
)

// TestCommandAndFunction runs a command module and an exported function
// through two proplets, over the embedded broker and over Mosquitto.
func TestCommandAndFunction(t *testing.T) {
	hello := exampletest.Build(t, "hello")
	add := exampletest.Build(t, "add")
	arith := exampletest.Build(t, "arith")
	for _, broker := range []string{"embedded", "mosquitto"} {
		t.Run(broker, func(t *testing.T) {
			s := harness.NewSystem(t)
			if broker == "mosquitto" {
				s.WithMosquitto("edge-a", "edge-b")
			}
			s.StartManager()
			s.StartProplet("edge-a", "--labels", "zone=a")
			s.StartProplet("edge-b", "--labels", "zone=b")
			s.WaitAlive("edge-a", "edge-b")

			cmd := s.Create(rest.TaskRequest{Name: "hello", File: hello, CLIArgs: []string{"edge"}, Env: map[string]string{"GREETING": "hi"}, Selector: map[string]string{"zone": "b"}})
			fn := s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{40, 2}})
			fib := s.Create(rest.TaskRequest{Name: "fib", File: arith, Function: "fib", Inputs: []float64{30}, PropletID: "edge-a"})

			got := s.Wait(cmd.ID)
			require.Equal(t, "Succeeded", got.Phase, got.Message)
			require.Equal(t, "edge-b", got.PropletID)
			require.Contains(t, got.Stdout, "hi from wasm")
			require.Contains(t, got.Stdout, "arg[0]=edge")
			require.NotNil(t, got.ExitCode)
			require.Equal(t, 0, *got.ExitCode)

			got = s.Wait(fn.ID)
			require.Equal(t, "Succeeded", got.Phase, got.Message)
			require.Equal(t, []float64{42}, got.Results)

			got = s.Wait(fib.ID)
			require.Equal(t, "Succeeded", got.Phase, got.Message)
			require.Equal(t, "edge-a", got.PropletID)
			require.Equal(t, []float64{832040}, got.Results)

			// Prometheus metrics, unauthenticated: tasks by phase from the
			// store's counters, live proplets.
			resp, err := s.HTTP.Get(s.URL + "/metrics")
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Contains(t, string(body), `propeller_tasks{phase="Succeeded"} 3`)
			require.Contains(t, string(body), "propeller_proplets_alive 2")
		})
	}
}

// TestMemoryPlacement: real proplets offering a task 64 MiB and 256 MiB
// (--memory-pages); tasks asking for more than the small one offers run on
// the large one, and one asking for more than either waits, saying why.
func TestMemoryPlacement(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("small", "--memory-pages", "1024")
	s.StartProplet("large", "--memory-pages", "4096")
	s.WaitAlive("small", "large")

	var ids []string
	for _, req := range []rest.TaskRequest{
		{Name: "bytes", File: add, Function: "add", Inputs: []float64{1, 2}, MemoryBytes: 128 << 20},
		{Name: "pages", File: add, Function: "add", Inputs: []float64{3, 4}, MemoryPages: 2048},
	} {
		ids = append(ids, s.Create(req).ID)
	}
	for _, id := range ids {
		got := s.Wait(id)
		require.Equal(t, "Succeeded", got.Phase, "%s %s", got.Reason, got.Message)
		require.Equal(t, "large", got.PropletID)
	}

	huge := s.Create(rest.TaskRequest{Name: "huge", File: add, Function: "add", Inputs: []float64{1, 1}, MemoryBytes: 1 << 30})
	require.Eventually(t, func() bool {
		got, err := s.Client.GetTask(context.Background(), huge.ID)
		return err == nil && got.Phase == "Pending" && got.Reason == "Unschedulable" &&
			got.Message == "no live proplet offers a task 1024 MiB (the most offered: 256 MiB)"
	}, 30*time.Second, 20*time.Millisecond)
}

// TestTLS runs a task with TLS everywhere: the REST API over HTTPS, the
// proplet on MQTT over TLS verifying the manager with a CA file.
func TestTLS(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t).WithTLS(harness.SelfSignedTLS(t))
	s.StartManager()
	s.StartProplet("edge-tls")
	s.WaitAlive("edge-tls")
	got := s.Wait(s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{20, 22}}).ID)
	require.Equal(t, "Succeeded", got.Phase, got.Message)
	require.Equal(t, []float64{42}, got.Results)
}

// TestManagerKilledMidRun: SIGKILL the manager while tasks run, start it
// again on the same data dir; every accepted task reaches exactly one
// terminal state and no result is lost.
func TestManagerKilledMidRun(t *testing.T) {
	cpu := exampletest.Build(t, "cpu")
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("edge-a", "--slots", "2")
	s.StartProplet("edge-b", "--slots", "2")
	s.WaitAlive("edge-a", "edge-b")

	const n = 12
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, s.Create(rest.TaskRequest{Name: "cpu", File: cpu, CLIArgs: []string{cpuArg}}).ID)
	}
	require.Eventually(t, func() bool {
		l, err := s.Client.ListTasks(context.Background(), rest.TaskFilter{Phases: []string{"Running"}})
		return err == nil && len(l.Items) > 0
	}, 60*time.Second, 10*time.Millisecond, "nothing started running")

	s.Manager.Kill()
	s.StartManager()

	for _, id := range ids {
		got := s.Wait(id)
		require.Equal(t, "Succeeded", got.Phase, "%s: %s %s", id, got.Reason, got.Message)
		require.Equal(t, cpuPrimes, got.Stdout, "result of %s", id)
		if got.Attempt > 1 {
			require.NotEmpty(t, got.LastFailure, "a re-run of %s must say why", id)
		}
	}
	l, err := s.Client.ListTasks(context.Background(), rest.TaskFilter{Page: rest.Page{Limit: 100}})
	require.NoError(t, err)
	require.Len(t, l.Items, n, "no task lost or duplicated")
}

// TestResultLostByBrokerIsAskedForAgain: the broker acknowledged a task's
// result to the proplet and then lost it, as an embedded broker does when
// its manager crashes. Here: the manager is killed while the task runs,
// the result reaches Mosquitto (queued in the manager's session), and
// Mosquitto restarts without persistence. The restarted manager repeats
// the attempt's start; the proplet answers with the result it remembers,
// so the task succeeds on its first attempt instead of waiting for its
// deadline and running again.
func TestResultLostByBrokerIsAskedForAgain(t *testing.T) {
	cpu := exampletest.Build(t, "cpu")
	s := harness.NewSystem(t).WithMosquitto("edge-a")
	s.StartManager()
	edge := s.StartProplet("edge-a")
	s.WaitAlive("edge-a")

	task := s.Create(rest.TaskRequest{Name: "cpu", File: cpu, CLIArgs: []string{cpuArg}})
	require.Eventually(t, func() bool {
		got, err := s.Client.GetTask(context.Background(), task.ID)
		return err == nil && got.Phase == "Running"
	}, 60*time.Second, 10*time.Millisecond, "task did not start")
	s.Manager.Kill()
	require.Eventually(t, func() bool { return edge.LogContains(task.ID + "/1/final") }, 60*time.Second, 10*time.Millisecond,
		"the broker never acknowledged the result")
	s.RestartBroker()
	s.StartManager()

	got := s.Wait(task.ID)
	require.Equal(t, "Succeeded", got.Phase, "%s %s", got.Reason, got.Message)
	require.Equal(t, 1, got.Attempt, "answered, not run again")
	require.Equal(t, cpuPrimes, got.Stdout)
	require.True(t, edge.LogContains("sending its result again"))
}

// TestPropletKilledTasksRetried: a proplet dies with tasks running; they
// finish on the other proplet.
func TestPropletKilledTasksRetried(t *testing.T) {
	cpu := exampletest.Build(t, "cpu")
	s := harness.NewSystem(t)
	s.StartManager()
	victim := s.StartProplet("edge-a", "--slots", "3")
	s.WaitAlive("edge-a")

	var ids []string
	for range 3 {
		ids = append(ids, s.Create(rest.TaskRequest{Name: "long", File: cpu, CLIArgs: []string{"15000000"}, MaxAttempts: 2}).ID)
	}
	require.Eventually(t, func() bool {
		l, err := s.Client.ListTasks(context.Background(), rest.TaskFilter{Phases: []string{"Running"}, PropletID: "edge-a"})
		return err == nil && len(l.Items) == 3
	}, 60*time.Second, 10*time.Millisecond, "tasks did not start on edge-a")
	s.StartProplet("edge-b", "--slots", "3")
	s.WaitAlive("edge-b")

	victim.Kill()
	for _, id := range ids {
		got := s.Wait(id)
		require.Equal(t, "Succeeded", got.Phase, "%s %s", got.Reason, got.Message)
		require.Equal(t, "edge-b", got.PropletID)
		require.Equal(t, 2, got.Attempt)
		require.Contains(t, got.LastFailure, "PropletLost", "the retry says why")
		require.Equal(t, "970704\n", got.Stdout)
	}
}

// TestRefusals: bad tokens, bad credentials and a proplet forging another
// proplet's events are refused, and the system keeps working.
func TestRefusals(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("edge-a")
	s.WaitAlive("edge-a")

	// REST without and with a wrong token.
	for _, tok := range []string{"", "wrong"} {
		c, err := rest.NewClient(s.URL, tok, rest.WithHTTPClient(s.HTTP))
		require.NoError(t, err)
		ctx := context.Background()
		if tok == "" {
			ctx = apitest.InvalidRequest(ctx)
		}
		_, err = c.ListTasks(ctx, rest.TaskFilter{})
		var se *rest.Problem
		require.True(t, errors.As(err, &se), "%v", err)
		require.Equal(t, http.StatusUnauthorized, se.Status)
	}
	// Not a module.
	_, err := s.Client.CreateTask(context.Background(), rest.TaskRequest{Name: "junk", File: []byte("MZ\x90\x00 not wasm")})
	var se *rest.Problem
	require.True(t, errors.As(err, &se))
	require.Equal(t, http.StatusBadRequest, se.Status)

	// A proplet with a wrong credential never joins.
	bad := harness.Start(t, "proplet-bad", "proplet", "--broker", s.BrokerURL, "--id", "edge-bad", "--token", "wrong",
		"--cache-dir", filepath.Join(t.TempDir(), "bad"), "--log-level", "debug")
	require.Eventually(t, func() bool { return bad.LogContains("the manager refused --token for proplet edge-bad") }, 30*time.Second, 20*time.Millisecond)
	ps, err := s.ListProplets(context.Background())
	require.NoError(t, err)
	for _, p := range ps {
		require.NotEqual(t, "edge-bad", p.ID)
	}

	// A task for edge-a, and an impostor with the join token trying to
	// finish it by publishing on edge-a's event topic.
	task := s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{1, 2}, PropletID: "edge-a", Suspend: true})
	imp := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr).SetClientID("edge-evil").
		SetUsername("edge-evil").SetPassword(s.Token("edge-evil")).SetAutoReconnect(false))
	tok := imp.Connect()
	tok.Wait()
	require.NoError(t, tok.Error())
	forged, err := json.Marshal(wire.Event{V: wire.Version, TaskID: task.ID, Attempt: 1, Type: wire.EventSucceeded, Result: &wire.Result{Results: []float64{666}}})
	require.NoError(t, err)
	imp.Publish(wire.Topics{}.Events("edge-a"), 1, false, forged).Wait()
	imp.Disconnect(0)

	_, err = s.Client.StartTask(context.Background(), task.ID)
	require.NoError(t, err)
	got := s.Wait(task.ID)
	require.Equal(t, "Succeeded", got.Phase)
	require.Equal(t, []float64{3}, got.Results, "the forged result was refused")
	require.True(t, s.Manager.LogContains("edge-evil"), "the broker logged the refusal")

	// Oversized upload.
	big := append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, make([]byte, 40<<20)...)
	up := s.Create(rest.TaskRequest{Name: "big", Suspend: true})
	_, err = s.Client.UploadWasm(context.Background(), up.ID, big)
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusRequestEntityTooLarge, se.Status)
	select {
	case <-s.Manager.Done:
		t.Fatal("the manager exited")
	default:
	}
}
