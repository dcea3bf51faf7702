package aggregate_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration/fl/aggregate"
)

func upd(n int64, vals ...float32) aggregate.Update {
	return aggregate.Update{NumSamples: n, Tensors: aggregate.Model{"w": vals}}
}

func TestAggregatorsKnownInputs(t *testing.T) {
	global := aggregate.Model{"w": {0, 0}}
	tests := []struct {
		name    string
		algo    string
		cfg     map[string]float64
		updates []aggregate.Update
		want    []float32
	}{
		{"fedavg weighted", "fedavg", nil, []aggregate.Update{upd(1, 1, 10), upd(3, 5, 2)}, []float32{4, 4}},
		{"fedavg no samples means equal weights", "fedavg", nil, []aggregate.Update{upd(0, 2, 4), upd(0, 4, 8)}, []float32{3, 6}},
		{"fedavg default name", "", nil, []aggregate.Update{upd(1, 1, 1)}, []float32{1, 1}},
		{"median odd", "fedmedian", nil, []aggregate.Update{upd(1, 1, -5), upd(100, 1000, 0), upd(1, 2, 7)}, []float32{2, 0}},
		{"median even", "fedmedian", nil, []aggregate.Update{upd(1, 1, 4), upd(1, 3, 2), upd(1, 100, 0), upd(1, -100, 8)}, []float32{2, 3}},
		{"median single", "fedmedian", nil, []aggregate.Update{upd(1, 9, 8)}, []float32{9, 8}},
		{"trimmed drops extremes", "trimmedmean", map[string]float64{"beta": 0.2}, []aggregate.Update{upd(1, 1, 1), upd(1, 2, 2), upd(1, 3, 3), upd(1, 1000, -1000), upd(1, -1000, 1000)}, []float32{2, 2}},
		{"trimmed beta 0 is mean", "trimmedmean", map[string]float64{"beta": 0}, []aggregate.Update{upd(1, 1, 2), upd(5, 3, 4)}, []float32{2, 3}},
		{"fedavgm first round", "fedavgm", map[string]float64{"server_lr": 1, "momentum": 0.9}, []aggregate.Update{upd(1, 2, 4)}, []float32{2, 4}},
		{"fedavgm half step", "fedavgm", map[string]float64{"server_lr": 0.5}, []aggregate.Update{upd(1, 2, 4)}, []float32{1, 2}},
		// First Adam step: m = 0.1d, v = 0.01d^2 so the step is lr*sign(d)
		// (tau tiny).
		{"fedadam first step", "fedadam", map[string]float64{"server_lr": 0.5, "beta1": 0.9, "beta2": 0.99, "tau": 1e-9}, []aggregate.Update{upd(1, 2, -4)}, []float32{0.5, -0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := aggregate.New(tc.algo, tc.cfg)
			require.NoError(t, err)
			before := make([]float32, len(tc.updates[0].Tensors["w"]))
			copy(before, tc.updates[0].Tensors["w"])
			got, _, err := a.Aggregate(global, tc.updates, nil)
			require.NoError(t, err)
			require.InDeltaSlice(t, tc.want, got["w"], 1e-5)
			require.Equal(t, before, tc.updates[0].Tensors["w"], "inputs must not change")
		})
	}
}

func TestFedAvgMCarriesMomentum(t *testing.T) {
	a, err := aggregate.New("fedavgm", map[string]float64{"server_lr": 1, "momentum": 0.5})
	require.NoError(t, err)
	g := aggregate.Model{"w": {0}}
	g1, s1, err := a.Aggregate(g, []aggregate.Update{upd(1, 1)}, nil)
	require.NoError(t, err)
	require.InDelta(t, 1, g1["w"][0], 1e-6)
	require.InDelta(t, -1, s1["m/w"][0], 1e-6)
	// Second round: d = 1-2 = -1, m = 0.5*-1 + -1 = -1.5, w = 1 + 1.5.
	g2, s2, err := a.Aggregate(g1, []aggregate.Update{upd(1, 2)}, s1)
	require.NoError(t, err)
	require.InDelta(t, 2.5, g2["w"][0], 1e-6)
	require.InDelta(t, -1.5, s2["m/w"][0], 1e-6)
}

func TestFedAdamCarriesMoments(t *testing.T) {
	a, err := aggregate.New("fedadam", map[string]float64{"server_lr": 1, "beta1": 0.5, "beta2": 0.5, "tau": 1e-9})
	require.NoError(t, err)
	g := aggregate.Model{"w": {0}}
	_, s1, err := a.Aggregate(g, []aggregate.Update{upd(1, 2)}, nil)
	require.NoError(t, err)
	require.InDelta(t, 1, s1["m/w"][0], 1e-6) // 0.5*2
	require.InDelta(t, 2, s1["v/w"][0], 1e-6) // 0.5*4
	_, s2, err := a.Aggregate(g, []aggregate.Update{upd(1, 2)}, s1)
	require.NoError(t, err)
	require.InDelta(t, 1.5, s2["m/w"][0], 1e-6)
	require.InDelta(t, 3, s2["v/w"][0], 1e-6)
}

