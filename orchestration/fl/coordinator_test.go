package fl_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/storage/memory"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// engine is a fake orchestration engine: it records tasks and lets the
// test decide what happens to them.
type engine struct {
	mu       sync.Mutex
	tasks    map[string]orchestration.Task
	order    []string
	proplets []orchestration.Proplet
	submits  int
}

func newEngine() *engine { return &engine{tasks: map[string]orchestration.Task{}} }

func (e *engine) Submit(_ context.Context, spec orchestration.TaskSpec) (orchestration.Task, error) {
	if err := orchestration.ValidateSpec(spec); err != nil {
		return orchestration.Task{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.submits++
	t := orchestration.Task{ID: fmt.Sprintf("t%03d", e.submits), Spec: spec, Status: orchestration.TaskStatus{Phase: orchestration.PhasePending}}
	e.tasks[t.ID] = t
	e.order = append(e.order, t.ID)
	return t, nil
}

func (e *engine) set(id string, phase orchestration.Phase, reason string) orchestration.Task {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tasks[id]
	t.Status.Phase, t.Status.Reason = phase, reason
	e.tasks[id] = t
	return t
}

func (e *engine) Stop(_ context.Context, id, msg string) (orchestration.Task, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[id]
	if !ok {
		return t, orchestration.ErrNotFound
	}
	if t.Status.Phase.Terminal() {
		return t, orchestration.ErrTerminal
	}
	t.Status.Phase, t.Status.Message = orchestration.PhaseCancelled, msg
	e.tasks[id] = t
	return t, nil
}

func (e *engine) Get(_ context.Context, id string) (orchestration.Task, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[id]
	if !ok {
		return t, orchestration.ErrNotFound
	}
	return t, nil
}

func (e *engine) List(_ context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out orchestration.TaskPage
	for _, id := range e.order {
		t := e.tasks[id]
		match := true
		for k, v := range f.Labels {
			match = match && t.Spec.Labels[k] == v
		}
		if match {
			out.Tasks = append(out.Tasks, t)
		}
	}
	return out, nil
}

func (e *engine) Proplets(context.Context) ([]orchestration.Proplet, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]orchestration.Proplet(nil), e.proplets...), nil
}

// round returns the tasks of one round by proplet.
func (e *engine) round(rid string) map[string]orchestration.Task {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]orchestration.Task{}
	for _, id := range e.order {
		if t := e.tasks[id]; t.Spec.Labels[fl.LabelRound] == rid {
			out[t.Spec.PropletID] = t
		}
	}
	return out
}

// blobs is an in-memory fl.Blobs and fl.ScratchBlobs.
type blobs struct {
	mu      sync.Mutex
	m       map[string][]byte
	scratch map[string]bool
	// failDeletes makes DeleteScratch fail, as a crash before it would.
	failDeletes bool
}

var _ fl.ScratchBlobs = (*blobs)(nil)

func (b *blobs) PutBytes(p []byte) (string, error) {
	sum := sha256.Sum256(p)
	d := "sha256:" + hex.EncodeToString(sum[:])
	b.mu.Lock()
	b.m[d] = append([]byte(nil), p...)
	delete(b.scratch, d)
	b.mu.Unlock()
	return d, nil
}

func (b *blobs) PutScratch(p []byte) (string, error) {
	sum := sha256.Sum256(p)
	d := "sha256:" + hex.EncodeToString(sum[:])
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[d]; !ok {
		b.m[d] = append([]byte(nil), p...)
		b.scratch[d] = true
	}
	return d, nil
}

func (b *blobs) Scratch() ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.scratch)), nil
}

func (b *blobs) DeleteScratch(d string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failDeletes {
		return errors.New("disk on fire")
	}
	if b.scratch[d] {
		delete(b.m, d)
		delete(b.scratch, d)
	}
	return nil
}

func (b *blobs) has(d string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[d]
	return ok
}

func (b *blobs) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

func (b *blobs) Blob(_ context.Context, d string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.m[d]
	if !ok {
		return nil, fmt.Errorf("%s: %w", d, orchestration.ErrNotFound)
	}
	return p, nil
}

type env struct {
	t      *testing.T
	ctx    context.Context
	clock  *clock
	engine *engine
	blobs  *blobs
	store  *memory.FLStore
	c      *fl.Coordinator
	model  string // blob://... of the initial model
	// models, when set, is the registry restart gives the coordinator.
	models fl.Models
}

func newEnv(t *testing.T) *env {
	e := &env{
		t: t, ctx: context.Background(), clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		engine: newEngine(), blobs: &blobs{m: map[string][]byte{}, scratch: map[string]bool{}}, store: memory.NewFLStore(),
	}
	d, err := e.blobs.PutBytes(tensor(t, 0, 0))
	require.NoError(t, err)
	e.model = wire.BlobScheme + d
	e.restart()
	return e
}

