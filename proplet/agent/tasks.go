package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

// acceptDelay is how long an attempt runs before its acceptance is made
// durable on its own. Most attempts end sooner; their acceptance is then
// implied by the terminal record, which costs the one fsync the attempt
// needs anyway, instead of an extra fsync before the module may start.
const acceptDelay = 5 * time.Millisecond

// Phases of an attempt's durability, guarded by attempt.mu.
const (
	// phaseLazy: nothing on disk yet; the acceptance timer is armed.
	phaseLazy = iota
	// phaseAccepting: the timer fired and the acceptance mark is queued
	// or durable; it settles the attempt.
	phaseAccepting
	// phaseFinal: the attempt ended first; its terminal record settles it.
	phaseFinal
)

type attempt struct {
	cancel  context.CancelFunc
	stopped bool // a stop command asked for it; guarded by Agent.mu

	mu        sync.Mutex
	phase     int
	stopTimer func() bool
	// accepted is closed once the attempt is durable on this proplet (its
	// acceptance mark or its terminal record); err says whether that
	// worked. The start command, and any redelivery of it, is
	// acknowledged only after it, or a crash in between would lose the
	// command with nothing on disk to show for it.
	accepted chan struct{}
	err      error
}

// settled waits until at is durable and reports whether its command may be
// acknowledged: not when the outbox was closed under it, since then the
// process is going away and the broker must hand the command to the next.
func (at *attempt) settled() bool {
	<-at.accepted
	return !errors.Is(at.err, outbox.ErrClosed)
}

// eventKey names one logical message of one attempt in the outbox, so the
// same report is never queued twice. Succeeded and failed share "final":
// an attempt ends once.
func eventKey(ref wire.TaskRef, kind string) string {
	return ref.TaskID + "\x00" + strconv.Itoa(ref.Attempt) + "\x00" + kind
}

func kindOf(eventType string) string {
	switch eventType {
	case wire.EventSucceeded, wire.EventFailed:
		return "final"
	}
	return eventType
}

// onCommand handles a command. ack acknowledges its delivery to the
// broker; until then a persistent session redelivers it after a crash, so
// it is called only once what the command changed is durable.
func (a *Agent) onCommand(payload []byte, ack func()) {
	var cmd wire.Command
	if err := wire.Decode(payload, &cmd); err != nil {
		a.log.Warn("dropping undecodable command", "err", err)
		ack()
		return
	}
	switch {
	case cmd.Type == wire.CommandStart && cmd.Start != nil:
		a.start(*cmd.Start, ack)
	case cmd.Type == wire.CommandStop && cmd.Stop != nil:
		a.stop(*cmd.Stop)
		ack()
	default:
		a.log.Warn("dropping malformed command", "type", cmd.Type)
		ack()
	}
}

