package fl_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	blobstore "github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/memory"
)

// BenchmarkRoundOverhead measures what the coordinator adds to a round
// with 10 participants, training excluded: accepting 10 updates (decode,
// validate, blob write, durable record), aggregating, writing the
// checkpoint and starting the next round's 10 tasks. Store and blobs are
// the standalone manager's real ones (bbolt and files, fsynced); the engine
// is a fake that accepts tasks instantly.
func BenchmarkRoundOverhead(b *testing.B) {
	type deps struct {
		store fl.Store
		blobs fl.Blobs
	}
	durable := func(b *testing.B) deps {
		dir := b.TempDir()
		store, err := bolt.Open(filepath.Join(dir, "db"), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = store.Close() })
		bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
		if err != nil {
			b.Fatal(err)
		}
		return deps{store, bs}
	}
	inMemory := func(*testing.B) deps { return deps{memory.NewFLStore(), &blobs{m: map[string][]byte{}}} }
	for _, params := range []int{650, 100_000} {
		for _, st := range []struct {
			name string
			deps func(*testing.B) deps
		}{{"bolt", durable}, {"memory", inMemory}} {
			b.Run(fmt.Sprintf("store=%s/params=%d", st.name, params), func(b *testing.B) {
				ctx := context.Background()
				d := st.deps(b)
				store, bs := d.store, d.blobs
				eng := newEngine()
				c, err := fl.New(fl.Config{}, fl.Deps{Store: store, Engine: eng, Blobs: bs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				vals := make([]float32, params)
				model, _ := safetensors.EncodeF32(map[string][]float32{"w": vals}, nil, nil)
				digest, err := bs.PutBytes(model)
				if err != nil {
					b.Fatal(err)
				}
				updates := make([][]byte, 10)
				for i := range updates {
					for j := range vals {
						vals[j] = float32(i + j%7)
					}
					updates[i], _ = safetensors.EncodeF32(map[string][]float32{"w": vals}, nil, nil)
				}
				spec := fl.JobSpec{ModelRef: wire.BlobScheme + digest, TaskWasmImage: "oci://example/fl:1", Rounds: fl.Rounds{Total: 100000},
					Aggregator: fl.AggregatorSpec{Algorithm: "fedavg"}}
				for i := range 10 {
					spec.Participants = append(spec.Participants, fl.Participant{PropletID: fmt.Sprintf("p%02d", i)})
				}
				j, err := c.Create(ctx, spec)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for n := 0; b.Loop(); n++ {
					rid := fmt.Sprint(n + 1)
					tasks := eng.round(rid)
					for i, p := range spec.Participants {
						err := c.Receive(ctx, fl.Update{JobID: j.ID, RoundID: rid, TaskID: tasks[p.PropletID].ID, PropletID: p.PropletID,
							Attempt: 1, NumSamples: 100, Tensor: updates[i]})
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				j, _ = c.Get(ctx, j.ID)
				if len(j.Status.Checkpoints) < b.N || j.Status.RejectedTotal != 0 {
					b.Fatalf("%d checkpoints for %d rounds, %d rejected", len(j.Status.Checkpoints), b.N, j.Status.RejectedTotal)
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/round")
			})
		}
	}
}