// restart builds a fresh coordinator over the same store, engine and
// blobs, as a manager restart does, and recovers.
func (e *env) restart() {
	c, err := fl.New(fl.Config{}, fl.Deps{Store: e.store, Engine: e.engine, Blobs: e.blobs, Models: e.models, Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(e.t, err)
	require.NoError(e.t, c.Recover(e.ctx))
	e.c = c
}

func tensor(t *testing.T, a, b float32) []byte {
	raw, err := safetensors.EncodeF32(map[string][]float32{"w": {a, b}}, map[string][]int{"w": {2}}, nil)
	require.NoError(t, err)
	return raw
}

func (e *env) spec(n int) fl.JobSpec {
	s := fl.JobSpec{
		ExperimentID: "exp", ModelRef: e.model, TaskWasmImage: wire.BlobScheme + "sha256:" + strings.Repeat("a", 64),
		TimeoutSeconds: 60, Rounds: fl.Rounds{Total: 2}, Aggregator: fl.AggregatorSpec{Algorithm: "fedavg"},
		Hyperparams: map[string]any{"lr": 0.5},
	}
	for i := range n {
		s.Participants = append(s.Participants, fl.Participant{PropletID: fmt.Sprintf("p%d", i+1),
			Hyperparams: map[string]any{"shard_index": i}})
	}
	return s
}

func (e *env) job(id string) fl.Job {
	j, err := e.c.Get(e.ctx, id)
	require.NoError(e.t, err)
	return j
}

// send delivers an update from a round's task on proplet p.
func (e *env) send(j fl.Job, rid, p string, samples int64, a, b float32) error {
	task := e.engine.round(rid)[p]
	require.NotEmpty(e.t, task.ID, "no task on %s in round %s", p, rid)
	return e.c.Receive(e.ctx, fl.Update{JobID: j.ID, RoundID: rid, TaskID: task.ID, PropletID: p, Attempt: 1,
		NumSamples: samples, Metrics: map[string]float64{"accuracy": float64(a)}, Tensor: tensor(e.t, a, b)})
}

// finish marks a task terminal and tells the coordinator, as the engine's
// observer would.
func (e *env) finish(rid, p string, phase orchestration.Phase) {
	task := e.engine.round(rid)[p]
	e.c.TaskChanged(e.engine.set(task.ID, phase, "Test"))
	e.c.Tick(e.ctx)
}

func (e *env) model_(digest string) []float32 {
	b, err := e.blobs.Blob(e.ctx, digest)
	require.NoError(e.t, err)
	v, _, err := safetensors.DecodeF32(b)
	require.NoError(e.t, err)
	return v["w"]
}

func TestRoundsRunToCompletion(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	require.Equal(t, fl.JobRunning, j.Status.Phase)
	r := j.Current()
	require.Equal(t, "1", r.ID)
	require.Equal(t, fl.RoundRunning, r.Phase)
	tasks := e.engine.round("1")
	require.Len(t, tasks, 3)
	for i, p := range []string{"p1", "p2", "p3"} {
		task := tasks[p]
		require.Equal(t, p, task.Spec.PropletID)
		require.Equal(t, "1", task.Spec.Env[fl.EnvRoundID])
		require.Equal(t, e.model, task.Spec.Env[fl.EnvModelURI])
		require.Equal(t, j.ID, task.Spec.Env[fl.EnvJobID])
		require.Equal(t, 60*time.Second, task.Spec.Timeout)
		var hp map[string]any
		require.NoError(t, json.Unmarshal([]byte(task.Spec.Env[fl.EnvHyperparams]), &hp))
		require.Equal(t, map[string]any{"lr": 0.5, "shard_index": float64(i), "participant_index": float64(i), "participant_count": 3.0}, hp)
	}

	require.NoError(t, e.send(j, "1", "p1", 1, 1, 10))
	require.NoError(t, e.send(j, "1", "p2", 3, 5, 2))
	require.Equal(t, fl.RoundRunning, current(e.job(j.ID)).Phase)
	require.NoError(t, e.send(j, "1", "p3", 0, 100, 100))

	j = e.job(j.ID)
	require.Len(t, j.Status.Checkpoints, 1)
	ck := j.Status.Checkpoints[0]
	require.Equal(t, 1, ck.Round)
	require.Equal(t, int64(4), ck.TotalSamples)
	require.Equal(t, "fedavg", ck.Algorithm)
	require.ElementsMatch(t, []string{"p1", "p2", "p3"}, ck.Participants)
	require.InDeltaSlice(t, []float32{4, 4}, e.model_(ck.Digest), 1e-6)
	require.InDelta(t, 4.0, ck.Metrics["accuracy"], 1e-9) // (1*1 + 3*5 + 0*100)/4
	require.Equal(t, ck.Digest, j.Status.ModelDigest)

	// Round 2 trains from the checkpoint.
	require.Equal(t, 2, j.Status.CurrentRound)
	require.Equal(t, wire.BlobScheme+ck.Digest, j.Current().ModelURI)
	for _, task := range e.engine.round("2") {
		require.Equal(t, wire.BlobScheme+ck.Digest, task.Spec.Env[fl.EnvModelURI])
	}
	for _, p := range []string{"p1", "p2", "p3"} {
		require.NoError(t, e.send(j, "2", p, 1, 2, 2))
	}
	j = e.job(j.ID)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase)
	require.Len(t, j.Status.Checkpoints, 2)
	require.Len(t, j.Status.Rounds, 2)
	require.Zero(t, j.Status.RejectedTotal)
	require.Equal(t, 6, e.engine.submits)
}

func TestKOfNClosesEarlyAndRejectsLate(t *testing.T) {
	e := newEnv(t)
	s := e.spec(3)
	s.KOfN = 2
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	require.NoError(t, e.send(j, "1", "p2", 1, 3, 3))
	j = e.job(j.ID)
	require.Equal(t, fl.RoundClosed, j.Status.Rounds[0].Phase)
	require.Equal(t, fl.PartStopped, j.Status.Rounds[0].Participants[2].State)
	// The straggler's task was stopped...
	require.Equal(t, orchestration.PhaseCancelled, e.engine.round("1")["p3"].Status.Phase)
	// ...and its update, arriving anyway, is recorded and rejected.
	require.NoError(t, e.send(j, "1", "p3", 1, 100, 100))
	j = e.job(j.ID)
	require.Equal(t, 1, j.Status.RejectedTotal)
	require.Equal(t, fl.RejectLate, j.Status.Rejected[0].Reason)
	require.Equal(t, "1", j.Status.Rejected[0].RoundID)
	require.InDeltaSlice(t, []float32{2, 2}, e.model_(j.Status.ModelDigest), 1e-6)
}

func TestDuplicateAndBadUpdatesRejected(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(2))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 5, 1, 1))
	require.NoError(t, e.send(j, "1", "p1", 5, 9, 9)) // redelivery / repeat

	p2 := e.engine.round("1")["p2"].ID
	bad := []struct {
		name   string
		u      fl.Update
		reason string
	}{
		{"not safetensors", fl.Update{RoundID: "1", TaskID: p2, PropletID: "p2", Tensor: []byte("junk")}, fl.RejectInvalid},
		{"wrong shape", fl.Update{RoundID: "1", TaskID: p2, PropletID: "p2", Tensor: mustEncode(t, map[string][]float32{"w": {1, 2, 3}})}, fl.RejectInvalid},
		{"nan", fl.Update{RoundID: "1", TaskID: p2, PropletID: "p2", Tensor: tensor(t, float32(math.NaN()), 1)}, fl.RejectInvalid},
		{"wrong proplet", fl.Update{RoundID: "1", TaskID: p2, PropletID: "p1", Tensor: tensor(t, 1, 1)}, fl.RejectUnknown},
		{"unknown task", fl.Update{RoundID: "1", TaskID: "nope", PropletID: "p2", Tensor: tensor(t, 1, 1)}, fl.RejectUnknown},
		{"unknown round", fl.Update{RoundID: "7", TaskID: p2, PropletID: "p2", Tensor: tensor(t, 1, 1)}, fl.RejectUnknown},
	}
	for _, b := range bad {
		b.u.JobID = j.ID
		require.NoError(t, e.c.Receive(e.ctx, b.u), b.name)
	}
	j = e.job(j.ID)
	require.Len(t, j.Current().Updates, 1, "only the first p1 update counts")
	require.Equal(t, 1+len(bad), j.Status.RejectedTotal)
	require.Equal(t, fl.RejectDuplicate, j.Status.Rejected[0].Reason)
	for i, b := range bad {
		require.Equal(t, b.reason, j.Status.Rejected[i+1].Reason, b.name)
	}
	// An update for a job that does not exist is dropped quietly.
	require.NoError(t, e.c.Receive(e.ctx, fl.Update{JobID: "nope", RoundID: "1", TaskID: "x"}))
}

