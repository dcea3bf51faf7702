package fl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl/aggregate"
)

// DefaultMaxUpdateBytes is Config.MaxUpdateBytes's default, 256 MiB.
const DefaultMaxUpdateBytes = 256 << 20

// Config tunes the coordinator; zero fields take the documented defaults.
type Config struct {
	// TickInterval is how often Run checks round deadlines. Default 1s.
	TickInterval time.Duration
	// MaxRejections is how many rejected updates a job keeps. Default 100.
	MaxRejections int
	// MaxUpdateBytes bounds one update's tensor. Default
	// DefaultMaxUpdateBytes; the embedded broker's limit on fl/updates
	// follows it (manager/broker Limits).
	MaxUpdateBytes int
	// UpdateGrace is how long a participant whose task succeeded without
	// an accepted update still counts as outstanding. A proplet sends the
	// update before the task's result, but after a manager restart the
	// result may be read back from the engine while the update is still
	// being re-sent from the proplet's outbox. Default 10s.
	UpdateGrace time.Duration
}

// Deps are the coordinator's ports. Store, Engine and Blobs are required.
type Deps struct {
	Store  Store
	Engine Engine
	Blobs  Blobs
	// Models, when set, fetches oci:// modelRefs; without it only blob://
	// refs are accepted.
	Models Models
	// Changes is where the engine's observer queues task changes; nil
	// means a queue of the coordinator's own, fed by TaskChanged.
	Changes *Changes
	Clock   orchestration.Clock
	NewID   orchestration.IDGen
	Logger  *slog.Logger
}

// ErrModelUnavailable wraps a failure to fetch an initial model from its
// registry: unlike ErrInvalid, trying again later may succeed.
var ErrModelUnavailable = errors.New("initial model unavailable")

// Coordinator runs federated jobs. All methods are safe for concurrent use.
//
// One mutex serialises every decision about jobs: rounds are seconds to
// hours long and decisions take milliseconds, so simplicity wins over
// per-job locking. Every decision is written to the Store before it is
// acted on (tasks submitted, tasks stopped), so Recover can finish what a
// crash interrupted.
type Coordinator struct {
	cfg    Config
	store  Store
	engine Engine
	blobs  Blobs
	fetch  Models
	clock  orchestration.Clock
	newID  orchestration.IDGen
	log    *slog.Logger

	mu     sync.Mutex
	active map[string]struct{} // Running jobs
	models map[string]*model   // job id -> its current global model
	// jobs caches running jobs as last written: every write goes through
	// c.update under c.mu, so the cache is exact and decisions need no
	// store reads (a job record grows with its rounds).
	jobs map[string]Job

	changes *Changes
}

type model struct {
	digest string
	vals   aggregate.Model
	shapes map[string][]int
}

// New builds a coordinator. Call Recover before serving, then Run.
func New(cfg Config, deps Deps) (*Coordinator, error) {
	if deps.Store == nil || deps.Engine == nil || deps.Blobs == nil {
		return nil, errors.New("fl: store, engine and blobs are required")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	if cfg.UpdateGrace <= 0 {
		cfg.UpdateGrace = 10 * time.Second
	}
	if cfg.MaxRejections <= 0 {
		cfg.MaxRejections = 100
	}
	if cfg.MaxUpdateBytes <= 0 {
		cfg.MaxUpdateBytes = DefaultMaxUpdateBytes
	}
	if deps.Clock == nil {
		deps.Clock = orchestration.SystemClock{}
	}
	if deps.NewID == nil {
		deps.NewID = orchestration.NewTimeIDGen(deps.Clock)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Changes == nil {
		deps.Changes = NewChanges()
	}
	return &Coordinator{
		cfg: cfg, store: deps.Store, engine: deps.Engine, blobs: deps.Blobs, fetch: deps.Models,
		clock: deps.Clock, newID: deps.NewID, log: deps.Logger,
		active:  make(map[string]struct{}),
		models:  make(map[string]*model),
		jobs:    make(map[string]Job),
		changes: deps.Changes,
	}, nil
}

const defaultTimeout = 600 * time.Second

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), orchestration.ErrInvalid)
}

