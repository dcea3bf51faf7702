package agent

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

func TestLedgerRemembersResultsWithinBudget(t *testing.T) {
	ob, err := outbox.Open(t.TempDir(), outbox.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ob.Close() })
	l := openLedger(ob, 3, 100)
	finish := func(id string, size int) wire.TaskRef {
		ref := wire.TaskRef{TaskID: id, Attempt: 1}
		_, done := l.Finish(ref, outbox.Message{Topic: "t", Payload: []byte(strings.Repeat("x", size)), Key: id, Terminal: true})
		require.NoError(t, <-done)
		return ref
	}

	a := finish("a", 40)
	b := finish("b", 40)
	require.Len(t, l.Result(a), 1)
	c := finish("c", 40) // 120 bytes: a's report goes, a stays finished
	require.Nil(t, l.Result(a))
	require.True(t, l.Seen(a))
	require.NotNil(t, l.Result(b))
	require.NotNil(t, l.Result(c))

	big := finish("big", 101) // over the whole budget: not kept
	require.Nil(t, l.Result(big))
	require.NotNil(t, l.Result(c))

	d := finish("d", 1) // the count limit (3) forgets b, and its report
	require.False(t, l.Seen(b))
	require.Nil(t, l.Result(b))
	require.NotNil(t, l.Result(d))
	require.EqualValues(t, 41, l.resultBytes)
}
