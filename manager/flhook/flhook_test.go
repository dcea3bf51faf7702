package flhook_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/flhook"
	"github.com/absmach/propeller/orchestration"
)

// Before the coordinator is plugged in, task changes are dropped and an
// update is refused, so the link leaves it to the broker to redeliver.
// With it, both reach the coordinator: test/flstandalone and the
// operator's FL tests run every federated job through a Hook.
func TestHookBeforeSet(t *testing.T) {
	var h flhook.Hook
	h.TaskChanged(orchestration.Task{ID: "t"})
	err := h.FLUpdate(context.Background(), "p1", wire.FLUpdate{JobID: "j", RoundID: "1", TaskID: "t"})
	require.ErrorIs(t, err, flhook.ErrNotStarted)
}