// Validate reports the first problem with a spec, wrapping ErrInvalid.
func Validate(s JobSpec) error {
	switch {
	case !blobRef(s.ModelRef) && !ociRef(s.ModelRef):
		return invalid("modelRef %q: want %ssha256:<hex> or oci://host/repo[:tag][@sha256:<hex>]", s.ModelRef, wire.BlobScheme)
	case s.TaskWasmImage == "":
		return invalid("taskWasmImage is required")
	case len(s.Participants) == 0 && len(s.Selector) == 0:
		return invalid("set participants or a selector")
	case len(s.Participants) > 0 && len(s.Selector) > 0:
		return invalid("set participants or a selector, not both")
	case s.Count < 0 || s.Fraction < 0 || s.Fraction > 1:
		return invalid("count must be >= 0 and fraction within [0, 1]")
	case s.KOfN < 0 || s.MinUpdates < 0:
		return invalid("kOfN and minUpdates must not be negative")
	case len(s.Participants) > 0 && s.KOfN > len(s.Participants):
		return invalid("kOfN %d exceeds the %d participants", s.KOfN, len(s.Participants))
	case s.KOfN > 0 && s.MinUpdates > s.KOfN:
		return invalid("minUpdates %d exceeds kOfN %d", s.MinUpdates, s.KOfN)
	case s.TimeoutSeconds < 0 || math.IsNaN(s.TimeoutSeconds) || s.TimeoutSeconds > 30*24*3600:
		return invalid("timeoutSeconds must be between 0 and 30 days")
	case s.Rounds.Total < 1 || s.Rounds.Total > 100000:
		return invalid("rounds.total must be between 1 and 100000")
	case s.OnRoundFailure.Action != "" && s.OnRoundFailure.Action != ActionRetry && s.OnRoundFailure.Action != ActionFail:
		return invalid("onRoundFailure.action %q: want retry or fail", s.OnRoundFailure.Action)
	case s.OnRoundFailure.MaxRetries < 0:
		return invalid("onRoundFailure.maxRetries must not be negative")
	}
	if tm := s.Rounds.TargetMetric; tm != nil && (tm.Name == "" || (tm.Mode != "" && tm.Mode != "max" && tm.Mode != "min")) {
		return invalid("rounds.targetMetric needs a name and mode max or min")
	}
	seen := map[string]bool{}
	for _, p := range s.Participants {
		if p.PropletID == "" || seen[p.PropletID] {
			return invalid("participants: empty or repeated propletId %q", p.PropletID)
		}
		seen[p.PropletID] = true
	}
	if _, err := aggregate.New(s.Aggregator.Algorithm, s.Aggregator.Config); err != nil {
		return fmt.Errorf("aggregator: %w: %w", err, orchestration.ErrInvalid)
	}
	// The task spec must be acceptable to the engine too.
	probe := orchestration.TaskSpec{Image: s.TaskWasmImage, PropletID: "probe"}
	if err := orchestration.ValidateSpec(probe); err != nil {
		return fmt.Errorf("taskWasmImage: %w", err)
	}
	return nil
}

func blobRef(ref string) bool {
	d, ok := strings.CutPrefix(ref, wire.BlobScheme)
	return ok && orchestration.ValidDigest(d)
}

// ociRef checks the shape only; the fetcher parses the reference.
func ociRef(ref string) bool {
	rest, ok := strings.CutPrefix(ref, "oci://")
	host, repo, _ := strings.Cut(rest, "/")
	return ok && host != "" && repo != "" && !strings.ContainsAny(rest, " \t\n")
}

// Create validates a job, checks its initial model and starts round 1.
func (c *Coordinator) Create(ctx context.Context, spec JobSpec) (Job, error) {
	return c.CreateNamed(ctx, c.newID(), spec)
}

