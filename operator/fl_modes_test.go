package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/orchestration/fl/fltest"
)

// The FL scenarios of test/flstandalone, in operator mode: FederatedJobs
// through the API server, the operator in-process on envtest with its
// embedded broker, and real `propeller proplet` processes training
// examples/fl.

// The recipe clients and the centralised baseline share (as in
// test/flstandalone).
const (
	flLR           = 0.5
	flEpochs       = 2
	flBatch        = 16
	flTrainSamples = 1438 // the training split, all three shards
)

// flEnv is an operator with proplets and the job's initial model and
// training module in its blob store.
type flEnv struct {
	t        *testing.T
	ns       string
	dataDir  string
	op       *operatorProc
	proplets map[string]*proplet
	model    string // blob://sha256:...
	wasm     string
}

func newFLEnv(t *testing.T, proplets ...string) *flEnv {
	t.Helper()
	e := newFLData(t)
	e.op = startOperatorIn(t, e.ns, "", e.dataDir)
	for _, id := range proplets {
		e.proplets[id] = startProplet(t, e.op.mqttAddr, id)
	}
	return e
}

// newFLData prepares a namespace and a data directory holding the initial
// model and the training module, for an operator still to start.
func newFLData(t *testing.T) *flEnv {
	t.Helper()
	e := &flEnv{t: t, ns: newNamespace(t), dataDir: t.TempDir(), proplets: map[string]*proplet{}}
	bs, err := blobs.Open(filepath.Join(e.dataDir, "blobs"))
	require.NoError(t, err)
	var zero digits.Model
	model, err := zero.Encode(nil)
	require.NoError(t, err)
	d, err := bs.PutBytes(model)
	require.NoError(t, err)
	e.model = wire.BlobScheme + d
	d, err = bs.PutBytes(exampletest.Build(t, "fl"))
	require.NoError(t, err)
	e.wasm = wire.BlobScheme + d
	return e
}

func rawJSON(t *testing.T, v any) *apiextensionsv1.JSON {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return &apiextensionsv1.JSON{Raw: b}
}

// create submits the job every scenario runs (p1, p2, p3, FedAvg); mod
// adjusts it.
func (e *flEnv) create(name string, rounds int32, mod func(*v1.FederatedJobSpec)) {
	e.t.Helper()
	fj := &v1.FederatedJob{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}}
	fj.Spec = v1.FederatedJobSpec{
		ExperimentID:   e.t.Name() + "-" + name,
		ModelRef:       e.model,
		TaskWasmImage:  e.wasm,
		Participants:   []v1.Participant{{PropletID: "p1"}, {PropletID: "p2"}, {PropletID: "p3"}},
		TimeoutSeconds: 240,
		Rounds:         v1.Rounds{Total: rounds},
		Aggregator:     v1.Aggregator{Algorithm: "fedavg"},
		Hyperparams:    rawJSON(e.t, map[string]any{"lr": flLR, "epochs": flEpochs, "batch_size": flBatch}),
	}
	if mod != nil {
		mod(&fj.Spec)
	}
	require.NoError(e.t, k8s.Create(e.t.Context(), fj))
}

func (e *flEnv) get(name string) *v1.FederatedJob {
	e.t.Helper()
	fj := &v1.FederatedJob{}
	require.NoError(e.t, k8s.Get(e.t.Context(), client.ObjectKey{Namespace: e.ns, Name: name}, fj))
	return fj
}

// record reads the coordinator's job record (the ConfigMap fljob-<name>),
// which the FederatedJob status summarises.
func (e *flEnv) record(name string) (fl.Job, bool) {
	e.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(e.t.Context(), client.ObjectKey{Namespace: e.ns, Name: "fljob-" + name}, cm); err != nil {
		return fl.Job{}, false
	}
	var j fl.Job
	require.NoError(e.t, json.Unmarshal([]byte(cm.Data["job.json"]), &j))
	return j, true
}

func (e *flEnv) waitRecord(name string, timeout, every time.Duration, cond func(fl.Job) bool, msg string) fl.Job {
	e.t.Helper()
	var last fl.Job
	require.Eventually(e.t, func() bool {
		j, ok := e.record(name)
		if ok {
			last = j
		}
		return ok && cond(j)
	}, timeout, every, "%s; last status: %+v", msg, &last.Status)
	return last
}

