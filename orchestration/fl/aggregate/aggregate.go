// Package aggregate holds the federated-learning aggregators: pure
// functions from the global model and the round's client updates to the
// next global model. Updates are full local models (not deltas), as the
// training clients send them; the server-optimizer variants derive the
// pseudo-gradient themselves.
package aggregate

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
)

// Model is a set of named float32 tensors (flattened).
type Model map[string][]float32

// Update is one client's contribution.
type Update struct {
	NumSamples int64
	Tensors    Model
}

// State is what a server optimizer carries from one round to the next
// (momentum, second moments). It is tensors too, so the coordinator stores
// it in the same format as checkpoints.
type State map[string][]float32

// Aggregator turns a round's updates into the next global model. It must
// not modify its inputs.
type Aggregator interface {
	Aggregate(global Model, updates []Update, state State) (Model, State, error)
}

// Algorithm names.
const (
	FedAvg      = "fedavg"
	FedAvgM     = "fedavgm"
	FedAdam     = "fedadam"
	FedMedian   = "fedmedian"
	TrimmedMean = "trimmedmean"
)

// Algorithms lists the names New accepts.
var Algorithms = []string{FedAvg, FedAvgM, FedAdam, FedMedian, TrimmedMean}

// ErrInput wraps problems with the updates or configuration.
var ErrInput = errors.New("aggregate: invalid input")

// New returns the aggregator for an algorithm name with its config (keys
// documented on each type; unknown keys are an error so typos surface).
func New(algorithm string, cfg map[string]float64) (Aggregator, error) {
	get := func(key string, def float64) float64 {
		if v, ok := cfg[key]; ok {
			return v
		}
		return def
	}
	allow := func(keys ...string) error {
		for k := range cfg {
			found := false
			for _, a := range keys {
				found = found || a == k
			}
			if !found {
				return fmt.Errorf("%s does not take config %q (it takes %v): %w", algorithm, k, keys, ErrInput)
			}
		}
		return nil
	}
	switch algorithm {
	case FedAvg, "":
		return FedAvgAgg{}, allow()
	case FedMedian:
		return MedianAgg{}, allow()
	case TrimmedMean:
		a := TrimmedMeanAgg{Beta: get("beta", 0.1)}
		if a.Beta < 0 || a.Beta >= 0.5 {
			return nil, fmt.Errorf("trimmedmean beta %v: want 0 <= beta < 0.5: %w", a.Beta, ErrInput)
		}
		return a, allow("beta")
	case FedAvgM:
		a := FedAvgMAgg{ServerLR: get("server_lr", 1), Momentum: get("momentum", 0.9)}
		if a.ServerLR <= 0 || a.Momentum < 0 || a.Momentum >= 1 {
			return nil, fmt.Errorf("fedavgm: want server_lr > 0 and 0 <= momentum < 1: %w", ErrInput)
		}
		return a, allow("server_lr", "momentum")
	case FedAdam:
		a := FedAdamAgg{ServerLR: get("server_lr", 0.1), Beta1: get("beta1", 0.9), Beta2: get("beta2", 0.99), Tau: get("tau", 1e-3)}
		if a.ServerLR <= 0 || a.Beta1 < 0 || a.Beta1 >= 1 || a.Beta2 < 0 || a.Beta2 >= 1 || a.Tau <= 0 {
			return nil, fmt.Errorf("fedadam: want server_lr > 0, 0 <= beta1, beta2 < 1, tau > 0: %w", ErrInput)
		}
		return a, allow("server_lr", "beta1", "beta2", "tau")
	}
	return nil, fmt.Errorf("unknown aggregation algorithm %q (want one of %v): %w", algorithm, Algorithms, ErrInput)
}

// Check verifies that every update has exactly the tensors of ref (the
// global model, or the first update when there is none) with the same
// lengths, so an aggregator never indexes out of range. It does not scan
// values: that is Validate's job, done once when an update arrives rather
// than on every aggregation.
func Check(ref Model, updates []Update) error {
	if len(updates) == 0 {
		return fmt.Errorf("no updates: %w", ErrInput)
	}
	if ref == nil {
		ref = updates[0].Tensors
	}
	for i, u := range updates {
		if err := checkShape(ref, u); err != nil {
			return fmt.Errorf("update %d: %w", i, err)
		}
	}
	return nil
}

// Validate checks one incoming update against the global model: same
// tensors and lengths as Check, and only finite values, so one NaN cannot
// poison the model.
func Validate(ref Model, u Update) error {
	if err := checkShape(ref, u); err != nil {
		return err
	}
	for name, vals := range u.Tensors {
		for _, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("tensor %q holds a non-finite value: %w", name, ErrInput)
			}
		}
	}
	return nil
}