// start runs in paho's router goroutine, so commands are handled in the
// order they were sent, but it must not wait for the disk there: that
// would serialise every acceptance behind its own fsync. The attempt's
// goroutine runs the module at once; see execute for when the attempt
// becomes durable and its command is acknowledged.
func (a *Agent) start(st wire.StartTask, ack func()) {
	ref := wire.TaskRef{TaskID: st.TaskID, Attempt: st.Attempt}
	log := a.log.With("task", ref.TaskID, "attempt", ref.Attempt)
	if ref.TaskID == "" {
		log.Warn("dropping start without task id")
		ack()
		return
	}

	// Sampled for every start, duplicates too: each refines the estimate
	// of the manager's clock.
	expired := a.manager.expired(st.Sent, st.NotAfter, time.Now())

	a.mu.Lock()
	at, ok := a.running[ref]
	if !ok {
		at, ok = a.finishing[ref]
	}
	if ok {
		a.mu.Unlock()
		log.Info("duplicate start ignored")
		// It may be the broker's redelivery of the very command this
		// attempt runs for, whose first delivery died with a connection;
		// acknowledging it before the attempt is durable would lose it.
		go func() {
			if at.settled() {
				ack()
			}
		}()
		return
	}
	if a.led.Seen(ref) {
		msgs := a.led.Result(ref)
		if msgs == nil {
			a.mu.Unlock()
			log.Info("duplicate start ignored")
			ack()
			return
		}
		if a.runCtx.Err() != nil {
			a.mu.Unlock()
			return // unacknowledged: the next process gets it again
		}
		a.tasks.Add(1)
		a.mu.Unlock()
		// The manager asks again when it missed the report (after its
		// restart, or when heartbeats stopped listing the attempt): a
		// broker may have lost it after acknowledging it.
		log.Info("start of a finished attempt repeated: sending its result again")
		go func() {
			defer a.tasks.Done()
			_, done := a.ob.Submit(outbox.Batch{Messages: msgs})
			if err := <-done; err != nil {
				a.log.Error("outbox commit failed; result not re-sent", "task", ref.TaskID, "attempt", ref.Attempt, "err", err)
				if errors.Is(err, outbox.ErrClosed) {
					return
				}
			}
			ack()
		}()
		return
	}
	if a.runCtx.Err() != nil {
		a.mu.Unlock()
		// Unacknowledged: the next process gets it again.
		return
	}
	if expired {
		a.tasks.Add(1)
		a.mu.Unlock()
		log.Warn("start arrived after its deadline; refused, the manager may have run the attempt elsewhere",
			"sent", st.Sent, "not_after", st.NotAfter)
		// Not recorded in the ledger, as NoCapacity: the manager may send
		// the same attempt again, with a fresh window, if it still wants it.
		go func() {
			defer a.tasks.Done()
			if a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
				Reason: wire.ReasonExpired, Error: "start sent at " + st.Sent.Format(time.RFC3339Nano) +
					" arrived after " + st.NotAfter.Format(time.RFC3339Nano)}, false) {
				ack()
			}
		}()
		return
	}
	if len(a.running) >= a.cfg.Slots {
		a.tasks.Add(1)
		a.mu.Unlock()
		log.Warn("no free slot", "slots", a.cfg.Slots)
		// Not recorded in the ledger: the manager may offer the same
		// attempt again once a slot frees up. Durable, so the manager
		// learns to reschedule even across a crash.
		go func() {
			defer a.tasks.Done()
			if a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
				Reason: wire.ReasonNoCapacity, Error: fmt.Sprintf("all %d slots busy", a.cfg.Slots)}, false) {
				ack()
			}
		}()
		return
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	at = &attempt{cancel: cancel, accepted: make(chan struct{})}
	a.running[ref] = at
	a.tasks.Add(1)
	a.mu.Unlock()

	go a.execute(ctx, st, ref, at, ack)
}

func (a *Agent) stop(sp wire.StopTask) {
	ref := wire.TaskRef{TaskID: sp.TaskID, Attempt: sp.Attempt}
	a.mu.Lock()
	at, ok := a.running[ref]
	if ok {
		at.stopped = true
		at.cancel()
	}
	a.mu.Unlock()
	a.log.Info("stop", "task", ref.TaskID, "attempt", ref.Attempt, "running", ok, "reason", sp.Reason)
}

