package flstandalone

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/orchestration/fl/fltest"
	"github.com/absmach/propeller/test/harness"
)

// trainSamples is the size of the training split every round covers when
// all three shards report.
const trainSamples = 1438

// requireRoundsSound checks every closed round counts each participant at
// most once and that checkpoints match closed rounds one to one.
func requireRoundsSound(t *testing.T, j rest.FederatedJob) {
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
		if r.Phase == rest.RoundClosed {
			if r.Updates != nil { // older rounds keep only their summary
				require.Equal(t, total, j.Status.Checkpoints[closed].TotalSamples)
			}
			require.Equal(t, r.TotalSamples, j.Status.Checkpoints[closed].TotalSamples)
			require.Equal(t, r.Checkpoint, j.Status.Checkpoints[closed].Digest)
			closed++
		}
	}
	require.Len(t, j.Status.Checkpoints, closed)
}

// requireOnlyKeptBlobs checks that after job j the manager's blob
// directory holds just its initial model, its module and its checkpoints:
// every client update was collected. It logs the bytes on disk against
// what they would be with every update kept.
func requireOnlyKeptBlobs(t *testing.T, dataDir string, j rest.FederatedJob) {
	t.Helper()
	dir := filepath.Join(dataDir, "blobs")
	ents, err := os.ReadDir(filepath.Join(dir, "sha256"))
	require.NoError(t, err)
	var got []string
	var bytesOnDisk int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".upload-") {
			continue // a write a SIGKILL interrupted
		}
		info, err := e.Info()
		require.NoError(t, err)
		bytesOnDisk += info.Size()
		got = append(got, "sha256:"+e.Name())
	}
	want := []string{strings.TrimPrefix(j.Spec.ModelRef, wire.BlobScheme), strings.TrimPrefix(j.Spec.TaskWasmImage, wire.BlobScheme)}
	for _, c := range j.Status.Checkpoints {
		want = append(want, c.Digest)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(got)
	require.Equal(t, want, got, "blob dir holds more than the model, module and checkpoints")
	marks, err := os.ReadDir(filepath.Join(dir, "scratch"))
	require.NoError(t, err)
	require.Empty(t, marks, "scratch markers left")

	// Updates are the same size each round; older rounds' detail is
	// compacted, so extrapolate from one that kept it.
	var updateBytes, updates int64
	for _, r := range j.Status.Rounds {
		if r.Phase == rest.RoundClosed && len(r.Updates) > 0 {
			updateBytes = r.Updates[0].Size
		}
	}
	for _, c := range j.Status.Checkpoints {
		updates += int64(len(c.Participants))
	}
	t.Logf("blob dir: %d files, %d bytes; without collection %d more files, %d bytes more (%d updates of %d bytes)",
		len(got), bytesOnDisk, updates, updates*updateBytes, updates, updateBytes)
}

// Three proplets train for several rounds; the final global model is
// within two points of the same model trained centrally by this test.
func TestFederatedMatchesCentralised(t *testing.T) {
	const rounds = 4
	s := newSystem(t, "p1", "p2", "p3")
	j := s.create(jobSpec(t, rounds, nil))
	j = s.waitDone(j.ID)
	require.Equal(t, rest.JobSucceeded, j.Status.Phase, j.Status.Message)
	requireRoundsSound(t, j)
	require.Len(t, j.Status.Checkpoints, rounds)
	for i, c := range j.Status.Checkpoints {
		require.Equal(t, i+1, c.Round)
		require.Equal(t, int64(trainSamples), c.TotalSamples)
		require.ElementsMatch(t, []string{"p1", "p2", "p3"}, c.Participants)
		require.Contains(t, c.Metrics, "accuracy")
		require.Contains(t, c.Metrics, "loss")
	}
	// The checkpoint chain: round n+1 trained from round n's model.
	for i := 1; i < len(j.Status.Rounds); i++ {
		require.Equal(t, wire.BlobScheme+j.Status.Rounds[i-1].Checkpoint, j.Status.Rounds[i].ModelURI)
	}
	code, _ := s.call(http.MethodGet, "/v1/federated-jobs/"+j.ID+"/checkpoints", nil)
	require.Equal(t, http.StatusOK, code)
	requireOnlyKeptBlobs(t, s.DataDir, j)
	s.requireModelPull(j)

	fed := s.accuracy(j.Status.ModelDigest)
	centralAcc, err := digits.CentralisedAccuracy(digits.TrainConfig{Epochs: rounds * epochs, LR: lr, BatchSize: batch, Seed: 1})
	require.NoError(t, err)
	t.Logf("held-out accuracy: federated %.4f, centralised %.4f", fed, centralAcc)
	require.InDelta(t, centralAcc, fed, 0.02)
}

