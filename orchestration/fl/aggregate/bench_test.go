package aggregate_test

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/absmach/propeller/orchestration/fl/aggregate"
)

const (
	benchUpdates = 100
	benchParams  = 1 << 20
)

var (
	benchOnce sync.Once
	benchData []aggregate.Update
	sink      float32
)

func benchInput() []aggregate.Update {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(3, 4))
		benchData = make([]aggregate.Update, benchUpdates)
		for i := range benchData {
			v := make([]float32, benchParams)
			for j := range v {
				v[j] = r.Float32()
			}
			benchData[i] = aggregate.Update{NumSamples: int64(1 + i), Tensors: aggregate.Model{"w": v}}
		}
	})
	return benchData
}

// bandwidth is the reference: read every value of every update once, on
// the same number of goroutines the aggregators use. An aggregator cannot
// beat it, since it must read the same bytes.
func bandwidth(updates []aggregate.Update) time.Duration {
	start := time.Now()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	sums := make([]float32, workers)
	per := (benchParams + workers - 1) / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := w*per, min((w+1)*per, benchParams)
			var s float32
			for _, u := range updates {
				for _, v := range u.Tensors["w"][lo:hi] {
					s += v
				}
			}
			sums[w] = s
		}()
	}
	wg.Wait()
	for _, s := range sums {
		sink += s
	}
	return time.Since(start)
}

func benchAggregator(b *testing.B, a aggregate.Aggregator) {
	updates := benchInput()
	global := aggregate.Model{"w": make([]float32, benchParams)}
	// The reference loop runs in the same benchmark, interleaved, so both
	// see the same machine load.
	var agg, ref time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		out, _, err := a.Aggregate(global, updates, nil)
		if err != nil {
			b.Fatal(err)
		}
		agg += time.Since(start)
		sink += out["w"][0]
		ref += bandwidth(updates)
	}
	params := float64(benchUpdates) * benchParams * float64(b.N)
	b.ReportMetric(params/agg.Seconds(), "params/s")
	b.ReportMetric(params/ref.Seconds(), "loop-params/s")
	b.ReportMetric(agg.Seconds()/ref.Seconds(), "x-loop")
}

func BenchmarkFedAvg100x1M(b *testing.B) { benchAggregator(b, aggregate.FedAvgAgg{}) }

func BenchmarkFedMedian100x1M(b *testing.B) { benchAggregator(b, aggregate.MedianAgg{}) }
