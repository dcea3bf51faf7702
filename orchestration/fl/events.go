package fl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl/aggregate"
)

// Receive takes a client's update. A nil error means it was either counted
// durably or recorded as rejected, so the caller may acknowledge it; an
// error means nothing was recorded and a redelivery is welcome.
//
// An update counts once per (job, round, task): a redelivered or repeated
// one is rejected as a duplicate, one for a round that is no longer
// running as late.
func (c *Coordinator) Receive(ctx context.Context, u Update) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, err := c.load(ctx, u.JobID)
	if errors.Is(err, orchestration.ErrNotFound) {
		c.log.Warn("FL update for an unknown job dropped", "job", u.JobID, "task", u.TaskID, "proplet", u.PropletID)
		return nil
	}
	if err != nil {
		return err
	}
	reason, msg := c.judge(ctx, j, u)
	if reason != "" {
		return c.reject(ctx, u, reason, msg)
	}
	// Scratch: collected once the round is over (collect). The blob and
	// the record referencing it are written under c.mu, which collect
	// holds too, so it never sees the blob without its record.
	digest, err := c.putScratch(u.Tensor)
	if err != nil {
		return fmt.Errorf("store FL update: %w", err)
	}
	now := c.clock.Now()
	if u.Time.IsZero() {
		u.Time = now
	}
	_, err = c.update(ctx, j.ID, func(j *Job) error {
		r := j.Current()
		if j.Status.Phase.Terminal() || r == nil || r.ID != u.RoundID || r.Phase != RoundRunning {
			return orchestration.ErrNoChange
		}
		for _, a := range r.Updates {
			if a.TaskID == u.TaskID {
				return orchestration.ErrNoChange
			}
		}
		for i := range r.Participants {
			if r.Participants[i].TaskID == u.TaskID {
				r.Participants[i].State = PartUpdated
			}
		}
		r.Updates = append(r.Updates, AcceptedUpdate{
			TaskID: u.TaskID, PropletID: u.PropletID, Attempt: u.Attempt, NumSamples: u.NumSamples,
			Metrics: u.Metrics, Digest: digest, Size: int64(len(u.Tensor)), ReceivedAt: now,
		})
		return nil
	})
	if err != nil && !errors.Is(err, orchestration.ErrNoChange) {
		return fmt.Errorf("record FL update: %w", err)
	}
	c.evaluate(ctx, j.ID)
	return nil
}

