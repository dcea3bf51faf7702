package proplet

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
)

func TestExecLogRecordsEachRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.jsonl")
	l, err := openExecLog(path, "p1")
	require.NoError(t, err)
	x := newTestExecutor(t, mapFetcher{})
	x.log = l
	add, trap := exampletest.Build(t, "add"), exampletest.Build(t, "trap")
	out := x.Execute(context.Background(), wire.StartTask{TaskID: "ok", Attempt: 1, Artifact: wire.Artifact{Inline: add}, Function: "add", Inputs: []float64{1, 2}}, func() {})
	require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
	out = x.Execute(context.Background(), wire.StartTask{TaskID: "bad", Attempt: 2, Artifact: wire.Artifact{Inline: trap}, Function: "divzero", Inputs: []float64{0}}, func() {})
	require.True(t, out.Failed())
	// A module that never starts (unfetchable) leaves no line.
	x.Execute(context.Background(), wire.StartTask{TaskID: "gone", Attempt: 1, Artifact: wire.Artifact{URI: "relay://missing"}}, func() {})
	require.NoError(t, l.Close())

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var got []ExecRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r ExecRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		got = append(got, r)
	}
	require.Len(t, got, 4)
	want := []struct {
		event, task string
		attempt     int
		failed      bool
	}{{"start", "ok", 1, false}, {"end", "ok", 1, false}, {"start", "bad", 2, false}, {"end", "bad", 2, true}}
	for i, w := range want {
		require.Equal(t, w.event, got[i].Event)
		require.Equal(t, w.task, got[i].Task)
		require.Equal(t, w.attempt, got[i].Attempt)
		require.Equal(t, "p1", got[i].Proplet)
		require.Equal(t, w.failed, got[i].Reason != "", "line %d reason %q", i, got[i].Reason)
		require.False(t, got[i].Time.IsZero())
	}
	require.False(t, got[1].Time.Before(got[0].Time))
}