func mustEncode(t *testing.T, v map[string][]float32) []byte {
	b, err := safetensors.EncodeF32(v, nil, nil)
	require.NoError(t, err)
	return b
}

func TestFailedParticipantDoesNotStallRound(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 2, 2))
	e.finish("1", "p1", orchestration.PhaseSucceeded)
	e.finish("1", "p3", orchestration.PhaseFailed)
	require.Equal(t, fl.RoundRunning, current(e.job(j.ID)).Phase, "p2 may still deliver")
	require.NoError(t, e.send(j, "1", "p2", 1, 4, 4))
	j = e.job(j.ID)
	r := j.Status.Rounds[0]
	require.Equal(t, fl.RoundClosed, r.Phase)
	require.Equal(t, fl.PartFailed, r.Participants[2].State)
	require.InDeltaSlice(t, []float32{3, 3}, e.model_(r.Checkpoint), 1e-6)
}

func TestRoundClosesWhenEveryoneFinished(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 2, 2))
	e.finish("1", "p2", orchestration.PhaseFailed)
	e.finish("1", "p3", orchestration.PhaseCancelled)
	require.Equal(t, fl.RoundClosed, e.job(j.ID).Status.Rounds[0].Phase)
}

// TestUpdateAfterTaskResult: a participant whose task result is known
// before its update (as after a manager restart, when results are read
// back from the engine while proplets re-send updates) still counts for
// UpdateGrace; its update then closes the round with every sample.
func TestUpdateAfterTaskResult(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(2))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 2, 2))
	e.finish("1", "p1", orchestration.PhaseSucceeded)
	e.finish("1", "p2", orchestration.PhaseSucceeded)
	require.Equal(t, fl.RoundRunning, current(e.job(j.ID)).Phase, "p2's update may still arrive")
	e.clock.Add(5 * time.Second)
	require.NoError(t, e.send(j, "1", "p2", 3, 4, 4))
	r := e.job(j.ID).Status.Rounds[0]
	require.Equal(t, fl.RoundClosed, r.Phase)
	require.EqualValues(t, 4, r.TotalSamples)
	require.Empty(t, e.job(j.ID).Status.Rejected)
}