func checkShape(ref Model, u Update) error {
	if u.NumSamples < 0 {
		return fmt.Errorf("negative num_samples: %w", ErrInput)
	}
	if len(u.Tensors) != len(ref) {
		return fmt.Errorf("%d tensors, want %d: %w", len(u.Tensors), len(ref), ErrInput)
	}
	for name, want := range ref {
		got, ok := u.Tensors[name]
		if !ok {
			return fmt.Errorf("tensor %q missing: %w", name, ErrInput)
		}
		if len(got) != len(want) {
			return fmt.Errorf("tensor %q has %d values, want %d: %w", name, len(got), len(want), ErrInput)
		}
	}
	return nil
}

// chunk is the unit of parallel work: small enough that a chunk of the
// output stays in L1/L2 while every update streams through it.
const chunk = 8 << 10

type span struct {
	name   string
	lo, hi int
}

func spans(ref Model, size int) []span {
	names := make([]string, 0, len(ref))
	for n := range ref {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []span
	for _, n := range names {
		l := len(ref[n])
		for lo := 0; lo < l; lo += size {
			out = append(out, span{n, lo, min(lo+size, l)})
		}
	}
	return out
}

// parallel runs fn over all spans on up to GOMAXPROCS goroutines.
func parallel(sp []span, fn func(span)) {
	workers := min(runtime.GOMAXPROCS(0), len(sp))
	if workers <= 1 {
		for _, s := range sp {
			fn(s)
		}
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(sp) {
					return
				}
				fn(sp[i])
			}
		}()
	}
	wg.Wait()
}

func alloc(ref Model) Model {
	out := make(Model, len(ref))
	for n, v := range ref {
		out[n] = make([]float32, len(v))
	}
	return out
}

// weights returns each update's share: num_samples over the total, or
// equal shares when no update reports samples.
func weights(updates []Update) []float32 {
	var total int64
	for _, u := range updates {
		total += u.NumSamples
	}
	w := make([]float32, len(updates))
	for i, u := range updates {
		if total == 0 {
			w[i] = 1 / float32(len(updates))
		} else {
			w[i] = float32(float64(u.NumSamples) / float64(total))
		}
	}
	return w
}

// FedAvgAgg averages updates weighted by num_samples (McMahan et al. 2017).
type FedAvgAgg struct{}

// Aggregate implements Aggregator.
func (FedAvgAgg) Aggregate(global Model, updates []Update, state State) (Model, State, error) {
	if err := Check(global, updates); err != nil {
		return nil, nil, err
	}
	return weightedMean(updates), state, nil
}

func weightedMean(updates []Update) Model {
	ref := updates[0].Tensors
	out := alloc(ref)
	w := weights(updates)
	parallel(spans(ref, chunk), func(s span) {
		dst := out[s.name][s.lo:s.hi]
		for i, u := range updates {
			src := u.Tensors[s.name][s.lo:s.hi]
			wi := w[i]
			src = src[:len(dst)]
			for j := range dst {
				dst[j] += wi * src[j]
			}
		}
	})
	return out
}

// MedianAgg takes the coordinate-wise median (Yin et al. 2018); with an
// even number of updates, the mean of the two middle values. It ignores
// num_samples: a client must not buy influence by claiming many samples.
type MedianAgg struct{}

// Aggregate implements Aggregator.
func (MedianAgg) Aggregate(global Model, updates []Update, state State) (Model, State, error) {
	if err := Check(global, updates); err != nil {
		return nil, nil, err
	}
	n := len(updates)
	return byCoordinate(updates, func(vals []float32) float32 {
		k := n / 2
		hi := selectK(vals, k)
		if n%2 == 1 {
			return hi
		}
		// After selection vals[:k] holds the k smallest.
		lo := vals[0]
		for _, v := range vals[1:k] {
			lo = max(lo, v)
		}
		return (lo + hi) / 2
	}), state, nil
}

// TrimmedMeanAgg drops the floor(Beta*n) smallest and largest values of
// each coordinate and averages the rest (Yin et al. 2018). Config: beta
// (default 0.1, 0 <= beta < 0.5).
type TrimmedMeanAgg struct{ Beta float64 }