// execute runs one attempt. Its start command is acknowledged only once
// the attempt is durable in the ledger, whichever comes first:
//
//   - still running after acceptDelay: the acceptance mark is committed
//     on its own (acceptLate), and a crash from then on finds it and
//     reports the attempt failed instead of running it again;
//   - ended before that: nothing was written up to here, and the terminal
//     record (events + the ledger's finish) is the attempt's only commit.
//
// A crash before either leaves the command unacknowledged, so the broker
// redelivers it and the module runs again as the same attempt. The manager
// records one result per attempt whatever number of reports it gets, so
// the price is a repeated run, never a second result, and only for an
// attempt a crash cut short within its first acceptDelay.
//
// The terminal record is published while it is being committed (see
// outbox.Submit): a crash before the commit is the case above.
func (a *Agent) execute(ctx context.Context, st wire.StartTask, ref wire.TaskRef, at *attempt, ack func()) {
	defer a.tasks.Done()
	defer at.cancel()

	at.mu.Lock()
	at.stopTimer = a.acceptTimer(ref, acceptDelay, func() { a.acceptLate(ref, at, ack) })
	at.mu.Unlock()
	a.log.Debug("task started", "task", ref.TaskID, "attempt", ref.Attempt)

	prog := a.newProgress(ref)
	begin := time.Now()
	out := a.runExecutor(ctx, st, prog.running)
	prog.finish()

	at.mu.Lock()
	fast := at.phase == phaseLazy
	if fast {
		at.stopTimer()
		at.phase = phaseFinal
	}
	at.mu.Unlock()

	// Free the slot before the final event can reach the manager, which
	// may offer the slot again right away; finishing still answers a
	// duplicate start until the ledger knows the attempt is done.
	a.mu.Lock()
	stopped := at.stopped
	delete(a.running, ref)
	a.finishing[ref] = at
	a.mu.Unlock()

	ev := wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Result: out.Result, Metrics: out.Metrics}
	if out.Failed() {
		ev.Type = wire.EventFailed
		ev.Reason = out.Reason
		if out.Err != nil {
			ev.Error = out.Err.Error()
		}
		if ev.Reason == "" && (stopped || ctx.Err() != nil) {
			ev.Reason = wire.ReasonStopped
		}
	} else {
		ev.Type = wire.EventSucceeded
	}

	var msgs []outbox.Message
	if out.FL != nil {
		up := *out.FL
		if up.TaskID == "" {
			up.TaskID = ref.TaskID
			up.Attempt = ref.Attempt
		}
		if up.Time.IsZero() {
			up.Time = time.Now().UTC()
		}
		if m, ok := a.message(a.topics.FLUpdates(a.cfg.ID), &up, eventKey(ref, "fl"), true); ok {
			msgs = append(msgs, m)
		}
	}
	if m, ok := a.message(a.topics.Events(a.cfg.ID), a.stamp(ev), eventKey(ref, "final"), true); ok {
		msgs = append(msgs, m)
	}
	// One commit: the FL update and the final event, then the ledger's
	// finish. The sender publishes them meanwhile. failUnfinished covers
	// a crash before it for an accepted attempt, redelivery for the rest.
	_, done := a.led.Finish(ref, msgs...)
	err := <-done
	if err != nil {
		a.log.Error("final report not stored; it is lost unless already published",
			"task", ref.TaskID, "attempt", ref.Attempt, "err", err)
	}
	if fast {
		a.settle(ref, at, ack, err)
	}

	a.mu.Lock()
	delete(a.finishing, ref)
	a.mu.Unlock()
	a.log.Debug("task finished", "task", ref.TaskID, "attempt", ref.Attempt, "type", ev.Type,
		"reason", ev.Reason, "took", time.Since(begin))
}

// acceptLate makes a still running attempt's acceptance durable. The mark
// is queued under at.mu, so it precedes the attempt's finish mark in the
// log: the reverse would let a replay take a finished attempt for an
// unfinished one.
func (a *Agent) acceptLate(ref wire.TaskRef, at *attempt, ack func()) {
	at.mu.Lock()
	if at.phase != phaseLazy {
		at.mu.Unlock()
		return
	}
	at.phase = phaseAccepting
	done := a.led.Accept(ref)
	at.mu.Unlock()
	err := <-done
	if err != nil && !errors.Is(err, outbox.ErrClosed) {
		// Going on keeps the proplet useful on a failing disk; the price
		// is a possible second run should it also crash.
		a.log.Error("ledger", "task", ref.TaskID, "attempt", ref.Attempt, "err", err)
	}
	a.settle(ref, at, ack, err)
	a.log.Debug("task accepted", "task", ref.TaskID, "attempt", ref.Attempt)
}

// settle records that at is as durable as it will get and acknowledges its
// command, unless the outbox was closed (see attempt.settled).
func (a *Agent) settle(ref wire.TaskRef, at *attempt, ack func(), err error) {
	at.err = err
	close(at.accepted)
	if at.settled() {
		ack()
	} else {
		a.log.Debug("start not acknowledged; the next process gets it again",
			"task", ref.TaskID, "attempt", ref.Attempt)
	}
}

// runExecutor turns an executor panic into a failed attempt, so one bad
// task cannot take the proplet down.
func (a *Agent) runExecutor(ctx context.Context, st wire.StartTask, running func()) (out Outcome) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("executor panicked", "task", st.TaskID, "attempt", st.Attempt, "panic", r)
			out = Outcome{Reason: wire.ReasonInvalidTask, Err: fmt.Errorf("executor panic: %v", r)}
		}
	}()
	return a.exec.Execute(ctx, st, running)
}

func (a *Agent) stamp(ev wire.Event) *wire.Event {
	ev.Instance = a.instance
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	return &ev
}

// hintDelay is how long an attempt runs before its progress hints go out.
// Most tasks finish sooner, and then their terminal event alone tells the
// manager everything: no hint message, no store write for it.
const hintDelay = 20 * time.Millisecond

// progress sends an attempt's accepted and running hints, late and only if
// the attempt is still going by then.
type progress struct {
	a       *Agent
	ref     wire.TaskRef
	mu      sync.Mutex
	timer   *time.Timer
	sent    bool // accepted went out
	started bool // the module runs
	done    bool
}