// Without the late participant's update the round closes once the grace
// has passed.
func TestUpdateGraceEnds(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(2))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 2, 2))
	e.finish("1", "p1", orchestration.PhaseSucceeded)
	e.finish("1", "p2", orchestration.PhaseSucceeded)
	e.clock.Add(10 * time.Second)
	e.c.Tick(e.ctx)
	require.Equal(t, fl.RoundClosed, e.job(j.ID).Status.Rounds[0].Phase)
}

func TestDeadline(t *testing.T) {
	tests := []struct {
		name       string
		minUpdates int
		policy     fl.FailurePolicy
		want       fl.RoundPhase
		wantJob    fl.JobPhase
		wantRounds int
	}{
		{"enough updates close the round", 1, fl.FailurePolicy{}, fl.RoundClosed, fl.JobRunning, 2},
		{"too few retry the round", 2, fl.FailurePolicy{Action: fl.ActionRetry, MaxRetries: 1}, fl.RoundFailed, fl.JobRunning, 2},
		{"too few fail the job", 2, fl.FailurePolicy{Action: fl.ActionFail}, fl.RoundFailed, fl.JobFailed, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.spec(3)
			s.MinUpdates = tc.minUpdates
			s.OnRoundFailure = tc.policy
			j, err := e.c.Create(e.ctx, s)
			require.NoError(t, err)
			require.NoError(t, e.send(j, "1", "p1", 1, 2, 2))
			e.clock.Add(59 * time.Second)
			e.c.Tick(e.ctx)
			require.Equal(t, fl.RoundRunning, current(e.job(j.ID)).Phase)
			e.clock.Add(time.Second)
			e.c.Tick(e.ctx)
			j = e.job(j.ID)
			require.Equal(t, tc.want, j.Status.Rounds[0].Phase)
			require.Equal(t, tc.wantJob, j.Status.Phase)
			require.Len(t, j.Status.Rounds, tc.wantRounds)
			if tc.want == fl.RoundFailed {
				require.Equal(t, "DeadlineExceeded", j.Status.Rounds[0].Reason)
			}
			for p, task := range e.engine.round("1") {
				if p != "p1" { // p1 delivered; its task ends by itself
					require.True(t, task.Status.Phase.Terminal(), "round 1 stragglers are stopped")
				}
			}
		})
	}
}

func TestRetriedRoundGetsNewIDAndThenFails(t *testing.T) {
	e := newEnv(t)
	s := e.spec(2)
	s.OnRoundFailure = fl.FailurePolicy{MaxRetries: 1}
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	e.finish("1", "p1", orchestration.PhaseFailed)
	e.finish("1", "p2", orchestration.PhaseFailed)
	j = e.job(j.ID)
	require.Equal(t, "1.1", j.Current().ID)
	require.Equal(t, 1, j.Status.CurrentRound)
	require.Equal(t, "NotEnoughUpdates", j.Status.Rounds[0].Reason)
	// An update of the failed attempt is late.
	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	require.Equal(t, fl.RejectLate, e.job(j.ID).Status.Rejected[0].Reason)

	e.finish("1.1", "p1", orchestration.PhaseFailed)
	e.finish("1.1", "p2", orchestration.PhaseFailed)
	j = e.job(j.ID)
	require.Equal(t, fl.JobFailed, j.Status.Phase)
	require.Equal(t, "RoundFailed", j.Status.Reason)
}