// waitDone waits for the FederatedJob to finish and returns it with the
// record it mirrors.
func (e *flEnv) waitDone(name string) (*v1.FederatedJob, fl.Job) {
	e.t.Helper()
	var fj *v1.FederatedJob
	require.Eventually(e.t, func() bool {
		fj = e.get(name)
		switch fj.Status.Phase {
		case v1.FLSucceeded, v1.FLFailed, v1.FLStopped:
			return true
		}
		return false
	}, 8*time.Minute, 200*time.Millisecond, "job %s did not finish", name)
	j, ok := e.record(name)
	require.True(e.t, ok)
	return fj, j
}

// accuracy scores a model of the operator's blob store on the held-out
// split.
func (e *flEnv) accuracy(digest string) float64 {
	e.t.Helper()
	bs, err := blobs.Open(filepath.Join(e.dataDir, "blobs"))
	require.NoError(e.t, err)
	raw, err := bs.Blob(context.Background(), digest)
	require.NoError(e.t, err)
	acc, err := digits.HeldOutAccuracy(raw)
	require.NoError(e.t, err)
	return acc
}

// requireFLRoundsSound: every closed round counts each participant at most
// once, and checkpoints match closed rounds one to one, in the record and
// as ModelCheckpoints.
func (e *flEnv) requireRoundsSound(name string, fj *v1.FederatedJob, j fl.Job) {
	t := e.t
	t.Helper()
	closed := 0
	for _, r := range j.Status.Rounds {
		seen := map[string]bool{}
		var total int64
		for _, u := range r.Updates {
			require.False(t, seen[u.TaskID], "round %s counts task %s twice", r.ID, u.TaskID)
			require.False(t, seen[u.PropletID], "round %s counts proplet %s twice", r.ID, u.PropletID)
			seen[u.TaskID], seen[u.PropletID] = true, true
			total += u.NumSamples
		}
		if r.Phase == fl.RoundClosed {
			if r.Updates != nil {
				require.Equal(t, total, j.Status.Checkpoints[closed].TotalSamples)
			}
			require.Equal(t, r.TotalSamples, j.Status.Checkpoints[closed].TotalSamples)
			require.Equal(t, r.Checkpoint, j.Status.Checkpoints[closed].Digest)
			closed++
		}
	}
	require.Len(t, j.Status.Checkpoints, closed)
	require.EqualValues(t, closed, fj.Status.CompletedRounds)

	cps := &v1.ModelCheckpointList{}
	require.NoError(t, k8s.List(t.Context(), cps, client.InNamespace(e.ns)))
	digests := map[string]string{}
	for _, c := range cps.Items {
		if c.Spec.JobRef.Name == name {
			digests[c.Name] = c.Spec.Digest
		}
	}
	require.Len(t, digests, closed)
	for _, c := range j.Status.Checkpoints {
		require.Equal(t, c.Digest, digests[fmt.Sprintf("%s-ckpt-%d", name, c.Round)])
	}
}

// Three proplets train for several rounds; the final global model is
// within two points of the same model trained centrally by this test. The
// job's status shows round x/y and the latest metric.
func TestFLOperatorMatchesCentralised(t *testing.T) {
	const rounds = 4
	e := newFLEnv(t, "p1", "p2", "p3")
	e.create("central", rounds, nil)
	fj, j := e.waitDone("central")
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase, j.Status.Message)
	e.requireRoundsSound("central", fj, j)
	require.Len(t, j.Status.Checkpoints, rounds)
	for i, c := range j.Status.Checkpoints {
		require.Equal(t, i+1, c.Round)
		require.Equal(t, int64(flTrainSamples), c.TotalSamples)
		require.ElementsMatch(t, []string{"p1", "p2", "p3"}, c.Participants)
		require.Contains(t, c.Metrics, "accuracy")
		require.Contains(t, c.Metrics, "loss")
	}
	for i := 1; i < len(j.Status.Rounds); i++ {
		require.Equal(t, wire.BlobScheme+j.Status.Rounds[i-1].Checkpoint, j.Status.Rounds[i].ModelURI)
	}
	// What `kubectl get federatedjobs` prints.
	require.Equal(t, "4/4", fj.Status.Progress)
	require.Equal(t, fmt.Sprintf("accuracy=%.4f", j.Status.Checkpoints[rounds-1].Metrics["accuracy"]), fj.Status.LatestMetric)
	// Nothing is late or foreign; the only rejections allowed are
	// redeliveries of counted updates (QoS 1 is at least once, and a
	// loaded broker redelivers).
	for _, r := range j.Status.Rejected {
		require.Equal(t, fl.RejectDuplicate, r.Reason, "only redeliveries are rejected: %+v", r)
	}

	fed := e.accuracy(j.Status.ModelDigest)
	centralAcc, err := digits.CentralisedAccuracy(digits.TrainConfig{Epochs: rounds * flEpochs, LR: flLR, BatchSize: flBatch, Seed: 1})
	require.NoError(t, err)
	t.Logf("held-out accuracy: federated %.4f, centralised %.4f", fed, centralAcc)
	require.InDelta(t, centralAcc, fed, 0.02)
}

