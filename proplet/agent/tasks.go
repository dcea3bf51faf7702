package agent

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

type attempt struct {
	cancel  context.CancelFunc
	stopped bool // a stop command asked for it; guarded by Agent.mu
	// accepted is closed once the acceptance is durable. A redelivered
	// start is acknowledged only after it, or a crash in between would
	// lose the command with nothing on disk to show for it.
	accepted chan struct{}
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
// goroutine makes the acceptance durable (sharing an fsync with whatever
// else is being committed), acknowledges the command and only then runs
// the module. A crash before that leaves the command unacknowledged, so
// the broker redelivers it; a crash after it finds the acceptance in the
// ledger. Either way the module runs at most once.
func (a *Agent) start(st wire.StartTask, ack func()) {
	ref := wire.TaskRef{TaskID: st.TaskID, Attempt: st.Attempt}
	log := a.log.With("task", ref.TaskID, "attempt", ref.Attempt)
	if ref.TaskID == "" {
		log.Warn("dropping start without task id")
		ack()
		return
	}

	a.mu.Lock()
	if at, ok := a.running[ref]; ok {
		a.mu.Unlock()
		log.Info("duplicate start ignored")
		go func() {
			<-at.accepted
			ack()
		}()
		return
	}
	if a.finishing[ref] || a.led.Seen(ref) {
		a.mu.Unlock()
		log.Info("duplicate start ignored")
		ack()
		return
	}
	if a.runCtx.Err() != nil {
		a.mu.Unlock()
		// Unacknowledged: the next process gets it again.
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
			a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
				Reason: wire.ReasonNoCapacity, Error: fmt.Sprintf("all %d slots busy", a.cfg.Slots)}, false)
			ack()
		}()
		return
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	at := &attempt{cancel: cancel, accepted: make(chan struct{})}
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

func (a *Agent) execute(ctx context.Context, st wire.StartTask, ref wire.TaskRef, at *attempt, ack func()) {
	defer a.tasks.Done()
	defer at.cancel()

	if err := a.led.Accept(ref); err != nil {
		// Running anyway keeps the proplet useful on a failing disk; the
		// price is a possible second run should it also crash.
		a.log.Error("ledger", "task", ref.TaskID, "attempt", ref.Attempt, "err", err)
	}
	close(at.accepted)
	ack()
	a.log.Debug("task accepted", "task", ref.TaskID, "attempt", ref.Attempt)

	prog := a.newProgress(ref)
	begin := time.Now()
	out := a.runExecutor(ctx, st, prog.running)
	prog.finish()

	// Free the slot before the final event can reach the manager, which
	// may offer the slot again right away; finishing still blocks a
	// duplicate start until the ledger knows the attempt is done.
	a.mu.Lock()
	stopped := at.stopped
	delete(a.running, ref)
	a.finishing[ref] = true
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
	// finish. failUnfinished covers a crash before it.
	if _, err := a.led.Finish(ref, msgs...); err != nil {
		a.log.Error("final report not stored; it is lost", "task", ref.TaskID, "attempt", ref.Attempt, "err", err)
	}

	a.mu.Lock()
	delete(a.finishing, ref)
	a.mu.Unlock()
	a.log.Debug("task finished", "task", ref.TaskID, "attempt", ref.Attempt, "type", ev.Type,
		"reason", ev.Reason, "took", time.Since(begin))
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

// emit durably queues a terminal event outside an attempt's lifecycle.
// dedup=false is for reports that are not tied to the attempt's lifecycle
// (NoCapacity rejections).
func (a *Agent) emit(ev wire.Event, dedup bool) {
	key := ""
	if dedup {
		key = eventKey(wire.TaskRef{TaskID: ev.TaskID, Attempt: ev.Attempt}, kindOf(ev.Type))
	}
	m, ok := a.message(a.topics.Events(a.cfg.ID), a.stamp(ev), key, true)
	if !ok {
		return
	}
	if _, _, err := a.ob.Append(m); err != nil {
		a.log.Error("outbox append failed; message lost", "topic", m.Topic, "key", key, "err", err)
	}
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
		if _, err := a.led.Finish(ref, msgs...); err != nil {
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