func TestRestartMidRoundCountsEachUpdateOnce(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 10, 1, 1))
	require.NoError(t, e.send(j, "1", "p2", 10, 3, 3))

	// A crash; meanwhile p3's task failed, which the new coordinator never
	// heard through the observer.
	e.engine.set(e.engine.round("1")["p3"].ID, orchestration.PhaseFailed, "PropletLost")
	e.restart()

	// The proplets' outboxes redeliver what was not acknowledged.
	require.NoError(t, e.send(j, "1", "p2", 10, 3, 3))
	j = e.job(j.ID)
	require.Equal(t, fl.RoundClosed, j.Status.Rounds[0].Phase, "recovered failure of p3 closes the round")
	require.Equal(t, int64(20), j.Status.Checkpoints[0].TotalSamples)
	require.Equal(t, fl.RejectDuplicate, j.Status.Rejected[0].Reason)
	require.InDeltaSlice(t, []float32{2, 2}, e.model_(j.Status.ModelDigest), 1e-6)
	require.Equal(t, 2, j.Status.CurrentRound)
}

// A crash after submitting a round's tasks but before recording them must
// not submit them again.
func TestRestartWhileStartingReusesTasks(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	before := e.engine.submits
	_, err = e.store.UpdateJob(e.ctx, j.ID, func(j *fl.Job) error {
		r := j.Current()
		r.Phase = fl.RoundStarting
		for i := range r.Participants {
			r.Participants[i].TaskID, r.Participants[i].State = "", fl.PartPending
		}
		return nil
	})
	require.NoError(t, err)
	e.restart()
	j = e.job(j.ID)
	require.Equal(t, fl.RoundRunning, j.Current().Phase)
	require.Equal(t, before, e.engine.submits)
	for _, p := range j.Current().Participants {
		require.Equal(t, e.engine.round("1")[p.PropletID].ID, p.TaskID)
	}
}

func TestStop(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(2))
	require.NoError(t, err)
	j, err = e.c.Stop(e.ctx, j.ID, "")
	require.NoError(t, err)
	require.Equal(t, fl.JobStopped, j.Status.Phase)
	for _, task := range e.engine.round("1") {
		require.Equal(t, orchestration.PhaseCancelled, task.Status.Phase)
	}
	_, err = e.c.Stop(e.ctx, j.ID, "")
	require.ErrorIs(t, err, orchestration.ErrTerminal)
	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	require.Equal(t, fl.RejectLate, e.job(j.ID).Status.Rejected[0].Reason)
	_, err = e.c.Stop(e.ctx, "nope", "")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
}

func TestSelectorRotatesParticipants(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"c", "a", "b", "d"} {
		e.engine.proplets = append(e.engine.proplets, orchestration.Proplet{ID: id, Alive: id != "d", Labels: map[string]string{"zone": "x"}})
	}
	s := e.spec(0)
	s.Selector, s.Count, s.Rounds.Total = map[string]string{"zone": "x"}, 2, 3
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	ids := func(r fl.Round) []string {
		var out []string
		for _, p := range r.Participants {
			out = append(out, p.PropletID)
		}
		return out
	}
	require.Equal(t, []string{"a", "b"}, ids(*j.Current()))
	require.NoError(t, e.send(j, "1", "a", 1, 1, 1))
	require.NoError(t, e.send(j, "1", "b", 1, 1, 1))
	require.Equal(t, []string{"c", "a"}, ids(current(e.job(j.ID))))
}

func TestServerOptimizerStateCarried(t *testing.T) {
	e := newEnv(t)
	s := e.spec(1)
	s.Aggregator = fl.AggregatorSpec{Algorithm: "fedavgm", Config: map[string]float64{"server_lr": 1, "momentum": 0.5}}
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	j = e.job(j.ID)
	state := j.Status.StateDigest
	require.NotEmpty(t, state)
	require.Equal(t, []string{state}, e.scratch(), "the update went; the state stays for round 2")
	e.restart() // state lives in the store, not in memory
	require.True(t, e.blobs.has(state), "recovery keeps a running job's state")
	require.NoError(t, e.send(j, "2", "p1", 1, 2, 2))
	j = e.job(j.ID)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase)
	require.InDeltaSlice(t, []float32{2.5, 2.5}, e.model_(j.Status.ModelDigest), 1e-6)
	// No round follows: the state is dropped and collected.
	require.Empty(t, j.Status.StateDigest)
	require.Empty(t, e.scratch())
	require.False(t, e.blobs.has(state))
}

// Each round's optimizer state supersedes the last; only the newest is
// kept while the job runs, and a stopped job's goes too.
func TestServerOptimizerStateCollected(t *testing.T) {
	e := newEnv(t)
	s := e.spec(1)
	s.Rounds.Total = 5
	s.Aggregator = fl.AggregatorSpec{Algorithm: "fedadam"}
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	var states []string
	for round := 1; round <= 3; round++ {
		require.NoError(t, e.send(j, strconv.Itoa(round), "p1", 1, float32(round), float32(round)))
		st := e.job(j.ID).Status.StateDigest
		require.NotEmpty(t, st)
		states = append(states, st)
		require.Equal(t, []string{st}, e.scratch(), "round %d", round)
	}
	require.NotEqual(t, states[0], states[1])
	require.False(t, e.blobs.has(states[0]))
	_, err = e.c.Stop(e.ctx, j.ID, "enough")
	require.NoError(t, err)
	require.Empty(t, e.job(j.ID).Status.StateDigest)
	require.Empty(t, e.scratch())
}