// kOfN below n: a proplet killed mid-round does not stop the job; an update
// that arrives for a closed round is rejected and shows in the
// FederatedJob's status.
func TestFLOperatorKOfNSurvivesKilledPropletAndRejectsLateUpdate(t *testing.T) {
	e := newFLEnv(t, "p1", "p2", "p3")
	e.create("kofn", 2, func(s *v1.FederatedJobSpec) { s.KOfN = 2 })
	j := e.waitRecord("kofn", 4*time.Minute, 20*time.Millisecond, func(j fl.Job) bool {
		if len(j.Status.Rounds) == 0 {
			return false
		}
		for _, p := range j.Status.Rounds[0].Participants {
			if p.PropletID == "p3" {
				return p.State == fl.PartRunning
			}
		}
		return false
	}, "p3 never ran round 1")
	var p3Task string
	for _, p := range j.Status.Rounds[0].Participants {
		if p.PropletID == "p3" {
			p3Task = p.TaskID
		}
	}
	require.NotEmpty(t, p3Task)
	p3Secret := e.proplets["p3"].secret(t)
	e.proplets["p3"].kill()

	fj, j := e.waitDone("kofn")
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, 2)
	e.requireRoundsSound("kofn", fj, j)
	for _, r := range j.Status.Rounds {
		require.Len(t, r.Updates, 2)
		for _, u := range r.Updates {
			require.NotEqual(t, "p3", u.PropletID)
		}
	}
	rounds := &v1.TrainingRoundList{}
	require.NoError(t, k8s.List(t.Context(), rounds, client.InNamespace(e.ns)))
	require.Len(t, rounds.Items, 2)
	for _, r := range rounds.Items {
		require.Equal(t, v1.FLSucceeded, r.Status.Phase, r.Name)
		require.EqualValues(t, 2, r.Status.UpdatesReceived, r.Name)
	}
	// Each round's TrainingRound counts p3's task (lost, or stopped when
	// the round closed) as failed.
	require.Eventually(t, func() bool {
		require.NoError(t, k8s.List(t.Context(), rounds, client.InNamespace(e.ns)))
		for _, r := range rounds.Items {
			if r.Status.Participants != (v1.RoundParticipants{Succeeded: 2, Failed: 1}) {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "rounds do not count 2 succeeded and 1 failed participant")

	// p3's update for round 1 turns up after all (as from a proplet that
	// was cut off): it is late. p3 enrolled, so only its own secret logs
	// it in.
	opts := paho.NewClientOptions().AddBroker("tcp://" + e.op.mqttAddr).
		SetClientID("p3" + wire.ClientIDSeparator + "late").SetUsername("p3").SetPassword(p3Secret).
		SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	var zero digits.Model
	tensor, err := zero.Encode(nil)
	require.NoError(t, err)
	payload, err := wire.Encode(&wire.FLUpdate{JobID: "kofn", RoundID: "1", TaskID: p3Task, Attempt: 1, NumSamples: 480, Tensor: tensor, Time: time.Now()})
	require.NoError(t, err)
	pub := c.Publish(wire.Topics{}.FLUpdates("p3"), 1, false, payload)
	require.True(t, pub.WaitTimeout(10*time.Second))
	require.NoError(t, pub.Error())

	want := fmt.Sprintf("%s: round 1 task %s from p3", fl.RejectLate, p3Task)
	require.Eventually(t, func() bool {
		fj = e.get("kofn")
		return fj.Status.LastRejected == want
	}, time.Minute, 100*time.Millisecond, "late update not in the FederatedJob status")
	require.Positive(t, fj.Status.RejectedUpdates)
	j, ok := e.record("kofn")
	require.True(t, ok)
	last := j.Status.Rejected[len(j.Status.Rejected)-1]
	require.Equal(t, fl.RejectLate, last.Reason)
	require.Equal(t, "1", last.RoundID)
	require.Equal(t, p3Task, last.TaskID)
	require.Len(t, j.Status.Checkpoints, 2, "the late update changed nothing")
	require.EqualValues(t, 2, fj.Status.CompletedRounds)
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase)
	// Round 1 counts every rejection the job record keeps for it: the late
	// update, and any redelivery of an update it had already counted (QoS 1
	// is at least once, and a loaded broker redelivers), so the exact count
	// is read from the record rather than assumed.
	var lateOnes, round1 int32
	require.Eventually(t, func() bool {
		j, ok = e.record("kofn")
		require.True(t, ok)
		lateOnes, round1 = 0, 0
		for _, r := range j.Status.Rejected {
			if r.RoundID != "1" {
				continue
			}
			round1++
			if r.Reason == fl.RejectLate && r.TaskID == p3Task {
				lateOnes++
			}
		}
		tr := &v1.TrainingRound{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: e.ns, Name: "kofn-r1-a0"}, tr))
		return tr.Status.UpdatesRejected == round1
	}, 30*time.Second, 100*time.Millisecond, "round 1 does not count its rejections")
	require.EqualValues(t, 1, lateOnes, "the late update is rejected once, as late")
	for _, r := range j.Status.Rejected {
		if r.RoundID == "1" && r.Reason != fl.RejectLate {
			require.Equal(t, fl.RejectDuplicate, r.Reason, "round 1 rejects only redeliveries besides the late update: %+v", r)
		}
	}
}

