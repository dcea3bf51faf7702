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

func (a *Agent) onCommand(payload []byte) {
	var cmd wire.Command
	if err := wire.Decode(payload, &cmd); err != nil {
		a.log.Warn("dropping undecodable command", "err", err)
		return
	}
	switch {
	case cmd.Type == wire.CommandStart && cmd.Start != nil:
		a.start(*cmd.Start)
	case cmd.Type == wire.CommandStop && cmd.Stop != nil:
		a.stop(*cmd.Stop)
	default:
		a.log.Warn("dropping malformed command", "type", cmd.Type)
	}
}

// start runs in paho's router goroutine, before the command is
// acknowledged to the broker; everything it writes to disk is therefore
// durable before the manager's message is consumed.
func (a *Agent) start(st wire.StartTask) {
	ref := wire.TaskRef{TaskID: st.TaskID, Attempt: st.Attempt}
	log := a.log.With("task", ref.TaskID, "attempt", ref.Attempt)
	if ref.TaskID == "" {
		log.Warn("dropping start without task id")
		return
	}

	a.mu.Lock()
	if _, ok := a.running[ref]; ok || a.finishing[ref] || a.led.Seen(ref) {
		a.mu.Unlock()
		log.Info("duplicate start ignored")
		return
	}
	if len(a.running) >= a.cfg.Slots {
		a.mu.Unlock()
		log.Warn("no free slot", "slots", a.cfg.Slots)
		// Not recorded in the ledger: the manager may offer the same
		// attempt again once a slot frees up.
		a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
			Reason: wire.ReasonNoCapacity, Error: fmt.Sprintf("all %d slots busy", a.cfg.Slots)}, false)
		return
	}
	if a.runCtx.Err() != nil {
		a.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	at := &attempt{cancel: cancel}
	a.running[ref] = at
	a.tasks.Add(1)
	a.mu.Unlock()

	if err := a.led.Accept(ref); err != nil {
		log.Error("ledger", "err", err)
	}
	a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventAccepted}, true)
	log.Info("task accepted")
	go a.execute(ctx, st, ref, at)
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

func (a *Agent) execute(ctx context.Context, st wire.StartTask, ref wire.TaskRef, at *attempt) {
	defer a.tasks.Done()
	defer at.cancel()

	var once sync.Once
	announce := func() {
		once.Do(func() {
			a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventRunning}, true)
		})
	}
	begin := time.Now()
	out := a.runExecutor(ctx, st, announce)

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
		// An executor that forgot to announce still ran the module; keep
		// the documented accepted -> running -> succeeded order.
		announce()
	}

	if out.FL != nil {
		up := *out.FL
		if up.TaskID == "" {
			up.TaskID = ref.TaskID
			up.Attempt = ref.Attempt
		}
		if up.Time.IsZero() {
			up.Time = time.Now().UTC()
		}
		a.enqueue(a.topics.FLUpdates(a.cfg.ID), &up, eventKey(ref, "fl"), true)
	}
	a.emit(ev, true)
	// Order matters for crash safety: the final event is on disk before the
	// ledger says finished, and failUnfinished covers a crash in between.
	if err := a.led.Finish(ref); err != nil {
		a.log.Error("ledger", "err", err)
	}

	a.mu.Lock()
	delete(a.finishing, ref)
	a.mu.Unlock()
	a.log.Info("task finished", "task", ref.TaskID, "attempt", ref.Attempt, "type", ev.Type,
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

// emit queues an event for delivery. dedup=false is for reports that are
// not tied to the attempt's lifecycle (NoCapacity rejections).
func (a *Agent) emit(ev wire.Event, dedup bool) {
	ev.Instance = a.instance
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	key := ""
	if dedup {
		key = eventKey(wire.TaskRef{TaskID: ev.TaskID, Attempt: ev.Attempt}, kindOf(ev.Type))
	}
	terminal := ev.Type == wire.EventSucceeded || ev.Type == wire.EventFailed
	a.enqueue(a.topics.Events(a.cfg.ID), &ev, key, terminal)
}

func (a *Agent) enqueue(topic string, msg any, key string, terminal bool) {
	payload, err := wire.Encode(msg)
	if err != nil {
		a.log.Error("encode", "err", err)
		return
	}
	if _, _, err := a.ob.Append(outbox.Message{Topic: topic, Payload: payload, Key: key, Terminal: terminal}); err != nil {
		a.log.Error("outbox append failed; message lost", "topic", topic, "key", key, "err", err)
	}
}

// failUnfinished reports attempts that a previous process accepted but
// never finished: it died while they ran, so they failed.
func (a *Agent) failUnfinished() error {
	pendingFinal := map[string]bool{}
	for _, e := range a.ob.Pending() {
		pendingFinal[e.Key] = true
	}
	for _, ref := range a.led.Unfinished() {
		if !pendingFinal[eventKey(ref, "final")] {
			a.emit(wire.Event{TaskID: ref.TaskID, Attempt: ref.Attempt, Type: wire.EventFailed,
				Reason: wire.ReasonStopped, Error: "proplet restarted while the attempt was running"}, true)
		}
		if err := a.led.Finish(ref); err != nil {
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