// models is a registry of initial models by oci:// reference.
type models map[string][]byte

func (m models) FetchModel(_ context.Context, ref string) ([]byte, error) {
	if b, ok := m[ref]; ok {
		return b, nil
	}
	return nil, errors.New("manifest unknown")
}

// An oci:// modelRef is pulled once, at creation, and stored as a kept
// blob; the job keeps the reference in its spec and trains from the digest.
func TestModelRefFromRegistry(t *testing.T) {
	e := newEnv(t)
	pulled := tensor(t, 4, 8)
	e.models = models{"oci://registry.example/models/digits:v1": pulled, "oci://registry.example/models/junk:v1": []byte("not a model")}
	e.restart()
	c := e.c

	s := e.spec(1)
	s.ModelRef = "oci://registry.example/models/digits:v1"
	j, err := c.Create(e.ctx, s)
	require.NoError(t, err)
	require.Equal(t, s.ModelRef, j.Spec.ModelRef)
	require.Equal(t, digestOf(pulled), j.Status.ModelDigest)
	require.True(t, e.blobs.has(j.Status.ModelDigest))
	require.Empty(t, e.scratch(), "an initial model is kept")
	task := e.engine.round("1")["p1"]
	require.Equal(t, wire.BlobScheme+digestOf(pulled), task.Spec.Env["MODEL_URI"])

	before := e.blobs.len()
	s.ModelRef = "oci://registry.example/models/missing:v1"
	_, err = c.Create(e.ctx, s)
	require.ErrorIs(t, err, fl.ErrModelUnavailable)
	require.NotErrorIs(t, err, orchestration.ErrInvalid, "a registry outage is worth retrying")
	require.ErrorContains(t, err, "manifest unknown")

	s.ModelRef = "oci://registry.example/models/junk:v1"
	_, err = c.Create(e.ctx, s)
	require.ErrorIs(t, err, orchestration.ErrInvalid)
	require.ErrorContains(t, err, "not a safetensors model")
	require.Equal(t, before, e.blobs.len(), "nothing stored for a failed pull or a wrong artifact")

	// A coordinator without registry access refuses the reference.
	e.models = nil
	e.restart()
	s.ModelRef = "oci://registry.example/models/digits:v1"
	_, err = e.c.Create(e.ctx, s)
	require.ErrorIs(t, err, orchestration.ErrInvalid)
	require.ErrorContains(t, err, "does not pull models")

	for _, bad := range []string{"oci://", "oci://host", "oci://host/", "oci://ho st/repo", "s3://b/k"} {
		s.ModelRef = bad
		require.ErrorIs(t, fl.Validate(s), orchestration.ErrInvalid, bad)
	}
}

func TestTargetMetricEndsEarly(t *testing.T) {
	e := newEnv(t)
	s := e.spec(1)
	s.Rounds = fl.Rounds{Total: 10, TargetMetric: &fl.TargetMetric{Name: "accuracy", Value: 0.9}}
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 0.5, 0))
	require.Equal(t, fl.JobRunning, e.job(j.ID).Status.Phase)
	require.NoError(t, e.send(j, "2", "p1", 1, 0.95, 0))
	j = e.job(j.ID)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase)
	require.Equal(t, "TargetReached", j.Status.Reason)
	require.Len(t, j.Status.Checkpoints, 2)
}

func TestValidate(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		mod  func(*fl.JobSpec)
	}{
		{"model ref scheme", func(s *fl.JobSpec) { s.ModelRef = "http://x" }},
		{"no image", func(s *fl.JobSpec) { s.TaskWasmImage = "" }},
		{"bad image", func(s *fl.JobSpec) { s.TaskWasmImage = "ftp://x" }},
		{"no participants", func(s *fl.JobSpec) { s.Participants = nil }},
		{"both", func(s *fl.JobSpec) { s.Selector = map[string]string{"a": "b"} }},
		{"kOfN too big", func(s *fl.JobSpec) { s.KOfN = 4 }},
		{"min above k", func(s *fl.JobSpec) { s.KOfN, s.MinUpdates = 1, 2 }},
		{"no rounds", func(s *fl.JobSpec) { s.Rounds.Total = 0 }},
		{"negative timeout", func(s *fl.JobSpec) { s.TimeoutSeconds = -1 }},
		{"unknown algorithm", func(s *fl.JobSpec) { s.Aggregator.Algorithm = "magic" }},
		{"bad aggregator config", func(s *fl.JobSpec) { s.Aggregator.Config = map[string]float64{"beta": 1} }},
		{"repeated participant", func(s *fl.JobSpec) { s.Participants[1].PropletID = "p1" }},
		{"bad policy", func(s *fl.JobSpec) { s.OnRoundFailure.Action = "pray" }},
		{"target without name", func(s *fl.JobSpec) { s.Rounds.TargetMetric = &fl.TargetMetric{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec(3)
			s.Participants = append([]fl.Participant(nil), s.Participants...)
			tc.mod(&s)
			_, err := e.c.Create(e.ctx, s)
			require.ErrorIs(t, err, orchestration.ErrInvalid)
		})
	}
	// A model that is not in the blob store, or not a model.
	s := e.spec(1)
	s.ModelRef = wire.BlobScheme + "sha256:" + strings.Repeat("b", 64)
	_, err := e.c.Create(e.ctx, s)
	require.ErrorIs(t, err, orchestration.ErrInvalid)
	d, err := e.blobs.PutBytes([]byte("not a model"))
	require.NoError(t, err)
	s.ModelRef = wire.BlobScheme + d
	_, err = e.c.Create(e.ctx, s)
	require.ErrorIs(t, err, orchestration.ErrInvalid)
	jobs, err := e.c.List(e.ctx)
	require.NoError(t, err)
	require.Empty(t, jobs)
}