// judge returns why u must be rejected, or "" to accept it. Callers hold
// c.mu.
func (c *Coordinator) judge(ctx context.Context, j Job, u Update) (reason, msg string) {
	var round *Round
	for i := range j.Status.Rounds {
		if j.Status.Rounds[i].ID == u.RoundID {
			round = &j.Status.Rounds[i]
		}
	}
	if round == nil {
		return RejectUnknown, "no round " + u.RoundID + " in this job"
	}
	for _, a := range round.Updates {
		if a.TaskID == u.TaskID {
			return RejectDuplicate, fmt.Sprintf("round %s already counts an update of task %s (attempt %d)", u.RoundID, u.TaskID, a.Attempt)
		}
	}
	// A round that is over is checked no further: its detail may be
	// compacted away.
	if j.Status.Phase.Terminal() || round != j.Current() || round.Phase != RoundRunning {
		return RejectLate, fmt.Sprintf("round %s is %s", u.RoundID, round.Phase)
	}
	var part *ParticipantStatus
	for i := range round.Participants {
		if round.Participants[i].TaskID == u.TaskID {
			part = &round.Participants[i]
		}
	}
	switch {
	case part == nil:
		return RejectUnknown, "task " + u.TaskID + " is not a participant of round " + u.RoundID
	case part.PropletID != u.PropletID:
		return RejectUnknown, "task " + u.TaskID + " belongs to proplet " + part.PropletID + ", not " + u.PropletID
	}
	if len(u.Tensor) > c.cfg.MaxUpdateBytes {
		return RejectInvalid, fmt.Sprintf("update of %d bytes exceeds %d", len(u.Tensor), c.cfg.MaxUpdateBytes)
	}
	if u.NumSamples < 0 {
		return RejectInvalid, "negative num_samples"
	}
	global, err := c.jobModel(ctx, j)
	if err != nil {
		return RejectInvalid, "global model unavailable: " + err.Error()
	}
	vals, shapes, err := safetensors.DecodeF32(u.Tensor)
	if err != nil {
		return RejectInvalid, err.Error()
	}
	for name, s := range global.shapes {
		if got, ok := shapes[name]; ok && !equalInts(got, s) {
			return RejectInvalid, fmt.Sprintf("tensor %q has shape %v, the model %v", name, got, s)
		}
	}
	if err := aggregate.Validate(global.vals, aggregate.Update{NumSamples: u.NumSamples, Tensors: vals}); err != nil {
		return RejectInvalid, err.Error()
	}
	return "", ""
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// reject records a rejected update on its job.
func (c *Coordinator) reject(ctx context.Context, u Update, reason, msg string) error {
	c.log.Info("FL update rejected", "job", u.JobID, "round", u.RoundID, "task", u.TaskID, "proplet", u.PropletID, "reason", reason, "message", msg)
	now := c.clock.Now()
	_, err := c.update(ctx, u.JobID, func(j *Job) error {
		j.Status.Rejected = append(j.Status.Rejected, Rejection{
			RoundID: u.RoundID, TaskID: u.TaskID, PropletID: u.PropletID, Attempt: u.Attempt,
			Reason: reason, Message: msg, At: now,
		})
		if over := len(j.Status.Rejected) - c.cfg.MaxRejections; over > 0 {
			j.Status.Rejected = append([]Rejection(nil), j.Status.Rejected[over:]...)
		}
		j.Status.RejectedTotal++
		return nil
	})
	if err != nil {
		return fmt.Errorf("record rejected FL update: %w", err)
	}
	return nil
}

// TaskChanged queues a task change on the coordinator's Changes, for an
// engine observer that has the coordinator itself.
func (c *Coordinator) TaskChanged(t orchestration.Task) { c.changes.TaskChanged(t) }

// participantState maps a task to its participant's state.
func participantState(t orchestration.Task) (state, reason, msg string) {
	switch t.Status.Phase {
	case orchestration.PhaseSucceeded:
		return PartDone, t.Status.Reason, ""
	case orchestration.PhaseFailed, orchestration.PhaseCancelled:
		return PartFailed, t.Status.Reason, t.Status.Message
	case orchestration.PhaseRunning:
		return PartRunning, "", ""
	}
	return PartSubmitted, "", ""
}

// applyTask records a task's progress on its participant. Callers hold
// c.mu.
func (c *Coordinator) applyTask(ctx context.Context, t orchestration.Task) {
	jobID, rid := t.Spec.Labels[LabelJob], t.Spec.Labels[LabelRound]
	if _, ok := c.active[jobID]; !ok {
		return
	}
	state, reason, msg := participantState(t)
	_, err := c.update(ctx, jobID, func(j *Job) error {
		r := j.Current()
		if j.Status.Phase.Terminal() || r == nil || r.ID != rid || r.Phase != RoundRunning {
			return orchestration.ErrNoChange
		}
		for i := range r.Participants {
			p := &r.Participants[i]
			if p.TaskID != t.ID {
				continue
			}
			// An accepted update outranks whatever the task did next, and
			// a finished participant does not go back to running.
			if p.State == PartUpdated || p.State == PartDone || p.State == PartFailed || p.State == state {
				return orchestration.ErrNoChange
			}
			p.State, p.Reason, p.Message = state, reason, msg
			if state == PartDone || state == PartFailed {
				p.EndedAt = c.clock.Now()
			}
			return nil
		}
		return orchestration.ErrNoChange
	})
	if err != nil {
		if !errors.Is(err, orchestration.ErrNoChange) && !errors.Is(err, orchestration.ErrNotFound) {
			c.log.Error("record FL task progress", "job", jobID, "task", t.ID, "err", err)
		}
		return
	}
	c.evaluate(ctx, jobID)
}

// Tick handles queued task changes, then round deadlines and rounds a
// failed write left half-started. Run calls it; tests call it with a fake
// clock.
func (c *Coordinator) Tick(ctx context.Context) {
	notes := c.changes.take()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range notes {
		c.applyTask(ctx, t)
	}
	for id := range c.active {
		c.evaluate(ctx, id)
	}
}

// Run ticks until ctx ends and returns ctx.Err().
func (c *Coordinator) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-c.changes.signal:
		}
		c.Tick(ctx)
	}
}

// Recover reloads running jobs after a restart and catches up with what
// happened meanwhile: task outcomes the coordinator never saw are read
// back from the engine, and a round whose tasks were being submitted is
// finished (reusing tasks already submitted). Call it after the engine's
// own Recover, before Run.
func (c *Coordinator) Recover(ctx context.Context) error {
	jobs, err := c.store.ListJobs(ctx)
	if err != nil {
		return fmt.Errorf("fl: recover: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Every running job is in c.jobs before any round can close: collect
	// keeps the updates of the running rounds in c.jobs only.
	for _, j := range jobs {
		if !j.Status.Phase.Terminal() {
			c.active[j.ID] = struct{}{}
			c.jobs[j.ID] = j
		}
	}
	// Updates a crash left behind: of rounds closed (or failed, or of
	// jobs stopped) but not yet collected, or stored but never recorded.
	c.collect()
	for _, j := range jobs {
		if j.Status.Phase.Terminal() {
			continue
		}
		if r := j.Current(); r != nil && r.Phase == RoundRunning {
			for _, p := range r.Participants {
				if p.TaskID == "" || (p.State != PartSubmitted && p.State != PartRunning) {
					continue
				}
				t, err := c.engine.Get(ctx, p.TaskID)
				if errors.Is(err, orchestration.ErrNotFound) {
					t = orchestration.Task{ID: p.TaskID, Spec: orchestration.TaskSpec{Labels: map[string]string{LabelJob: j.ID, LabelRound: r.ID}},
						Status: orchestration.TaskStatus{Phase: orchestration.PhaseFailed, Reason: "TaskDeleted"}}
				} else if err != nil {
					return fmt.Errorf("fl: recover task %s: %w", p.TaskID, err)
				}
				c.applyTask(ctx, t)
			}
		}
		c.evaluate(ctx, j.ID)
	}
	return nil
}