func (a *Agent) newProgress(ref wire.TaskRef) *progress {
	p := &progress{a: a, ref: ref}
	p.timer = time.AfterFunc(hintDelay, p.fire)
	return p
}

func (p *progress) fire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.sent = true
	p.a.hint(wire.Event{TaskID: p.ref.TaskID, Attempt: p.ref.Attempt, Type: wire.EventAccepted})
	if p.started {
		p.a.hint(wire.Event{TaskID: p.ref.TaskID, Attempt: p.ref.Attempt, Type: wire.EventRunning})
	}
}

// running is the executor's callback when the module starts.
func (p *progress) running() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.done {
		return
	}
	p.started = true
	if p.sent {
		p.a.hint(wire.Event{TaskID: p.ref.TaskID, Attempt: p.ref.Attempt, Type: wire.EventRunning})
	}
}

// finish suppresses hints once the terminal event is on its way.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.timer.Stop()
}

// hint publishes a progress event (accepted, running) at QoS 1 without the
// outbox and without waiting for the broker. These events only refine what
// the manager shows; it accepts an attempt's terminal event straight from
// Scheduled, idempotently and in any order, so a hint lost with a
// connection or a crash costs nothing, while making it durable would cost
// two fsyncs per task. Only terminal events and FL updates, which carry
// results that exist nowhere else, go through the outbox and are delivered
// at least once across broker outages and restarts.
func (a *Agent) hint(ev wire.Event) {
	c := a.current()
	if c == nil {
		return
	}
	payload, err := wire.Encode(a.stamp(ev))
	if err != nil {
		a.log.Error("encode", "err", err)
		return
	}
	if _, err := a.publishAck(c, a.topics.Events(a.cfg.ID), false, payload); err != nil {
		a.log.Debug("progress event not published", "task", ev.TaskID, "type", ev.Type, "err", err)
	}
}

// emit queues a terminal event outside an attempt's lifecycle, publishes
// it at once and returns when it is durable. It reports false when the
// outbox is closed, so the command that caused it must stay
// unacknowledged. dedup=false is for reports that are not tied to the
// attempt's lifecycle (NoCapacity rejections).
func (a *Agent) emit(ev wire.Event, dedup bool) bool {
	key := ""
	if dedup {
		key = eventKey(wire.TaskRef{TaskID: ev.TaskID, Attempt: ev.Attempt}, kindOf(ev.Type))
	}
	m, ok := a.message(a.topics.Events(a.cfg.ID), a.stamp(ev), key, true)
	if !ok {
		return true
	}
	_, done := a.ob.Submit(outbox.Batch{Messages: []outbox.Message{m}})
	if err := <-done; err != nil {
		a.log.Error("outbox commit failed; message lost unless already published", "topic", m.Topic, "key", key, "err", err)
		return !errors.Is(err, outbox.ErrClosed)
	}
	return true
}

func (a *Agent) message(topic string, msg any, key string, terminal bool) (outbox.Message, bool) {
	payload, err := wire.Encode(msg)
	if err != nil {
		a.log.Error("encode", "err", err)
		return outbox.Message{}, false
	}
	return outbox.Message{Topic: topic, Payload: payload, Key: key, Terminal: terminal}, true
}

// failUnfinished reports attempts that a previous process accepted but
// never finished: it died while they ran, so they failed.
func (a *Agent) failUnfinished() error {
	pendingFinal := map[string]bool{}
	for _, e := range a.ob.Pending() {
		pendingFinal[e.Key] = true
	}
	for _, ref := range a.led.Unfinished() {
		var msgs []outbox.Message
		if !pendingFinal[eventKey(ref, "final")] {
			ev := wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
				Reason: wire.ReasonStopped, Error: "proplet restarted while the attempt was running"}
			if m, ok := a.message(a.topics.Events(a.cfg.ID), a.stamp(ev), eventKey(ref, "final"), true); ok {
				msgs = append(msgs, m)
			}
		}
		_, done := a.led.Finish(ref, msgs...)
		if err := <-done; err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	return nil
}

// Running lists the attempts currently executing.
func (a *Agent) Running() []wire.TaskRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	refs := make([]wire.TaskRef, 0, len(a.running))
	for ref := range a.running {
		refs = append(refs, ref)
	}
	return refs
}