// kOfN below n: a proplet killed mid-round does not stop the job; an update
// that arrives for a closed round is rejected and shows in the status.
func TestKOfNSurvivesKilledPropletAndRejectsLateUpdate(t *testing.T) {
	s := newSystem(t, "p1", "p2", "p3")
	j := s.create(jobSpec(t, 2, func(m map[string]any) { m["kOfN"] = 2 }))
	j = s.waitJob(j.ID, 3*time.Minute, func(j rest.FederatedJob) bool {
		for _, p := range j.Status.Rounds[0].Participants {
			if p.PropletID == "p3" {
				return p.State == fl.PartRunning
			}
		}
		return false
	}, "p3 never ran round 1")
	p3Task := j.Status.Rounds[0].Participants[2].TaskID
	require.NotEmpty(t, p3Task)
	s.Proplets["p3"].Kill()

	j = s.waitDone(j.ID)
	require.Equal(t, rest.JobSucceeded, j.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, 2)
	requireRoundsSound(t, j)
	for _, r := range j.Status.Rounds {
		require.Len(t, r.Updates, 2)
		for _, u := range r.Updates {
			require.NotEqual(t, "p3", u.PropletID)
		}
	}

	// p3's update for round 1 turns up after all (as from a proplet that
	// was cut off): it is late.
	opts := paho.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr).
		SetClientID("p3" + wire.ClientIDSeparator + "late").SetUsername("p3").SetPassword(s.EnrolledSecret("p3")).
		SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	var zero digits.Model
	tensor, err := zero.Encode(nil)
	require.NoError(t, err)
	payload, err := wire.Encode(&wire.FLUpdate{JobID: j.ID, RoundID: "1", TaskID: p3Task, Attempt: 1, NumSamples: 480, Tensor: tensor, Time: time.Now()})
	require.NoError(t, err)
	pub := c.Publish(wire.Topics{}.FLUpdates("p3"), 1, false, payload)
	require.True(t, pub.WaitTimeout(10*time.Second))
	require.NoError(t, pub.Error())

	j = s.waitJob(j.ID, time.Minute, func(j rest.FederatedJob) bool { return j.Status.RejectedTotal > 0 }, "late update not recorded")
	last := j.Status.Rejected[len(j.Status.Rejected)-1]
	require.Equal(t, fl.RejectLate, last.Reason)
	require.Equal(t, "1", last.RoundID)
	require.Equal(t, p3Task, last.TaskID)
	require.Len(t, j.Status.Checkpoints, 2, "the late update changed nothing")
}

// One poisoned client: fedmedian and trimmedmean keep the model accurate,
// fedavg visibly does not.
func TestPoisonedClient(t *testing.T) {
	s := newSystem(t, "p1", "p2", "p3")
	poisoned := func(algo string, cfg map[string]float64) func(map[string]any) {
		return func(m map[string]any) {
			m["participants"] = []map[string]any{{"propletId": "p1"}, {"propletId": "p2"},
				{"propletId": "p3", "hyperparams": map[string]any{"poison": -20}}}
			agg := map[string]any{"algorithm": algo}
			if cfg != nil {
				agg["config"] = cfg
			}
			m["aggregator"] = agg
		}
	}
	jobs := map[string]rest.FederatedJob{
		"fedavg":      s.create(jobSpec(t, 3, poisoned("fedavg", nil))),
		"fedmedian":   s.create(jobSpec(t, 3, poisoned("fedmedian", nil))),
		"trimmedmean": s.create(jobSpec(t, 3, poisoned("trimmedmean", map[string]float64{"beta": 0.34}))),
	}
	acc := map[string]float64{}
	for algo, j := range jobs {
		j = s.waitDone(j.ID)
		require.Equal(t, rest.JobSucceeded, j.Status.Phase, "%s: %s", algo, j.Status.Message)
		requireRoundsSound(t, j)
		acc[algo] = s.accuracy(j.Status.ModelDigest)
	}
	t.Logf("held-out accuracy with a poisoned client: %v", acc)
	require.Greater(t, acc["fedmedian"], 0.85)
	require.Greater(t, acc["trimmedmean"], 0.85)
	require.Less(t, acc["fedavg"], 0.5)
}

