package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
)

// A start delivered after its NotAfter (it sat in the broker while the
// proplet was paused, and the manager may have run the attempt elsewhere
// since) is refused without running the module, judged on the manager's
// clock even when it is an hour off this proplet's. The refusal is not
// remembered: the same attempt with a fresh window runs.
func TestExpiredStartIsRefused(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	startOnline(t, m, testConfig(t, b.URL(), id), fx)
	managerNow := func() time.Time { return time.Now().Add(time.Hour).UTC() }

	fresh := randID("t-")
	sent := managerNow()
	m.start(t, id, wire.StartTask{TaskID: fresh, Attempt: 1, Function: "ok", Sent: sent, NotAfter: sent.Add(15 * time.Second)})
	m.waitEvent(t, fresh, wire.EventSucceeded)

	stale := randID("t-")
	sent = managerNow().Add(-time.Minute)
	m.start(t, id, wire.StartTask{TaskID: stale, Attempt: 1, Function: "ok", Sent: sent, NotAfter: sent.Add(15 * time.Second)})
	ev := m.waitEvent(t, stale, wire.EventFailed)
	require.Equal(t, wire.ReasonExpired, ev.Reason)
	require.Contains(t, ev.Error, "arrived after")
	require.Equal(t, 0, m.countEvents(stale, wire.EventAccepted))
	require.Len(t, fx.started, 1, "only the fresh start ran")

	sent = managerNow()
	m.start(t, id, wire.StartTask{TaskID: stale, Attempt: 1, Function: "ok", Sent: sent, NotAfter: sent.Add(15 * time.Second)})
	m.waitEvent(t, stale, wire.EventSucceeded)
}
