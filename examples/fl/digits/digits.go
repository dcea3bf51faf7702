// Package digits is the federated-learning example's data and model: the
// UCI digits dataset (embedded, see data/README.md), a fixed train/test
// split, IID sharding, and softmax regression trained by minibatch SGD.
// The WASM client (examples/fl) and the end-to-end tests share it, so the
// test's centralised baseline trains exactly the model the clients do.
package digits

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/absmach/propeller/api/safetensors"
)

//go:embed data/digits.csv.gz
var csvGz []byte

// Sizes of the problem.
const (
	Features = 64
	Classes  = 10
)

// Tensor names in the model file.
const (
	WeightName = "weight" // shape [Classes, Features]
	BiasName   = "bias"   // shape [Classes]
)

// Sample is one image, pixels scaled to [0, 1].
type Sample struct {
	X     [Features]float64
	Label int
}

// Load parses the embedded dataset.
func Load() ([]Sample, error) {
	zr, err := gzip.NewReader(bytes.NewReader(csvGz))
	if err != nil {
		return nil, fmt.Errorf("digits: %w", err)
	}
	r := csv.NewReader(zr)
	r.FieldsPerRecord = Features + 1
	var out []Sample
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("digits: %w", err)
		}
		var s Sample
		for i := range Features {
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil {
				return nil, fmt.Errorf("digits: row %d: %w", len(out), err)
			}
			s.X[i] = v / 16
		}
		l, err := strconv.Atoi(rec[Features])
		if err != nil || l < 0 || l >= Classes {
			return nil, fmt.Errorf("digits: row %d: bad label %q", len(out), rec[Features])
		}
		s.Label = l
		out = append(out, s)
	}
	return out, nil
}

// Split returns the fixed 80/20 split: every fifth row is held out.
func Split(all []Sample) (train, test []Sample) {
	for i, s := range all {
		if i%5 == 4 {
			test = append(test, s)
		} else {
			train = append(train, s)
		}
	}
	return train, test
}

// Shard returns shard i of n of the training rows, dealt round-robin so
// shards are IID.
func Shard(train []Sample, i, n int) []Sample {
	var out []Sample
	for j := i; j < len(train); j += n {
		out = append(out, train[j])
	}
	return out
}

// Model is softmax regression: logits = W x + b.
type Model struct {
	W [Classes * Features]float64
	B [Classes]float64
}

// Encode writes the model as safetensors (F32).
func (m *Model) Encode(metadata map[string]string) ([]byte, error) {
	w := make([]float32, len(m.W))
	for i, v := range m.W {
		w[i] = float32(v)
	}
	b := make([]float32, len(m.B))
	for i, v := range m.B {
		b[i] = float32(v)
	}
	return safetensors.EncodeF32(
		map[string][]float32{WeightName: w, BiasName: b},
		map[string][]int{WeightName: {Classes, Features}, BiasName: {Classes}},
		metadata)
}

// Decode reads a model written by Encode (or aggregated from such).
func Decode(raw []byte) (*Model, error) {
	vals, _, err := safetensors.DecodeF32(raw)
	if err != nil {
		return nil, err
	}
	w, b := vals[WeightName], vals[BiasName]
	if len(w) != Classes*Features || len(b) != Classes {
		return nil, fmt.Errorf("digits: model needs %s[%d] and %s[%d]", WeightName, Classes*Features, BiasName, Classes)
	}
	var m Model
	for i, v := range w {
		m.W[i] = float64(v)
	}
	for i, v := range b {
		m.B[i] = float64(v)
	}
	return &m, nil
}

// probs returns the class probabilities for x.
func (m *Model) probs(x *[Features]float64, p *[Classes]float64) {
	maxLogit := math.Inf(-1)
	for k := range Classes {
		z := m.B[k]
		row := m.W[k*Features : (k+1)*Features]
		for i, v := range x {
			z += row[i] * v
		}
		p[k] = z
		maxLogit = max(maxLogit, z)
	}
	var sum float64
	for k := range p {
		p[k] = math.Exp(p[k] - maxLogit)
		sum += p[k]
	}
	for k := range p {
		p[k] /= sum
	}
}

// Evaluate returns the mean cross-entropy and the accuracy on samples.
func (m *Model) Evaluate(samples []Sample) (loss, accuracy float64) {
	if len(samples) == 0 {
		return 0, 0
	}
	var p [Classes]float64
	correct := 0
	for i := range samples {
		s := &samples[i]
		m.probs(&s.X, &p)
		loss -= math.Log(max(p[s.Label], 1e-12))
		best := 0
		for k := range p {
			if p[k] > p[best] {
				best = k
			}
		}
		if best == s.Label {
			correct++
		}
	}
	n := float64(len(samples))
	return loss / n, float64(correct) / n
}

// TrainConfig is the local training recipe.
type TrainConfig struct {
	Epochs    int
	LR        float64
	BatchSize int
	Seed      uint64
}

// Train runs minibatch SGD over samples, shuffled each epoch.
func (m *Model) Train(samples []Sample, cfg TrainConfig) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 16
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	idx := make([]int, len(samples))
	for i := range idx {
		idx[i] = i
	}
	var gW [Classes * Features]float64
	var gB [Classes]float64
	var p [Classes]float64
	for range cfg.Epochs {
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for start := 0; start < len(idx); start += cfg.BatchSize {
			batch := idx[start:min(start+cfg.BatchSize, len(idx))]
			clear(gW[:])
			clear(gB[:])
			for _, bi := range batch {
				s := &samples[bi]
				m.probs(&s.X, &p)
				for k := range Classes {
					d := p[k]
					if k == s.Label {
						d--
					}
					gB[k] += d
					row := gW[k*Features : (k+1)*Features]
					for i, v := range s.X {
						row[i] += d * v
					}
				}
			}
			step := cfg.LR / float64(len(batch))
			for i := range m.W {
				m.W[i] -= step * gW[i]
			}
			for k := range m.B {
				m.B[k] -= step * gB[k]
			}
		}
	}
}

// HeldOutAccuracy decodes a model (safetensors) and returns its accuracy
// on the held-out split: how tests judge a federated result.
func HeldOutAccuracy(model []byte) (float64, error) {
	m, err := Decode(model)
	if err != nil {
		return 0, err
	}
	all, err := Load()
	if err != nil {
		return 0, err
	}
	_, test := Split(all)
	_, acc := m.Evaluate(test)
	return acc, nil
}

// CentralisedAccuracy trains one model on the whole training split, as if
// all clients' data were in one place, and returns its held-out accuracy:
// the baseline a federated run is compared with.
func CentralisedAccuracy(cfg TrainConfig) (float64, error) {
	all, err := Load()
	if err != nil {
		return 0, err
	}
	train, test := Split(all)
	var m Model
	m.Train(train, cfg)
	_, acc := m.Evaluate(test)
	return acc, nil
}
