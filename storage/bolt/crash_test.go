package bolt_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/storetest"
)

// The crash child is this very test binary, told by these variables to
// write instead of test.
const (
	crashDBEnv     = "PROPELLER_BOLT_CRASH_DB"
	crashPrefixEnv = "PROPELLER_BOLT_CRASH_PREFIX"
)

// TestCrashKeepsAckedWrites kills a writer with SIGKILL after a random
// number of acknowledged writes and checks that every acknowledged create
// and update is in the reopened file, with indexes intact. A line reaches
// the parent only after the store call returned, so anything the parent
// read was acknowledged.
func TestCrashKeepsAckedWrites(t *testing.T) {
	if path := os.Getenv(crashDBEnv); path != "" {
		crashChild(t, path, os.Getenv(crashPrefixEnv))
		return
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	path := filepath.Join(t.TempDir(), "crash.db")
	created := map[string]bool{}
	running := map[string]bool{}

	for iter := range 4 {
		killAfter := 1 + rng.IntN(2000)
		t.Logf("iteration %d: SIGKILL after %d acks", iter, killAfter)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAckedWrites$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDBEnv+"="+path, fmt.Sprintf("%s=i%d", crashPrefixEnv, iter))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())

		acks, killed := 0, false
		r := bufio.NewReader(stdout)
		for {
			// A line cut short by the kill has no newline and is dropped:
			// its write was never acknowledged to us.
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			op, id, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			if !ok {
				continue
			}
			switch op {
			case "created":
				created[id] = true
			case "running":
				running[id] = true
			default:
				continue
			}
			acks++
			if acks == killAfter {
				require.NoError(t, cmd.Process.Kill())
				killed = true
			}
			// Keep reading after the kill: lines already in the pipe were
			// acknowledged too.
		}
		werr := cmd.Wait()
		require.True(t, killed, "child stopped after %d of %d acks: %v\n%s", acks, killAfter, werr, stderr.String())

		s := openT(t, path)
		require.NoError(t, s.Check())
		ctx := t.Context()
		for id := range created {
			got, err := s.GetTask(ctx, id)
			require.NoError(t, err, "acknowledged create of %s lost", id)
			if running[id] {
				require.Equal(t, orchestration.PhaseRunning, got.Status.Phase, "acknowledged update of %s lost", id)
			}
		}
		require.NoError(t, s.Close())
		t.Logf("iteration %d: %d acks read, %d creates and %d updates verified", iter, acks, len(created), len(running))
	}
}

// crashChild creates and updates tasks from many goroutines, so the kill
// lands in the middle of shared batches, and reports each success.
func crashChild(t *testing.T, path, prefix string) {
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	ctx := t.Context()
	var mu sync.Mutex
	ack := func(op, id string) {
		mu.Lock()
		defer mu.Unlock()
		// One write per line: the parent never sees half an ack.
		_, err := os.Stdout.WriteString(op + " " + id + "\n")
		if err != nil {
			os.Exit(3) // parent gone
		}
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("%s-w%02d-%08d", prefix, w, i)
				if err := s.CreateTask(ctx, storetest.NewTask(id, orchestration.PhasePending)); err != nil {
					fmt.Fprintln(os.Stderr, "create:", err)
					os.Exit(2)
				}
				ack("created", id)
				if i%2 == 1 {
					continue
				}
				_, err := s.UpdateTask(ctx, id, func(tk *orchestration.Task) error {
					tk.Status.Phase = orchestration.PhaseRunning
					tk.Status.PropletID = "p-" + prefix
					tk.Status.Attempt++
					return nil
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "update:", err)
					os.Exit(2)
				}
				ack("running", id)
			}
		})
	}
	wg.Wait()
}
