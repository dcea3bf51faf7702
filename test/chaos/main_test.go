// Package chaos is the chaos suite: a real manager, real proplets and an
// external Mosquitto as processes on loopback, a steady mixed stream of
// real WASM tasks, random faults (SIGKILL and restart of each process,
// SIGSTOP/SIGCONT of proplets past the heartbeat deadline), and invariants
// checked at the end from the REST API, the proplets' execution logs and
// the bbolt file. docs/reliability.md describes what it proves.
//
// The run is seeded: CHAOS_SEED picks the task mix, fault types, victims
// and gaps (timing still varies; the invariants must hold for every
// interleaving). CHAOS_DURATION sets how long faults are injected,
// CHAOS_FAULTS which kinds. `make soak DURATION=30m` runs a long one.
package chaos

import (
	"testing"

	"github.com/absmach/propeller/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
