package digits_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/orchestration/fl/aggregate"
)

func TestDataset(t *testing.T) {
	all, err := digits.Load()
	require.NoError(t, err)
	require.Len(t, all, 1797)
	train, test := digits.Split(all)
	require.Len(t, test, 359)
	require.Len(t, train, 1438)
	total := 0
	for i := range 3 {
		total += len(digits.Shard(train, i, 3))
	}
	require.Equal(t, len(train), total)
}

func TestModelRoundTrip(t *testing.T) {
	var m digits.Model
	m.W[5], m.B[9] = 1.5, -2
	raw, err := m.Encode(map[string]string{"k": "v"})
	require.NoError(t, err)
	got, err := digits.Decode(raw)
	require.NoError(t, err)
	require.Equal(t, m, *got)
	_, err = digits.Decode([]byte("junk"))
	require.Error(t, err)
}

// Federated averaging over IID shards, simulated in process, lands within
// two points of centralised training: the property the end-to-end test
// checks with real proplets.
func TestFederatedMatchesCentralised(t *testing.T) {
	all, err := digits.Load()
	require.NoError(t, err)
	train, test := digits.Split(all)
	const rounds, shards = 5, 3
	cfg := digits.TrainConfig{Epochs: 2, LR: 0.5, BatchSize: 16}

	var central digits.Model
	c := cfg
	c.Epochs = rounds * cfg.Epochs
	central.Train(train, c)
	_, centralAcc := central.Evaluate(test)
	require.Greater(t, centralAcc, 0.9)

	var global digits.Model
	for r := range rounds {
		var updates []aggregate.Update
		for s := range shards {
			local := global
			shard := digits.Shard(train, s, shards)
			c := cfg
			c.Seed = uint64(r*shards + s)
			local.Train(shard, c)
			raw, err := local.Encode(nil)
			require.NoError(t, err)
			m, err := decodeVals(raw)
			require.NoError(t, err)
			updates = append(updates, aggregate.Update{NumSamples: int64(len(shard)), Tensors: m})
		}
		next, _, err := aggregate.FedAvgAgg{}.Aggregate(nil, updates, nil)
		require.NoError(t, err)
		for i := range global.W {
			global.W[i] = float64(next[digits.WeightName][i])
		}
		for i := range global.B {
			global.B[i] = float64(next[digits.BiasName][i])
		}
	}
	_, fedAcc := global.Evaluate(test)
	t.Logf("centralised %.4f, federated %.4f", centralAcc, fedAcc)
	require.InDelta(t, centralAcc, fedAcc, 0.02)
}

func decodeVals(raw []byte) (aggregate.Model, error) {
	m, err := digits.Decode(raw)
	if err != nil {
		return nil, err
	}
	w := make([]float32, len(m.W))
	for i, v := range m.W {
		w[i] = float32(v)
	}
	b := make([]float32, len(m.B))
	for i, v := range m.B {
		b[i] = float32(v)
	}
	return aggregate.Model{digits.WeightName: w, digits.BiasName: b}, nil
}
