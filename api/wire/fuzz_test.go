package wire_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
)

// messages returns a fresh value of every message type, by name.
func messages() map[string]func() any {
	return map[string]func() any{
		"status": func() any { return &wire.Status{} }, "heartbeat": func() any { return &wire.Heartbeat{} },
		"command": func() any { return &wire.Command{} }, "event": func() any { return &wire.Event{} },
		"flupdate": func() any { return &wire.FLUpdate{} }, "artifactrequest": func() any { return &wire.ArtifactRequest{} },
		"artifactchunk": func() any { return &wire.ArtifactChunk{} }, "credential": func() any { return &wire.Credential{} },
	}
}

// FuzzDecode feeds arbitrary payloads to every message decoder, which is
// what a broker delivers from any client: Decode must return an error or a
// message that encodes and decodes back to the same encoding, and never panic.
func FuzzDecode(f *testing.F) {
	for _, m := range []any{
		&wire.Status{ID: "p1", State: "online", Labels: map[string]string{"zone": "a"}},
		&wire.Heartbeat{ID: "p1"},
		&wire.Command{Start: &wire.StartTask{TaskID: "t", Attempt: 2, Artifact: wire.Artifact{URI: "relay://sha256:ab"}, Inputs: []float64{1, 2}, Env: map[string]string{"A": "b"}}},
		&wire.Command{Stop: &wire.StopTask{TaskID: "t", Attempt: 1}},
		&wire.Event{TaskID: "t", Attempt: 1, Type: wire.EventSucceeded, Result: &wire.Result{Results: []float64{3}}},
		&wire.ArtifactChunk{Digest: "sha256:ab", Data: []byte("chunk")},
		&wire.Credential{},
	} {
		b, err := wire.Encode(m)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(`{"v":99}`))
	f.Add([]byte(`{"v":1,"start":{"inputs":[1e400]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, fresh := range messages() {
			m := fresh()
			if err := wire.Decode(b, m); err != nil {
				continue
			}
			out, err := wire.Encode(m)
			require.NoError(t, err, name)
			// Encoding is a fixed point after one round (a decoded
			// empty field may encode as absent, never as something else).
			again := fresh()
			require.NoError(t, wire.Decode(out, again), name)
			out2, err := wire.Encode(again)
			require.NoError(t, err, name)
			require.Equal(t, string(out), string(out2), name)
		}
	})
}

// FuzzTopics checks that Parse accepts exactly the topics the builders
// make, for any id and kind, and that ValidID never admits a wildcard or a
// level separator.
func FuzzTopics(f *testing.F) {
	f.Add("propeller/v1/proplets/edge-1/events", "edge-1")
	f.Add("propeller/v1/proplets//events", "a/b")
	f.Add("propeller/v1/proplets/+/fl/updates", "#")
	f.Fuzz(func(t *testing.T, topic, id string) {
		tp := wire.Topics{}
		if pid, kind, err := tp.Parse(topic); err == nil {
			require.NotEmpty(t, pid)
			require.NotEmpty(t, kind)
			require.Equal(t, topic, tp.For(pid, kind))
		}
		if wire.ValidID(id) {
			require.NotContains(t, id, "/")
			require.NotContains(t, id, "+")
			require.NotContains(t, id, "#")
			got, kind, err := tp.Parse(tp.Events(id))
			require.NoError(t, err)
			require.Equal(t, id, got)
			require.Equal(t, wire.KindEvents, kind)
		}
	})
}