func current(j fl.Job) fl.Round { return *j.Current() }

// Old rounds keep only their summary, so the job record stays small; an
// update for one of them is still recognised as late.
func TestOldRoundsCompacted(t *testing.T) {
	e := newEnv(t)
	s := e.spec(1)
	s.Rounds.Total = 5
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	round1 := e.engine.round("1")["p1"].ID
	for r := 1; r <= 5; r++ {
		require.NoError(t, e.send(j, fmt.Sprint(r), "p1", 7, 1, 1))
	}
	j = e.job(j.ID)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase)
	require.Len(t, j.Status.Rounds, 5)
	for i, r := range j.Status.Rounds {
		require.Equal(t, int64(7), r.TotalSamples)
		require.NotEmpty(t, r.Checkpoint)
		if i < 2 {
			require.Nil(t, r.Updates)
			require.Nil(t, r.Participants)
		} else {
			require.Len(t, r.Updates, 1)
		}
	}
	require.NoError(t, e.c.Receive(e.ctx, fl.Update{JobID: j.ID, RoundID: "1", TaskID: round1, PropletID: "p1", Tensor: tensor(t, 1, 1)}))
	require.Equal(t, fl.RejectLate, e.job(j.ID).Status.Rejected[0].Reason)
}

// sendRaw delivers an update with the given tensor bytes.
func (e *env) sendRaw(j fl.Job, rid, p string, raw []byte) error {
	task := e.engine.round(rid)[p]
	require.NotEmpty(e.t, task.ID, "no task on %s in round %s", p, rid)
	return e.c.Receive(e.ctx, fl.Update{JobID: j.ID, RoundID: rid, TaskID: task.ID, PropletID: p, Attempt: 1,
		NumSamples: 1, Tensor: raw})
}

func (e *env) scratch() []string {
	ds, err := e.blobs.Scratch()
	require.NoError(e.t, err)
	return ds
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// After a round closes its updates are deleted; the checkpoint, the
// initial model and any update whose digest is also a kept blob or an
// update of a round still running stay.
func TestUpdatesCollectedAfterRoundClose(t *testing.T) {
	e := newEnv(t)
	initial := strings.TrimPrefix(e.model, wire.BlobScheme)
	j, err := e.c.Create(e.ctx, e.spec(3))
	require.NoError(t, err)
	// Another job whose running round holds an update equal to one of j's.
	other := e.spec(2)
	other.Participants = []fl.Participant{{PropletID: "q1"}, {PropletID: "q2"}}
	o, err := e.c.Create(e.ctx, other)
	require.NoError(t, err)
	require.NoError(t, e.send(o, "1", "q1", 1, 3, 3))

	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	require.NoError(t, e.send(j, "1", "p2", 1, 3, 3))            // same as o's
	require.NoError(t, e.sendRaw(j, "1", "p3", tensor(t, 0, 0))) // same as the initial model
	j = e.job(j.ID)
	require.Equal(t, fl.RoundClosed, j.Status.Rounds[0].Phase)
	ups := j.Status.Rounds[0].Updates
	require.Len(t, ups, 3)
	require.False(t, e.blobs.has(ups[0].Digest), "update collected")
	require.True(t, e.blobs.has(ups[1].Digest), "update of o's running round kept")
	require.Equal(t, initial, ups[2].Digest)
	require.True(t, e.blobs.has(initial), "initial model kept")
	ck := j.Status.Checkpoints[0].Digest
	require.True(t, e.blobs.has(ck))
	require.Equal(t, []string{ups[1].Digest}, e.scratch())

	// Round 2: a client sends the round-1 checkpoint back unchanged.
	ckBytes, err := e.blobs.Blob(e.ctx, ck)
	require.NoError(t, err)
	require.NoError(t, e.sendRaw(j, "2", "p1", ckBytes))
	require.NoError(t, e.send(j, "2", "p2", 1, 5, 5))
	require.NoError(t, e.send(j, "2", "p3", 1, 6, 6))
	j = e.job(j.ID)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase)
	require.True(t, e.blobs.has(ck), "checkpoint equal to an update kept")
	for _, c := range j.Status.Checkpoints {
		require.True(t, e.blobs.has(c.Digest))
	}
	require.Equal(t, []string{ups[1].Digest}, e.scratch(), "o still runs")

	require.NoError(t, e.send(o, "1", "q2", 1, 7, 7))
	require.Equal(t, fl.RoundClosed, e.job(o.ID).Status.Rounds[0].Phase)
	require.Empty(t, e.scratch())
	require.False(t, e.blobs.has(ups[1].Digest))
	// Left: the initial model and 3 checkpoints.
	require.Equal(t, 4, e.blobs.len())
}