// One poisoned client: fedmedian and trimmedmean keep the model accurate,
// fedavg visibly does not.
func TestFLOperatorPoisonedClient(t *testing.T) {
	e := newFLEnv(t, "p1", "p2", "p3")
	poisoned := func(algo string, cfg map[string]float64) func(*v1.FederatedJobSpec) {
		return func(s *v1.FederatedJobSpec) {
			s.Participants = []v1.Participant{{PropletID: "p1"}, {PropletID: "p2"},
				{PropletID: "p3", Hyperparams: rawJSON(t, map[string]any{"poison": -20})}}
			s.Aggregator = v1.Aggregator{Algorithm: algo, Config: cfg}
		}
	}
	e.create("fedavg", 3, poisoned("fedavg", nil))
	e.create("fedmedian", 3, poisoned("fedmedian", nil))
	e.create("trimmedmean", 3, poisoned("trimmedmean", map[string]float64{"beta": 0.34}))
	acc := map[string]float64{}
	for _, algo := range []string{"fedavg", "fedmedian", "trimmedmean"} {
		fj, j := e.waitDone(algo)
		require.Equal(t, v1.FLSucceeded, fj.Status.Phase, "%s: %s", algo, j.Status.Message)
		e.requireRoundsSound(algo, fj, j)
		acc[algo] = e.accuracy(j.Status.ModelDigest)
	}
	t.Logf("held-out accuracy with a poisoned client: %v", acc)
	require.Greater(t, acc["fedmedian"], 0.85)
	require.Greater(t, acc["trimmedmean"], 0.85)
	require.Less(t, acc["fedavg"], 0.5)
}