// CreateNamed is Create with the job id chosen by the caller (the
// operator names a job after its FederatedJob).
//
// An oci:// modelRef is pulled before anything is written, without
// holding the coordinator's lock; the pulled model is stored as a kept
// blob and the job's status names its digest, while its spec keeps the
// reference as given.
func (c *Coordinator) CreateNamed(ctx context.Context, id string, spec JobSpec) (Job, error) {
	if err := Validate(spec); err != nil {
		return Job{}, err
	}
	digest, err := c.initialModel(ctx, spec.ModelRef)
	if err != nil {
		return Job{}, err
	}
	now := c.clock.Now()
	j := Job{ID: id, Spec: spec, Status: JobStatus{
		Phase: JobRunning, CurrentRound: 1, ModelDigest: digest, CreatedAt: now, UpdatedAt: now,
	}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.store.CreateJob(ctx, j); err != nil {
		return Job{}, fmt.Errorf("create job: %w", err)
	}
	c.active[j.ID] = struct{}{}
	c.jobs[j.ID] = j
	c.startRound(ctx, j.ID, 1, 0)
	return c.store.GetJob(ctx, j.ID)
}

// initialModel checks the model ref names and makes it a kept blob,
// fetching it first if it is in a registry; it returns its digest.
func (c *Coordinator) initialModel(ctx context.Context, ref string) (string, error) {
	if d, ok := strings.CutPrefix(ref, wire.BlobScheme); ok {
		if _, err := c.loadModel(ctx, d); err != nil {
			return "", invalid("modelRef %s: %v", ref, err)
		}
		return d, c.keepModel(ctx, d)
	}
	if c.fetch == nil {
		return "", invalid("modelRef %s: this manager does not pull models from registries", ref)
	}
	b, err := c.fetch.FetchModel(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("modelRef %s: %w: %w", ref, ErrModelUnavailable, err)
	}
	// Checked before it is stored (kept), so a wrong artifact leaves
	// nothing.
	if vals, _, err := safetensors.DecodeF32(b); err != nil || len(vals) == 0 {
		if err == nil {
			err = errors.New("no tensors")
		}
		return "", invalid("modelRef %s: not a safetensors model: %v", ref, err)
	}
	d, err := c.blobs.PutBytes(b)
	if err != nil {
		return "", fmt.Errorf("store initial model: %w", err)
	}
	return d, nil
}

// keepModel makes an initial model kept: a modelRef may name any blob,
// even another job's client update, which collect would delete.
func (c *Coordinator) keepModel(ctx context.Context, digest string) error {
	if _, ok := c.blobs.(ScratchBlobs); !ok {
		return nil
	}
	b, err := c.blobs.Blob(ctx, digest)
	if err != nil {
		return invalid("modelRef: %v", err)
	}
	if _, err := c.blobs.PutBytes(b); err != nil {
		return fmt.Errorf("keep initial model: %w", err)
	}
	return nil
}

// Get returns a job.
func (c *Coordinator) Get(ctx context.Context, id string) (Job, error) {
	return c.store.GetJob(ctx, id)
}

// List returns every job.
func (c *Coordinator) List(ctx context.Context) ([]Job, error) {
	return c.store.ListJobs(ctx)
}

// Checkpoints returns a job's checkpoints, oldest first.
func (c *Coordinator) Checkpoints(ctx context.Context, id string) ([]Checkpoint, error) {
	j, err := c.store.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	return j.Status.Checkpoints, nil
}

// Stop ends a running job and stops its round's tasks. Stopping a finished
// job returns orchestration.ErrTerminal.
func (c *Coordinator) Stop(ctx context.Context, id, message string) (Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if message == "" {
		message = "stopped by user"
	}
	j, err := c.update(ctx, id, func(j *Job) error {
		if j.Status.Phase.Terminal() {
			return fmt.Errorf("job %s is %s: %w", id, j.Status.Phase, orchestration.ErrTerminal)
		}
		c.endJob(j, JobStopped, "Stopped", message)
		return nil
	})
	if err != nil {
		return j, err
	}
	c.stopTasks(ctx, j, "federated job stopped")
	c.collect()
	return j, nil
}

// endJob finishes a job and the round in progress. Callers write j.
func (c *Coordinator) endJob(j *Job, phase JobPhase, reason, message string) {
	now := c.clock.Now()
	j.Status.Phase, j.Status.Reason, j.Status.Message, j.Status.FinishedAt = phase, reason, message, now
	if r := j.Current(); r != nil && (r.Phase == RoundRunning || r.Phase == RoundStarting) {
		r.Phase, r.Reason, r.Message, r.ClosedAt = RoundFailed, reason, message, now
		markStopped(r)
	}
}

// markStopped ends participants that were still at work.
func markStopped(r *Round) {
	for i := range r.Participants {
		p := &r.Participants[i]
		if p.State == PartPending || p.State == PartSubmitted || p.State == PartRunning {
			p.State = PartStopped
		}
	}
}

// stopTasks cancels the engine tasks of j's last round that may still run;
// their updates, if any arrive, are rejected as late.
func (c *Coordinator) stopTasks(ctx context.Context, j Job, why string) {
	if len(j.Status.Rounds) == 0 {
		return
	}
	for _, p := range j.Current().Participants {
		if p.TaskID == "" || p.State != PartStopped {
			continue
		}
		if _, err := c.engine.Stop(ctx, p.TaskID, why); err != nil && !errors.Is(err, orchestration.ErrTerminal) && !errors.Is(err, orchestration.ErrNotFound) {
			c.log.Warn("stop FL task", "job", j.ID, "task", p.TaskID, "err", err)
		}
	}
}

// update writes a job through the store, stamping UpdatedAt; it keeps the
// active set in step. It returns ErrNoChange when fn skipped the write.
// Callers hold c.mu.
func (c *Coordinator) update(ctx context.Context, id string, fn func(*Job) error) (Job, error) {
	now := c.clock.Now()
	// Stores treat ErrNoChange as success; callers need to know.
	var unchanged bool
	j, err := c.store.UpdateJob(ctx, id, func(j *Job) error {
		unchanged = false
		if err := fn(j); err != nil {
			unchanged = errors.Is(err, orchestration.ErrNoChange)
			return err
		}
		j.Status.UpdatedAt = now
		if j.Status.Phase.Terminal() {
			// No round follows: the optimizer state is garbage (collect).
			j.Status.StateDigest = ""
		}
		return nil
	})
	if err == nil && unchanged {
		err = orchestration.ErrNoChange
	}
	if err != nil {
		return j, err
	}
	if j.Status.Phase.Terminal() {
		delete(c.active, id)
		delete(c.models, id)
		delete(c.jobs, id)
	} else {
		c.jobs[id] = j
	}
	return j, nil
}

// load returns a job, from the cache when it is running. Callers hold c.mu
// and must not modify the result.
func (c *Coordinator) load(ctx context.Context, id string) (Job, error) {
	if j, ok := c.jobs[id]; ok {
		return j, nil
	}
	return c.store.GetJob(ctx, id)
}

func roundID(n, attempt int) string {
	if attempt == 0 {
		return strconv.Itoa(n)
	}
	return strconv.Itoa(n) + "." + strconv.Itoa(attempt)
}

// startRound chooses participants, persists the round as Starting, then
// submits its tasks. Callers hold c.mu.
func (c *Coordinator) startRound(ctx context.Context, id string, number, attempt int) {
	j, err := c.load(ctx, id)
	if err != nil {
		c.log.Error("start FL round", "job", id, "err", err)
		return
	}
	parts, err := c.choose(ctx, j, number)
	if err != nil {
		c.log.Warn("choose FL participants; retrying on the next tick", "job", id, "err", err)
		return
	}
	now := c.clock.Now()
	timeout := defaultTimeout
	if j.Spec.TimeoutSeconds > 0 {
		timeout = time.Duration(j.Spec.TimeoutSeconds * float64(time.Second))
	}
	k := j.Spec.KOfN
	if k == 0 || k > len(parts) {
		k = len(parts)
	}
	minUp := j.Spec.MinUpdates
	if minUp == 0 {
		minUp = 1
	}
	minUp = min(minUp, max(k, 1))
	r := Round{
		Number: number, Attempt: attempt, ID: roundID(number, attempt), Phase: RoundStarting,
		ModelURI: wire.BlobScheme + j.Status.ModelDigest, KOfN: k, MinUpdates: minUp,
		StartedAt: now, Deadline: now.Add(timeout),
	}
	for _, p := range parts {
		r.Participants = append(r.Participants, ParticipantStatus{PropletID: p, State: PartPending})
	}
	_, err = c.update(ctx, id, func(j *Job) error {
		if j.Status.Phase.Terminal() {
			return orchestration.ErrNoChange
		}
		if cur := j.Current(); cur != nil && cur.Number == number && cur.Attempt == attempt {
			return orchestration.ErrNoChange // already started
		}
		j.Status.CurrentRound = number
		j.Status.Rounds = append(j.Status.Rounds, r)
		return nil
	})
	if err != nil && !errors.Is(err, orchestration.ErrNoChange) {
		c.log.Error("persist FL round", "job", id, "round", r.ID, "err", err)
		return
	}
	c.submitRound(ctx, id)
}

// choose returns the round's participant proplet ids.
func (c *Coordinator) choose(ctx context.Context, j Job, number int) ([]string, error) {
	if len(j.Spec.Participants) > 0 {
		out := make([]string, len(j.Spec.Participants))
		for i, p := range j.Spec.Participants {
			out[i] = p.PropletID
		}
		return out, nil
	}
	all, err := c.engine.Proplets(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range all {
		if p.Alive && p.Matches(j.Spec.Selector) {
			ids = append(ids, p.ID)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return nil, fmt.Errorf("no alive proplet matches selector %v", j.Spec.Selector)
	}
	n := len(ids)
	switch {
	case j.Spec.Count > 0:
		n = min(j.Spec.Count, len(ids))
	case j.Spec.Fraction > 0:
		n = max(1, int(math.Ceil(j.Spec.Fraction*float64(len(ids)))))
	}
	// Rotate so successive rounds spread over every matching proplet.
	start := (number - 1) * n % len(ids)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, ids[(start+i)%len(ids)])
	}
	return out, nil
}

// hyperparams builds HYPERPARAMS for participant i of n.
func hyperparams(j Job, propletID string, i, n int) (string, error) {
	hp := map[string]any{}
	maps.Copy(hp, j.Spec.Hyperparams)
	for _, p := range j.Spec.Participants {
		if p.PropletID == propletID {
			maps.Copy(hp, p.Hyperparams)
		}
	}
	// Clients that shard data by position need to know theirs.
	hp["participant_index"] = i
	hp["participant_count"] = n
	b, err := json.Marshal(hp)
	return string(b), err
}

// submitRound submits the tasks of a Starting round that have none yet and
// moves it to Running. A task found by its labels is reused, so a crash
// between Submit and the write below never runs a participant twice.
// Callers hold c.mu.
func (c *Coordinator) submitRound(ctx context.Context, id string) {
	j, err := c.load(ctx, id)
	if err != nil || j.Status.Phase.Terminal() {
		return
	}
	r := j.Current()
	if r == nil || r.Phase != RoundStarting {
		return
	}
	type result struct {
		taskID, state, reason, msg string
	}
	results := make([]result, len(r.Participants))
	for i, p := range r.Participants {
		if p.TaskID != "" {
			results[i] = result{taskID: p.TaskID, state: p.State}
			continue
		}
		labels := map[string]string{LabelJob: j.ID, LabelRound: r.ID, LabelProplet: p.PropletID}
		page, err := c.engine.List(ctx, orchestration.TaskFilter{Labels: labels, Limit: 1})
		if err == nil && len(page.Tasks) > 0 {
			results[i] = result{taskID: page.Tasks[0].ID, state: PartSubmitted}
			continue
		}
		hp, err := hyperparams(j, p.PropletID, i, len(r.Participants))
		if err != nil {
			results[i] = result{state: PartFailed, reason: "InvalidHyperparams", msg: err.Error()}
			continue
		}
		spec := orchestration.TaskSpec{
			Name:  "fl-" + r.ID + "-" + p.PropletID,
			Image: j.Spec.TaskWasmImage,
			Env: map[string]string{
				EnvRoundID: r.ID, EnvModelURI: r.ModelURI, EnvHyperparams: hp, EnvJobID: j.ID,
			},
			Labels:      labels,
			PropletID:   p.PropletID,
			Timeout:     r.Deadline.Sub(r.StartedAt),
			MaxAttempts: 1,
			MemoryPages: j.Spec.MemoryPages,
		}
		t, err := c.engine.Submit(ctx, spec)
		if err != nil {
			// Not retried: a spec the engine refuses stays refused.
			results[i] = result{state: PartFailed, reason: "SubmitFailed", msg: err.Error()}
			continue
		}
		results[i] = result{taskID: t.ID, state: PartSubmitted}
	}
	_, err = c.update(ctx, id, func(j *Job) error {
		cur := j.Current()
		if j.Status.Phase.Terminal() || cur == nil || cur.ID != r.ID || cur.Phase != RoundStarting {
			return orchestration.ErrNoChange
		}
		for i := range cur.Participants {
			p := &cur.Participants[i]
			p.TaskID = results[i].taskID
			if p.State == PartPending {
				p.State, p.Reason, p.Message = results[i].state, results[i].reason, results[i].msg
			}
		}
		cur.Phase = RoundRunning
		return nil
	})
	if err != nil && !errors.Is(err, orchestration.ErrNoChange) {
		c.log.Error("persist FL round tasks", "job", id, "round", r.ID, "err", err)
		return
	}
	c.evaluate(ctx, id)
}

// evaluate decides whether the current round closes, fails or waits.
// Callers hold c.mu.
func (c *Coordinator) evaluate(ctx context.Context, id string) {
	j, err := c.load(ctx, id)
	if err != nil || j.Status.Phase.Terminal() {
		return
	}
	r := j.Current()
	if r == nil {
		return
	}
	switch r.Phase {
	case RoundStarting:
		c.submitRound(ctx, id)
		return
	case RoundRunning:
	default:
		return
	}
	got := len(r.Updates)
	outstanding := 0
	now := c.clock.Now()
	for _, p := range r.Participants {
		switch {
		case p.State == PartPending || p.State == PartSubmitted || p.State == PartRunning:
			outstanding++
		case p.State == PartDone && now.Before(p.EndedAt.Add(c.cfg.UpdateGrace)):
			outstanding++ // its update may still be on its way
		}
	}
	switch {
	case got >= r.KOfN && got > 0:
		c.closeRound(ctx, j)
	case !now.Before(r.Deadline) || outstanding == 0:
		if got >= r.MinUpdates && got > 0 {
			c.closeRound(ctx, j)
			return
		}
		reason, msg := "NotEnoughUpdates", fmt.Sprintf("%d of %d updates, every participant finished; %d needed", got, len(r.Participants), r.MinUpdates)
		if outstanding > 0 {
			reason, msg = "DeadlineExceeded", fmt.Sprintf("%d updates by the deadline, %d needed", got, r.MinUpdates)
		}
		c.failRound(ctx, j, reason, msg)
	}
}

// closeRound aggregates the round's updates, writes the checkpoint and
// starts the next round (or ends the job). It is a pure function of the
// persisted round, so redoing it after a crash gives the same blobs.
// Callers hold c.mu.
func (c *Coordinator) closeRound(ctx context.Context, j Job) {
	r := *j.Current()
	fail := func(err error) {
		// An update that cannot be read now never will be: fail the job
		// rather than loop.
		c.log.Error("close FL round", "job", j.ID, "round", r.ID, "err", err)
		j2, uerr := c.update(ctx, j.ID, func(j *Job) error {
			if j.Status.Phase.Terminal() {
				return orchestration.ErrNoChange
			}
			c.endJob(j, JobFailed, "AggregationFailed", err.Error())
			return nil
		})
		if uerr == nil {
			c.stopTasks(ctx, j2, "federated job failed")
			c.collect()
		}
	}
	global, err := c.jobModel(ctx, j)
	if err != nil {
		fail(fmt.Errorf("global model: %w", err))
		return
	}
	agg, err := aggregate.New(j.Spec.Aggregator.Algorithm, j.Spec.Aggregator.Config)
	if err != nil {
		fail(err)
		return
	}
	updates := make([]aggregate.Update, 0, len(r.Updates))
	for _, u := range r.Updates {
		b, err := c.blobs.Blob(ctx, u.Digest)
		if err != nil {
			fail(fmt.Errorf("update of task %s: %w", u.TaskID, err))
			return
		}
		vals, _, err := safetensors.DecodeF32(b)
		if err != nil {
			fail(fmt.Errorf("update of task %s: %w", u.TaskID, err))
			return
		}
		updates = append(updates, aggregate.Update{NumSamples: u.NumSamples, Tensors: vals})
	}
	var state aggregate.State
	if j.Status.StateDigest != "" {
		b, err := c.blobs.Blob(ctx, j.Status.StateDigest)
		if err == nil {
			state, _, err = safetensors.DecodeF32(b)
		}
		if err != nil {
			fail(fmt.Errorf("optimizer state: %w", err))
			return
		}
	}
	next, nextState, err := agg.Aggregate(global.vals, updates, state)
	if err != nil {
		fail(err)
		return
	}
	algo := j.Spec.Aggregator.Algorithm
	if algo == "" {
		algo = aggregate.FedAvg
	}
	meta := map[string]string{"job": j.ID, "round": strconv.Itoa(r.Number), "algorithm": algo}
	ckpt, err := safetensors.EncodeF32(next, global.shapes, meta)
	if err != nil {
		fail(err)
		return
	}
	digest, err := c.blobs.PutBytes(ckpt)
	if err != nil {
		c.log.Error("store FL checkpoint; retrying on the next tick", "job", j.ID, "err", err)
		return
	}
	// The optimizer state serves the next round only: scratch, superseded
	// by the next round's, and dropped with the job (see update).
	stateDigest := ""
	if len(nextState) > 0 && r.Number < j.Spec.Rounds.Total {
		b, err := safetensors.EncodeF32(nextState, nil, nil)
		if err == nil {
			stateDigest, err = c.putScratch(b)
		}
		if err != nil {
			c.log.Error("store FL optimizer state; retrying on the next tick", "job", j.ID, "err", err)
			return
		}
	}

	var total int64
	parts := make([]string, 0, len(r.Updates))
	for _, u := range r.Updates {
		total += u.NumSamples
		parts = append(parts, u.PropletID)
	}
	metrics := weightedMetrics(r.Updates)
	now := c.clock.Now()
	done, doneReason, doneMsg := false, "", ""
	if r.Number >= j.Spec.Rounds.Total {
		done, doneReason, doneMsg = true, "Completed", fmt.Sprintf("%d rounds completed", r.Number)
	} else if tm := j.Spec.Rounds.TargetMetric; tm != nil {
		if v, ok := metrics[tm.Name]; ok && ((tm.Mode == "min" && v <= tm.Value) || (tm.Mode != "min" && v >= tm.Value)) {
			done, doneReason, doneMsg = true, "TargetReached", fmt.Sprintf("%s = %g after round %d", tm.Name, v, r.Number)
		}
	}
	j2, err := c.update(ctx, j.ID, func(j *Job) error {
		cur := j.Current()
		if j.Status.Phase.Terminal() || cur == nil || cur.ID != r.ID || cur.Phase != RoundRunning {
			return orchestration.ErrNoChange
		}
		cur.Phase, cur.ClosedAt, cur.Checkpoint = RoundClosed, now, digest
		cur.TotalSamples, cur.Metrics = total, metrics
		markStopped(cur)
		compact(j)
		j.Status.ModelDigest = digest
		j.Status.StateDigest = stateDigest
		j.Status.Checkpoints = append(j.Status.Checkpoints, Checkpoint{
			Round: r.Number, Digest: digest, Size: int64(len(ckpt)), Algorithm: algo,
			Participants: parts, TotalSamples: total, Metrics: metrics, CreatedAt: now,
		})
		if done {
			j.Status.Phase, j.Status.Reason, j.Status.Message, j.Status.FinishedAt = JobSucceeded, doneReason, doneMsg, now
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, orchestration.ErrNoChange) {
			c.log.Error("persist FL round close; retrying on the next tick", "job", j.ID, "err", err)
		}
		return
	}
	c.log.Info("FL round closed", "job", j.ID, "round", r.ID, "updates", len(r.Updates), "samples", total, "checkpoint", digest)
	c.stopTasks(ctx, j2, "federated round closed")
	// The close, with its checkpoint, is durable: the updates can go.
	c.collect()
	if !done {
		c.startRound(ctx, j.ID, r.Number+1, 0)
	}
}

// putScratch stores b as a scratch blob when the store collects garbage,
// as a kept one otherwise.
func (c *Coordinator) putScratch(b []byte) (string, error) {
	if sb, ok := c.blobs.(ScratchBlobs); ok {
		return sb.PutScratch(b)
	}
	return c.blobs.PutBytes(b)
}

// collect deletes the scratch blobs no running job references: client
// updates of rounds that closed, failed or were stopped, optimizer state
// superseded by a later round's or of a job that ended, and blobs stored
// but never recorded. It runs after such a round end is
// durable, and at Recover, so a crash between the two only delays it.
// Every running job is in c.jobs and every accepted update is recorded
// there under c.mu before any later collect, so a blob a round may still
// aggregate is never deleted; kept blobs (checkpoints, models, modules)
// are never deleted, even when an update has the same digest. Callers
// hold c.mu.
func (c *Coordinator) collect() {
	sb, ok := c.blobs.(ScratchBlobs)
	if !ok {
		return
	}
	ds, err := sb.Scratch()
	if err != nil {
		c.log.Warn("list FL update blobs; collecting later", "err", err)
		return
	}
	if len(ds) == 0 {
		return
	}
	live := map[string]bool{}
	for _, j := range c.jobs {
		if j.Status.StateDigest != "" {
			live[j.Status.StateDigest] = true
		}
		for _, r := range j.Status.Rounds {
			if r.Phase == RoundStarting || r.Phase == RoundRunning {
				for _, u := range r.Updates {
					live[u.Digest] = true
				}
			}
		}
	}
	n := 0
	for _, d := range ds {
		if live[d] {
			continue
		}
		if err := sb.DeleteScratch(d); err != nil {
			c.log.Warn("delete FL update blob; collecting later", "digest", d, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		c.log.Debug("FL update blobs collected", "deleted", n, "kept", len(ds)-n)
	}
}

// detailedRounds is how many of the latest rounds keep their participants
// and updates in the job record. Older rounds keep their summary (metrics,
// samples, checkpoint): every write rewrites the record, so it must not
// grow by a round's worth of detail per round.
const detailedRounds = 3

// compact drops the detail of rounds older than the latest detailedRounds.
// Late updates for them are still recognised: by round id as late, or as
// from an unknown task.
func compact(j *Job) {
	for i := 0; i < len(j.Status.Rounds)-detailedRounds; i++ {
		r := &j.Status.Rounds[i]
		r.Participants, r.Updates = nil, nil
	}
}

// weightedMetrics averages the clients' metrics weighted by their samples
// (equal weights when nobody reports samples).
func weightedMetrics(us []AcceptedUpdate) map[string]float64 {
	sums, weights := map[string]float64{}, map[string]float64{}
	var total int64
	for _, u := range us {
		total += u.NumSamples
	}
	for _, u := range us {
		w := float64(u.NumSamples)
		if total == 0 {
			w = 1
		}
		for k, v := range u.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			sums[k] += w * v
			weights[k] += w
		}
	}
	out := make(map[string]float64, len(sums))
	for k, s := range sums {
		if weights[k] > 0 {
			out[k] = s / weights[k]
		}
	}
	return out
}

// failRound records a failed round and retries it or fails the job.
// Callers hold c.mu.
func (c *Coordinator) failRound(ctx context.Context, j Job, reason, msg string) {
	r := *j.Current()
	policy := j.Spec.OnRoundFailure
	maxRetries := policy.MaxRetries
	if maxRetries == 0 && policy.Action == "" {
		maxRetries = 2
	}
	retry := policy.Action != ActionFail && r.Attempt < maxRetries
	now := c.clock.Now()
	j2, err := c.update(ctx, j.ID, func(j *Job) error {
		cur := j.Current()
		if j.Status.Phase.Terminal() || cur == nil || cur.ID != r.ID || cur.Phase != RoundRunning {
			return orchestration.ErrNoChange
		}
		cur.Phase, cur.Reason, cur.Message, cur.ClosedAt = RoundFailed, reason, msg, now
		markStopped(cur)
		if !retry {
			j.Status.Phase, j.Status.Reason, j.Status.FinishedAt = JobFailed, "RoundFailed", now
			j.Status.Message = fmt.Sprintf("round %d failed after %d attempts: %s", r.Number, r.Attempt+1, msg)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, orchestration.ErrNoChange) {
			c.log.Error("persist FL round failure", "job", j.ID, "err", err)
		}
		return
	}
	c.log.Warn("FL round failed", "job", j.ID, "round", r.ID, "reason", reason, "message", msg, "retry", retry)
	c.stopTasks(ctx, j2, "federated round failed")
	c.collect()
	if retry {
		c.startRound(ctx, j.ID, r.Number, r.Attempt+1)
	}
}

// loadModel fetches and decodes a model.
func (c *Coordinator) loadModel(ctx context.Context, digest string) (*model, error) {
	b, err := c.blobs.Blob(ctx, digest)
	if err != nil {
		return nil, err
	}
	vals, shapes, err := safetensors.DecodeF32(b)
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("model %s holds no tensors", digest)
	}
	return &model{digest: digest, vals: vals, shapes: shapes}, nil
}

// jobModel returns the job's current global model, cached since every
// update of a round is checked against it. Callers hold c.mu.
func (c *Coordinator) jobModel(ctx context.Context, j Job) (*model, error) {
	if m := c.models[j.ID]; m != nil && m.digest == j.Status.ModelDigest {
		return m, nil
	}
	m, err := c.loadModel(ctx, j.Status.ModelDigest)
	if err != nil {
		return nil, err
	}
	c.models[j.ID] = m
	return m, nil
}
