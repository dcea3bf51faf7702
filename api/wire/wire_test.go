package wire_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
)

func TestTopics(t *testing.T) {
	tp := wire.Topics{}
	require.Equal(t, "propeller/v1/proplets/edge-1/commands", tp.Commands("edge-1"))
	require.Equal(t, "propeller/v1/proplets/+/fl/updates", tp.AllOf(wire.KindFLUpdates))
	custom := wire.Topics{Prefix: "site/a"}
	require.Equal(t, "site/a/proplets/x/artifacts/chunks", custom.ArtifactChunks("x"))

	tests := []struct {
		topic, id, kind string
		ok              bool
	}{
		{"propeller/v1/proplets/edge-1/events", "edge-1", "events", true},
		{"propeller/v1/proplets/edge-1/fl/updates", "edge-1", "fl/updates", true},
		{"propeller/v1/proplets/edge-1", "", "", false},
		{"propeller/v1/proplets//events", "", "", false},
		{"other/v1/proplets/edge-1/events", "", "", false},
	}
	for _, tc := range tests {
		id, kind, err := tp.Parse(tc.topic)
		if !tc.ok {
			require.ErrorIs(t, err, wire.ErrForeignTopic, tc.topic)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.id, id)
		require.Equal(t, tc.kind, kind)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{
		"edge-1": true, "a.b_c": true, "": false, "a/b": false, "+": false, "#": false, "x y": false,
		string(make([]byte, 129)): false,
	} {
		require.Equal(t, ok, wire.ValidID(id), "%q", id)
	}
}

func TestEncodeDecode(t *testing.T) {
	b, err := wire.Encode(&wire.Event{TaskID: "t", Attempt: 2, Type: wire.EventSucceeded})
	require.NoError(t, err)
	var ev wire.Event
	require.NoError(t, wire.Decode(b, &ev))
	require.Equal(t, wire.Version, ev.V)
	require.Equal(t, 2, ev.Attempt)

	require.ErrorContains(t, wire.Decode([]byte(`{"v":2,"task_id":"t"}`), &ev), "unsupported protocol version 2")
	require.ErrorContains(t, wire.Decode([]byte(`{`), &ev), "decode")
	_, err = wire.Encode(struct{}{})
	require.Error(t, err)
	require.Error(t, wire.Decode([]byte(`{}`), &struct{}{}))
}
