package outbox_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/proplet/outbox"
)

func keysOf(t *testing.T, o *outbox.Outbox) []string {
	t.Helper()
	var ks []string
	for _, e := range o.Pending() {
		ks = append(ks, e.Key)
	}
	return ks
}

func TestAppendReadRemoveReopen(t *testing.T) {
	dir := t.TempDir()
	o, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)

	var seqs []uint64
	for i := range 3 {
		seq, added, err := o.Append(outbox.Message{Topic: "t", Payload: []byte(fmt.Sprint(i)), Key: fmt.Sprint("k", i)})
		require.NoError(t, err)
		require.True(t, added)
		seqs = append(seqs, seq)
	}
	require.Less(t, seqs[0], seqs[1])
	m, err := o.Read(seqs[1])
	require.NoError(t, err)
	require.Equal(t, "1", string(m.Payload))
	require.NoError(t, o.Remove(seqs[1]))
	require.NoError(t, o.Remove(seqs[1]), "removing twice is a no-op")
	require.NoError(t, o.Close())
	_, _, err = o.Append(outbox.Message{Topic: "t"})
	require.ErrorIs(t, err, outbox.ErrClosed)

	o2, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"k0", "k2"}, keysOf(t, o2))
	seq, added, err := o2.Append(outbox.Message{Topic: "t", Key: "k3"})
	require.NoError(t, err)
	require.True(t, added)
	require.Greater(t, seq, seqs[2], "sequence continues after reopen")
}

func TestDedupByKey(t *testing.T) {
	o, err := outbox.Open(t.TempDir(), outbox.Options{})
	require.NoError(t, err)
	s1, added, err := o.Append(outbox.Message{Topic: "t", Key: "a"})
	require.NoError(t, err)
	require.True(t, added)
	s2, added, err := o.Append(outbox.Message{Topic: "t", Key: "a"})
	require.NoError(t, err)
	require.False(t, added)
	require.Equal(t, s1, s2)
	_, added, err = o.Append(outbox.Message{Topic: "t"})
	require.NoError(t, err)
	require.True(t, added)
	_, added, err = o.Append(outbox.Message{Topic: "t"})
	require.NoError(t, err)
	require.True(t, added, "empty keys never deduplicate")
	require.Equal(t, 3, o.Len())
}

func TestBound(t *testing.T) {
	type msg struct {
		key      string
		terminal bool
	}
	cases := []struct {
		name   string
		max    int
		append []msg
		want   []string
	}{
		{
			name:   "drops oldest non-terminal",
			max:    3,
			append: []msg{{"a", false}, {"b", true}, {"c", false}, {"d", false}},
			want:   []string{"b", "c", "d"},
		},
		{
			name:   "terminal admitted over the bound",
			max:    2,
			append: []msg{{"a", true}, {"b", true}, {"c", true}},
			want:   []string{"a", "b", "c"},
		},
		{
			name:   "new non-terminal dropped when only terminals remain",
			max:    2,
			append: []msg{{"a", true}, {"b", true}, {"c", false}},
			want:   []string{"a", "b"},
		},
		{
			name:   "terminal pushes out non-terminals",
			max:    2,
			append: []msg{{"a", false}, {"b", false}, {"c", true}, {"d", true}},
			want:   []string{"c", "d"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := outbox.Open(dir, outbox.Options{MaxEntries: tc.max})
			require.NoError(t, err)
			for _, m := range tc.append {
				_, _, err := o.Append(outbox.Message{Topic: "t", Key: m.key, Terminal: m.terminal})
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, keysOf(t, o))
			o2, err := outbox.Open(dir, outbox.Options{MaxEntries: tc.max})
			require.NoError(t, err)
			require.Equal(t, tc.want, keysOf(t, o2), "dropped messages are gone from disk too")
		})
	}
}

func TestMaxBytes(t *testing.T) {
	o, err := outbox.Open(t.TempDir(), outbox.Options{MaxBytes: 300})
	require.NoError(t, err)
	for i := range 5 {
		_, _, err := o.Append(outbox.Message{Topic: "t", Key: fmt.Sprint(i), Payload: make([]byte, 60)})
		require.NoError(t, err)
	}
	require.Less(t, o.Len(), 5)
	ks := keysOf(t, o)
	require.Equal(t, "4", ks[len(ks)-1], "the newest survives")
}

func TestNotify(t *testing.T) {
	o, err := outbox.Open(t.TempDir(), outbox.Options{})
	require.NoError(t, err)
	_, _, err = o.Append(outbox.Message{Topic: "t"})
	require.NoError(t, err)
	_, _, err = o.Append(outbox.Message{Topic: "t"})
	require.NoError(t, err)
	<-o.Notify()
	select {
	case <-o.Notify():
		t.Fatal("notifications coalesce")
	default:
	}
}

// TestSubmitVisibleBeforeDurable holds the writer inside the fsync of a
// Submitted batch: its message can already be listed, read and removed,
// Commit's cannot be seen yet, and the batch's outcome arrives only after
// the fsync. Reopening shows the removal and the batch's mark.
func TestSubmitVisibleBeforeDurable(t *testing.T) {
	dir := t.TempDir()
	o, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)
	entered, gate := make(chan struct{}), make(chan struct{})
	var first sync.Once
	outbox.SetBeforeSync(o, func() {
		first.Do(func() {
			close(entered)
			<-gate
		})
	})

	res, done := o.Submit(outbox.Batch{
		Messages: []outbox.Message{{Topic: "t", Key: "early", Payload: []byte("p"), Terminal: true}},
		Marks:    []outbox.Mark{{Key: "m", Value: 'f'}},
	})
	require.True(t, res[0].Added)
	<-o.Notify()
	require.Equal(t, []string{"early"}, keysOf(t, o))
	m, err := o.Read(res[0].Seq)
	require.NoError(t, err)
	require.Equal(t, "p", string(m.Payload))

	// A Commit queued behind the held fsync stays invisible until durable.
	<-entered
	committed := make(chan error, 1)
	go func() {
		_, err := o.Commit(outbox.Batch{Messages: []outbox.Message{{Topic: "t", Key: "late"}}})
		committed <- err
	}()
	require.Eventually(t, func() bool { return outbox.Queued(o) == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"early"}, keysOf(t, o))

	// Acknowledged before durable.
	require.NoError(t, o.Remove(res[0].Seq))
	select {
	case err := <-done:
		t.Fatalf("batch reported durable while its fsync is held: %v", err)
	default:
	}
	close(gate)
	require.NoError(t, <-done)
	require.NoError(t, <-committed)
	require.Equal(t, []string{"late"}, keysOf(t, o))
	require.NoError(t, o.Close())

	o2, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)
	defer o2.Close()
	require.Equal(t, []string{"late"}, keysOf(t, o2), "the early message's tombstone followed it")
	require.Equal(t, []outbox.Mark{{Key: "m", Value: 'f'}}, o2.Marks())
}

func TestSubmitOnClosed(t *testing.T) {
	o, err := outbox.Open(t.TempDir(), outbox.Options{})
	require.NoError(t, err)
	require.NoError(t, o.Close())
	_, done := o.Submit(outbox.Batch{Messages: []outbox.Message{{Topic: "t"}}})
	require.ErrorIs(t, <-done, outbox.ErrClosed)
}