func TestRobustAgainstPoison(t *testing.T) {
	good := []aggregate.Update{upd(100, 1, 1), upd(100, 1.1, 0.9), upd(100, 0.9, 1.1), upd(100, 1, 1)}
	poisoned := append(good, upd(100, -500, 500))
	for _, algo := range []string{"fedmedian", "trimmedmean"} {
		var cfg map[string]float64
		if algo == "trimmedmean" {
			cfg = map[string]float64{"beta": 0.2}
		}
		a, err := aggregate.New(algo, cfg)
		require.NoError(t, err)
		got, _, err := a.Aggregate(nil, poisoned, nil)
		require.NoError(t, err)
		require.InDeltaSlice(t, []float32{1, 1}, got["w"], 0.1, algo)
	}
	avg, _, err := aggregate.FedAvgAgg{}.Aggregate(nil, poisoned, nil)
	require.NoError(t, err)
	require.Greater(t, math.Abs(float64(avg["w"][0]-1)), 50.0)
}

func TestBadInput(t *testing.T) {
	global := aggregate.Model{"w": {0, 0}}
	tests := []struct {
		name    string
		algo    string
		cfg     map[string]float64
		updates []aggregate.Update
		newErr  bool
	}{
		{"unknown algorithm", "sgd", nil, nil, true},
		{"unknown config key", "fedavg", map[string]float64{"beta": 1}, nil, true},
		{"trimmed beta too large", "trimmedmean", map[string]float64{"beta": 0.5}, nil, true},
		{"fedavgm bad momentum", "fedavgm", map[string]float64{"momentum": 1}, nil, true},
		{"fedadam bad tau", "fedadam", map[string]float64{"tau": 0}, nil, true},
		{"no updates", "fedavg", nil, nil, false},
		{"wrong length", "fedavg", nil, []aggregate.Update{upd(1, 1)}, false},
		{"missing tensor", "fedmedian", nil, []aggregate.Update{{NumSamples: 1, Tensors: aggregate.Model{"x": {1, 2}}}}, false},
		{"extra tensor", "fedmedian", nil, []aggregate.Update{{NumSamples: 1, Tensors: aggregate.Model{"w": {1, 2}, "x": {1}}}}, false},
		{"negative samples", "fedavg", nil, []aggregate.Update{upd(-1, 1, 1)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := aggregate.New(tc.algo, tc.cfg)
			if tc.newErr {
				require.ErrorIs(t, err, aggregate.ErrInput)
				return
			}
			require.NoError(t, err)
			_, _, err = a.Aggregate(global, tc.updates, nil)
			require.ErrorIs(t, err, aggregate.ErrInput)
		})
	}
	for _, u := range []aggregate.Update{upd(1, float32(math.NaN()), 1), upd(1, float32(math.Inf(-1)), 1), upd(1, 1), upd(-1, 1, 1)} {
		require.ErrorIs(t, aggregate.Validate(global, u), aggregate.ErrInput)
	}
	require.NoError(t, aggregate.Validate(global, upd(1, 1, 2)))
	_, _, err := aggregate.FedAvgMAgg{ServerLR: 1}.Aggregate(nil, []aggregate.Update{upd(1, 1)}, nil)
	require.ErrorIs(t, err, aggregate.ErrInput)
}

// The median must agree with sorting, also across chunk boundaries and
// with ties.
func TestMedianMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 10, 33} {
		const size = 1500
		updates := make([]aggregate.Update, n)
		for i := range updates {
			v := make([]float32, size)
			for j := range v {
				v[j] = float32(r.IntN(20)) // many ties
			}
			updates[i] = aggregate.Update{NumSamples: 1, Tensors: aggregate.Model{"w": v}}
		}
		got, _, err := aggregate.MedianAgg{}.Aggregate(nil, updates, nil)
		require.NoError(t, err)
		for j := 0; j < size; j++ {
			col := make([]float64, n)
			for i := range updates {
				col[i] = float64(updates[i].Tensors["w"][j])
			}
			sortFloats(col)
			want := col[n/2]
			if n%2 == 0 {
				want = (col[n/2-1] + col[n/2]) / 2
			}
			require.InDelta(t, want, got["w"][j], 1e-6, "n=%d j=%d", n, j)
		}
	}
}

func sortFloats(v []float64) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}