// A crash after a round's close is recorded but before its updates are
// deleted (here: the deletes fail) leaves them; the restart collects them,
// and an update stored but never recorded, but not the running round's.
func TestUpdatesCollectedAfterCrash(t *testing.T) {
	e := newEnv(t)
	s := e.spec(3)
	s.Rounds.Total = 3
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	e.blobs.failDeletes = true
	for _, p := range []string{"p1", "p2", "p3"} {
		require.NoError(t, e.send(j, "1", p, 1, 1, 1+float32(p[1])))
	}
	require.NoError(t, e.send(j, "2", "p1", 1, 2, 2)) // round 2 running
	j = e.job(j.ID)
	require.Equal(t, fl.RoundClosed, j.Status.Rounds[0].Phase)
	for _, u := range j.Status.Rounds[0].Updates {
		require.True(t, e.blobs.has(u.Digest), "not deleted yet")
	}
	stray, err := e.blobs.PutScratch(tensor(t, 9, 9)) // stored, never recorded
	require.NoError(t, err)
	require.Len(t, e.scratch(), 5)

	e.blobs.failDeletes = false
	e.restart()
	live := j.Status.Rounds[1].Updates[0].Digest
	require.Equal(t, []string{live}, e.scratch())
	require.False(t, e.blobs.has(stray))
	for _, u := range j.Status.Rounds[0].Updates {
		require.False(t, e.blobs.has(u.Digest))
	}
	require.True(t, e.blobs.has(j.Status.Checkpoints[0].Digest))

	// The running round still closes from its blobs.
	require.NoError(t, e.send(j, "2", "p2", 1, 2, 2))
	require.NoError(t, e.send(j, "2", "p3", 1, 2, 2))
	j = e.job(j.ID)
	require.Equal(t, fl.RoundClosed, j.Status.Rounds[1].Phase)
	require.InDeltaSlice(t, []float32{2, 2}, e.model_(j.Status.ModelDigest), 1e-6)
	require.Empty(t, e.scratch())
}

// The updates of a failed (retried) round and of a stopped job go too.
func TestUpdatesCollectedAfterFailureAndStop(t *testing.T) {
	e := newEnv(t)
	s := e.spec(3)
	s.MinUpdates = 2
	j, err := e.c.Create(e.ctx, s)
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p1", 1, 1, 1))
	require.Len(t, e.scratch(), 1)
	e.finish("1", "p2", orchestration.PhaseFailed)
	e.finish("1", "p3", orchestration.PhaseFailed)
	j = e.job(j.ID)
	require.Equal(t, fl.RoundFailed, j.Status.Rounds[0].Phase)
	require.Equal(t, "1.1", j.Current().ID)
	require.Empty(t, e.scratch())
	require.False(t, e.blobs.has(j.Status.Rounds[0].Updates[0].Digest))

	require.NoError(t, e.send(j, "1.1", "p2", 1, 2, 2))
	require.Len(t, e.scratch(), 1)
	_, err = e.c.Stop(e.ctx, j.ID, "")
	require.NoError(t, err)
	require.Empty(t, e.scratch())
	require.True(t, e.blobs.has(strings.TrimPrefix(e.model, wire.BlobScheme)))
}

// A job whose modelRef names another job's update makes it kept.
func TestModelRefOnUpdateKept(t *testing.T) {
	e := newEnv(t)
	j, err := e.c.Create(e.ctx, e.spec(2))
	require.NoError(t, err)
	raw := tensor(t, 4, 4)
	require.NoError(t, e.sendRaw(j, "1", "p1", raw))
	other := e.spec(1)
	other.Participants = []fl.Participant{{PropletID: "q1"}}
	other.ModelRef = wire.BlobScheme + digestOf(raw)
	_, err = e.c.Create(e.ctx, other)
	require.NoError(t, err)
	require.NoError(t, e.send(j, "1", "p2", 1, 1, 1))
	require.Equal(t, fl.RoundClosed, e.job(j.ID).Status.Rounds[0].Phase)
	require.True(t, e.blobs.has(digestOf(raw)))
	require.Empty(t, e.scratch())
}