// Aggregate implements Aggregator.
func (a TrimmedMeanAgg) Aggregate(global Model, updates []Update, state State) (Model, State, error) {
	if err := Check(global, updates); err != nil {
		return nil, nil, err
	}
	n := len(updates)
	k := int(a.Beta * float64(n))
	if n-2*k < 1 {
		return nil, nil, fmt.Errorf("trimmedmean beta %v leaves nothing of %d updates: %w", a.Beta, n, ErrInput)
	}
	inv := 1 / float32(n-2*k)
	return byCoordinate(updates, func(vals []float32) float32 {
		sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
		var s float32
		for _, v := range vals[k : n-k] {
			s += v
		}
		return s * inv
	}), state, nil
}

// byCoordinate applies f to each coordinate's values across updates. It
// transposes a block at a time so every update is read sequentially.
func byCoordinate(updates []Update, f func([]float32) float32) Model {
	const block = 512
	ref := updates[0].Tensors
	out := alloc(ref)
	n := len(updates)
	parallel(spans(ref, block), func(s span) {
		buf := make([]float32, (s.hi-s.lo)*n)
		for i, u := range updates {
			for j, v := range u.Tensors[s.name][s.lo:s.hi] {
				buf[j*n+i] = v
			}
		}
		dst := out[s.name][s.lo:s.hi]
		for j := range dst {
			dst[j] = f(buf[j*n : (j+1)*n])
		}
	})
	return out
}

// selectK reorders v so v[k] is the k-th smallest, everything before it is
// <= and everything after >=, and returns v[k] (Hoare's quickselect with a
// median-of-three pivot).
func selectK(v []float32, k int) float32 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		p := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

// FedAvgMAgg is FedAvg with server momentum (Hsu et al. 2019): the
// pseudo-gradient d = global - fedavg(updates) feeds m = momentum*m + d,
// and the new model is global - server_lr*m. Config: server_lr (default
// 1), momentum (default 0.9). State: "m/<tensor>".
type FedAvgMAgg struct{ ServerLR, Momentum float64 }

// Aggregate implements Aggregator.
func (a FedAvgMAgg) Aggregate(global Model, updates []Update, state State) (Model, State, error) {
	if global == nil {
		return nil, nil, fmt.Errorf("fedavgm needs the global model: %w", ErrInput)
	}
	if err := Check(global, updates); err != nil {
		return nil, nil, err
	}
	avg := weightedMean(updates)
	next := make(State, len(global))
	out := alloc(global)
	lr, mom := float32(a.ServerLR), float32(a.Momentum)
	for name, g := range global {
		m := make([]float32, len(g))
		prev := state["m/"+name]
		if len(prev) != len(g) {
			prev = nil
		}
		for j := range g {
			d := g[j] - avg[name][j]
			if prev != nil {
				d += mom * prev[j]
			}
			m[j] = d
			out[name][j] = g[j] - lr*d
		}
		next["m/"+name] = m
	}
	return out, next, nil
}

// FedAdamAgg is the adaptive server optimizer of Reddi et al. 2021: with
// the pseudo-gradient d = fedavg(updates) - global, m = b1*m + (1-b1)*d,
// v = b2*v + (1-b2)*d^2 and the new model is global + lr*m/(sqrt(v)+tau).
// Config: server_lr (0.1), beta1 (0.9), beta2 (0.99), tau (1e-3). State:
// "m/<tensor>", "v/<tensor>".
type FedAdamAgg struct{ ServerLR, Beta1, Beta2, Tau float64 }

// Aggregate implements Aggregator.
func (a FedAdamAgg) Aggregate(global Model, updates []Update, state State) (Model, State, error) {
	if global == nil {
		return nil, nil, fmt.Errorf("fedadam needs the global model: %w", ErrInput)
	}
	if err := Check(global, updates); err != nil {
		return nil, nil, err
	}
	avg := weightedMean(updates)
	next := make(State, 2*len(global))
	out := alloc(global)
	for name, g := range global {
		pm, pv := state["m/"+name], state["v/"+name]
		if len(pm) != len(g) || len(pv) != len(g) {
			pm, pv = nil, nil
		}
		m, v := make([]float32, len(g)), make([]float32, len(g))
		for j := range g {
			d := float64(avg[name][j] - g[j])
			var mj, vj float64
			if pm != nil {
				mj, vj = float64(pm[j]), float64(pv[j])
			}
			mj = a.Beta1*mj + (1-a.Beta1)*d
			vj = a.Beta2*vj + (1-a.Beta2)*d*d
			m[j], v[j] = float32(mj), float32(vj)
			out[name][j] = g[j] + float32(a.ServerLR*mj/(math.Sqrt(vj)+a.Tau))
		}
		next["m/"+name], next["v/"+name] = m, v
	}
	return out, next, nil
}