// The operator is stopped mid-round and a new one started on the same
// data: the job completes with the same number of rounds and no update
// counted twice.
func TestFLOperatorRestartedMidRound(t *testing.T) {
	const rounds = 4
	e := newFLEnv(t, "p1", "p2", "p3")
	e.create("restart", rounds, nil)
	j := e.waitRecord("restart", 5*time.Minute, 10*time.Millisecond, func(j fl.Job) bool {
		r := j.Current()
		return r != nil && r.Phase == fl.RoundRunning && len(r.Updates) >= 1 && len(r.Updates) < r.KOfN
	}, "never saw a round part-way")
	t.Logf("stopping the operator in round %s with %d of %d updates", j.Current().ID, len(j.Current().Updates), j.Current().KOfN)
	crashRound, accepted := j.Current().Number, fltest.AcceptedSamples(j.Current())
	addr := e.op.mqttAddr
	e.op.stop(t)
	e.op = startOperatorIn(t, e.ns, addr, e.dataDir)

	fj, j := e.waitDone("restart")
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, rounds)
	e.requireRoundsSound("restart", fj, j)
	fltest.RequireSamplesAfterCrash(t, j.Status.Checkpoints, crashRound, accepted, flTrainSamples)
	for _, r := range j.Status.Rejected {
		require.Contains(t, []string{fl.RejectDuplicate, fl.RejectLate}, r.Reason)
	}
	require.Equal(t, fmt.Sprintf("%d/%d", rounds, rounds), fj.Status.Progress)
	require.True(t, strings.HasPrefix(fj.Status.LatestMetric, "accuracy="), fj.Status.LatestMetric)
	require.Greater(t, e.accuracy(j.Status.ModelDigest), 0.85)
}

// operatorProcess is `propeller manager operator` as a process of its own,
// so that it can be killed without a chance to clean up.
type operatorProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (p *operatorProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// kubeconfig writes envtest's credentials for a child process.
func kubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restCfg.Host, CertificateAuthorityData: restCfg.CAData}
	cfg.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: restCfg.CertData, ClientKeyData: restCfg.KeyData, Token: restCfg.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startOperatorProcess runs the operator binary on envtest with an
// embedded broker on mqttAddr and waits until /readyz says it leads and
// serves.
func startOperatorProcess(t *testing.T, kubeconfig, ns, mqttAddr, dataDir string) *operatorProcess {
	t.Helper()
	health := freeAddr(t)
	cmd := exec.Command(propellerBinary(t), "manager", "operator", "--namespace", ns, "--embedded-broker",
		"--mqtt-addr", mqttAddr, "--join-token", joinToken, "--data-dir", dataDir, "--metrics-addr", "0",
		"--health-addr", health, "--leader-elect=false", "--heartbeat-timeout", "5s", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	p := &operatorProcess{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("operator output:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			t.Fatalf("operator exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 50*time.Millisecond, "operator never ready")
	return p
}

// The operator process is killed (SIGKILL) mid-round and a new one started
// on the same data: the job completes with the same number of rounds and
// no update counted twice.
func TestFLOperatorKilledMidRound(t *testing.T) {
	const rounds = 4
	e := newFLData(t)
	kc := kubeconfig(t)
	mqttAddr := freeAddr(t)
	op := startOperatorProcess(t, kc, e.ns, mqttAddr, e.dataDir)
	for _, id := range []string{"p1", "p2", "p3"} {
		e.proplets[id] = startProplet(t, mqttAddr, id)
	}

	e.create("killed", rounds, nil)
	j := e.waitRecord("killed", 5*time.Minute, 10*time.Millisecond, func(j fl.Job) bool {
		r := j.Current()
		return r != nil && r.Phase == fl.RoundRunning && len(r.Updates) >= 1 && len(r.Updates) < r.KOfN
	}, "never saw a round part-way")
	t.Logf("killing the operator in round %s with %d of %d updates", j.Current().ID, len(j.Current().Updates), j.Current().KOfN)
	crashRound, accepted := j.Current().Number, fltest.AcceptedSamples(j.Current())
	op.kill()
	startOperatorProcess(t, kc, e.ns, mqttAddr, e.dataDir)

	fj, j := e.waitDone("killed")
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, rounds)
	e.requireRoundsSound("killed", fj, j)
	fltest.RequireSamplesAfterCrash(t, j.Status.Checkpoints, crashRound, accepted, flTrainSamples)
	for _, r := range j.Status.Rejected {
		require.Contains(t, []string{fl.RejectDuplicate, fl.RejectLate}, r.Reason)
	}
	rs := &v1.TrainingRoundList{}
	require.NoError(t, k8s.List(t.Context(), rs, client.InNamespace(e.ns)))
	require.Len(t, rs.Items, rounds, "one attempt per round")
	require.Greater(t, e.accuracy(j.Status.ModelDigest), 0.85)
}