// The manager is killed mid-round and restarted: the job completes with
// the same number of rounds and no update counted twice.
func TestManagerKilledMidRound(t *testing.T) {
	const rounds = 4
	s := newSystem(t, "p1", "p2", "p3")
	j := s.create(jobSpec(t, rounds, nil))
	// Mid-round: some updates accepted, others still to come.
	j = s.waitJobEvery(j.ID, 4*time.Minute, 10*time.Millisecond, func(j rest.FederatedJob) bool {
		r := j.Current()
		return r != nil && r.Phase == rest.RoundRunning && len(r.Updates) >= 1 && len(r.Updates) < r.KOfN
	}, "never saw a round part-way")
	t.Logf("killing the manager in round %s with %d of %d updates", j.Current().ID, len(j.Current().Updates), j.Current().KOfN)
	crashRound, accepted := j.Current().Number, int64(0)
	for _, u := range j.Current().Updates {
		accepted += u.NumSamples
	}
	s.Manager.Kill()
	s.startManager()

	j = s.waitDone(j.ID)
	require.Equal(t, rest.JobSucceeded, j.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, rounds)
	requireRoundsSound(t, j)
	cps := make([]fl.Checkpoint, 0, len(j.Status.Checkpoints))
	for _, c := range j.Status.Checkpoints {
		cps = append(cps, fl.Checkpoint{Round: c.Round, TotalSamples: c.TotalSamples})
	}
	fltest.RequireSamplesAfterCrash(t, cps, crashRound, accepted, trainSamples)
	for _, r := range j.Status.Rejected {
		require.Contains(t, []string{fl.RejectDuplicate, fl.RejectLate}, r.Reason)
	}
	require.Greater(t, s.accuracy(j.Status.ModelDigest), 0.85)
	requireOnlyKeptBlobs(t, s.DataDir, j)
}

// requireModelPull: `propeller fl model pull` writes each checkpoint's
// model, by round, newest and digest, as files that hash to the digest.
func (s *system) requireModelPull(j rest.FederatedJob) {
	t := s.t
	dir := t.TempDir()
	pull := func(args ...string) (int, string) {
		cmd := exec.Command(harness.Binary, append([]string{"fl", "model", "pull", "--server", "http://" + s.HTTPAddr, "--token", s.APIToken}, args...)...)
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	requireFile := func(name, digest string) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		require.Equal(t, digest, "sha256:"+hex.EncodeToString(sum[:]), name)
	}
	last := j.Status.Checkpoints[len(j.Status.Checkpoints)-1]
	require.Equal(t, j.Status.ModelDigest, last.Digest)

	code, out := pull(j.ID, "--round", "2", "--out", "r2.safetensors")
	require.Equal(t, 0, code, out)
	requireFile("r2.safetensors", j.Status.Checkpoints[1].Digest)
	code, out = pull(j.ID)
	require.Equal(t, 0, code, out)
	requireFile(fmt.Sprintf("%s-round-%d.safetensors", j.ID, last.Round), last.Digest)
	code, out = pull("--digest", last.Digest, "-o", "name")
	require.Equal(t, 0, code, out)
	name := strings.TrimPrefix(last.Digest, "sha256:")[:12] + ".safetensors"
	require.Equal(t, name+"\n", out)
	requireFile(name, last.Digest)

	code, out = pull(j.ID, "--round", "9")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "has no checkpoint of round 9; it has rounds 1, 2, 3, 4")
	code, out = pull("--digest", "sha256:"+strings.Repeat("0", 64))
	require.Equal(t, 1, code, out)
	code, out = pull("--digest", "md5:abc")
	require.Equal(t, 2, code, out)
}
