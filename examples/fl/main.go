// Command fl is a federated-learning client: softmax regression on its
// shard of the UCI digits dataset (embedded in the module), trained by
// minibatch SGD starting from the global model the proplet hands it.
//
// Contract (docs/fl.md): the global model is the safetensors file at
// $MODEL_PATH; the trained local model goes to $UPDATE_PATH and
// {"num_samples": n, "metrics": {"loss": l, "accuracy": a}} to
// $METRICS_PATH. $HYPERPARAMS is a JSON object:
//
//	lr           learning rate (default 0.5)
//	epochs       local epochs per round (default 1)
//	batch_size   minibatch size (default 16)
//	shard_index  which shard of the training split to use; defaults to
//	shard_count  participant_index / participant_count, set by the manager
//	poison       if non-zero, the update is the trained model scaled by
//	             this factor: a deliberately malicious client for testing
//	             robust aggregation
package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"

	"github.com/absmach/propeller/examples/fl/digits"
)

type hyperparams struct {
	LR               float64 `json:"lr"`
	Epochs           int     `json:"epochs"`
	BatchSize        int     `json:"batch_size"`
	ShardIndex       *int    `json:"shard_index"`
	ShardCount       *int    `json:"shard_count"`
	ParticipantIndex int     `json:"participant_index"`
	ParticipantCount int     `json:"participant_count"`
	Poison           float64 `json:"poison"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fl:", err)
		os.Exit(1)
	}
}

func run() error {
	hp := hyperparams{LR: 0.5, Epochs: 1, BatchSize: 16}
	if s := os.Getenv("HYPERPARAMS"); s != "" {
		if err := json.Unmarshal([]byte(s), &hp); err != nil {
			return fmt.Errorf("HYPERPARAMS: %w", err)
		}
	}
	idx, count := hp.ParticipantIndex, max(hp.ParticipantCount, 1)
	if hp.ShardIndex != nil {
		idx = *hp.ShardIndex
	}
	if hp.ShardCount != nil {
		count = *hp.ShardCount
	}
	if idx < 0 || idx >= count {
		return fmt.Errorf("shard %d of %d", idx, count)
	}

	raw, err := os.ReadFile(os.Getenv("MODEL_PATH"))
	if err != nil {
		return fmt.Errorf("global model: %w", err)
	}
	m, err := digits.Decode(raw)
	if err != nil {
		return fmt.Errorf("global model: %w", err)
	}
	all, err := digits.Load()
	if err != nil {
		return err
	}
	train, _ := digits.Split(all)
	shard := digits.Shard(train, idx, count)

	// A different shuffle every round and shard, reproducible from both.
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", os.Getenv("ROUND_ID"), idx)
	m.Train(shard, digits.TrainConfig{Epochs: hp.Epochs, LR: hp.LR, BatchSize: hp.BatchSize, Seed: h.Sum64()})
	loss, acc := m.Evaluate(shard)

	if hp.Poison != 0 {
		for i := range m.W {
			m.W[i] *= hp.Poison
		}
		for i := range m.B {
			m.B[i] *= hp.Poison
		}
	}
	out, err := m.Encode(nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(os.Getenv("UPDATE_PATH"), out, 0o600); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	metrics, err := json.Marshal(map[string]any{
		"num_samples": len(shard),
		"metrics":     map[string]float64{"loss": loss, "accuracy": acc},
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(os.Getenv("METRICS_PATH"), metrics, 0o600); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	fmt.Printf("shard %d/%d: %d samples, loss %.4f, accuracy %.4f\n", idx, count, len(shard), loss, acc)
	return nil
}
