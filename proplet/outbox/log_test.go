package outbox_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/proplet/outbox"
)

// segments lists the log's segment files.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	require.NoError(t, err)
	return m
}

func payloadsOf(t *testing.T, o *outbox.Outbox) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range o.Pending() {
		m, err := o.Read(e.Seq)
		require.NoError(t, err)
		out[m.Key] = string(m.Payload)
	}
	return out
}

func TestTornTailDiscarded(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the last segment, whose last record is k2's.
		damage func(t *testing.T, path string, lastRecord int64)
	}{
		{"truncated body", func(t *testing.T, path string, last int64) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()-3))
		}},
		{"truncated header", func(t *testing.T, path string, last int64) {
			require.NoError(t, os.Truncate(path, last+5))
		}},
		{"bad checksum", func(t *testing.T, path string, last int64) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			fi, err := f.Stat()
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{'X'}, fi.Size()-1)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}},
		{"length beyond end", func(t *testing.T, path string, last int64) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(binary.LittleEndian.AppendUint32(nil, 1<<20), last)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}},
		{"zero-filled tail", func(t *testing.T, path string, last int64) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write(make([]byte, 4096))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := outbox.Open(dir, outbox.Options{})
			require.NoError(t, err)
			var seqs []uint64
			var last int64
			for i := range 3 {
				if i == 2 {
					fi, err := os.Stat(segments(t, dir)[0])
					require.NoError(t, err)
					last = fi.Size()
				}
				seq, _, err := o.Append(outbox.Message{Topic: "t", Key: fmt.Sprint("k", i), Payload: []byte(fmt.Sprint("p", i))})
				require.NoError(t, err)
				seqs = append(seqs, seq)
			}
			require.NoError(t, o.Close())
			segs := segments(t, dir)
			require.Len(t, segs, 1)
			tc.damage(t, segs[0], last)

			o2, err := outbox.Open(dir, outbox.Options{})
			require.NoError(t, err)
			want := map[string]string{"k0": "p0", "k1": "p1"}
			if tc.name == "zero-filled tail" {
				want["k2"] = "p2"
			}
			require.Equal(t, want, payloadsOf(t, o2))
			seq, added, err := o2.Append(outbox.Message{Topic: "t", Key: "k3", Payload: []byte("p3")})
			require.NoError(t, err)
			require.True(t, added)
			require.Greater(t, seq, seqs[1])
			require.NoError(t, o2.Close())

			o3, err := outbox.Open(dir, outbox.Options{})
			require.NoError(t, err)
			want["k3"] = "p3"
			require.Equal(t, want, payloadsOf(t, o3), "appends after a torn tail survive the next reopen")
			require.Len(t, segments(t, dir), 1, "open compacts into one segment")
			require.NoError(t, o3.Close())
		})
	}
}

func TestMarksCommittedWithMessages(t *testing.T) {
	dir := t.TempDir()
	o, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)
	_, err = o.Commit(outbox.Batch{Marks: []outbox.Mark{{Key: "a", Value: 'x'}, {Key: "b", Value: 'x'}, {Key: "c", Value: 'x'}}})
	require.NoError(t, err)
	res, err := o.Commit(outbox.Batch{
		Messages: []outbox.Message{{Topic: "t", Key: "m1"}, {Topic: "t", Key: "m1"}, {Topic: "t", Key: "m2"}},
		Marks:    []outbox.Mark{{Key: "a", Value: 'y'}, {Key: "b"}},
	})
	require.NoError(t, err)
	require.Len(t, res, 3)
	require.True(t, res[0].Added)
	require.Equal(t, outbox.Appended{Seq: res[0].Seq}, res[1], "a key repeated in one batch is deduplicated")
	require.True(t, res[2].Added)
	want := []outbox.Mark{{Key: "c", Value: 'x'}, {Key: "a", Value: 'y'}}
	require.Equal(t, want, o.Marks(), "ordered by last set; value 0 forgets")
	require.NoError(t, o.Close())

	o2, err := outbox.Open(dir, outbox.Options{})
	require.NoError(t, err)
	require.Equal(t, want, o2.Marks())
	require.Equal(t, []string{"m1", "m2"}, keysOf(t, o2))
	require.NoError(t, o2.Close())
}

// TestGroupCommit holds the writer inside its first fsync until many
// appends are queued behind it, and checks that they all share the second.
func TestGroupCommit(t *testing.T) {
	o, err := outbox.Open(t.TempDir(), outbox.Options{})
	require.NoError(t, err)
	defer o.Close()
	gate := make(chan struct{})
	var first sync.Once
	outbox.SetBeforeSync(o, func() { first.Do(func() { <-gate }) })

	var wg sync.WaitGroup
	append1 := func(key string) {
		defer wg.Done()
		_, added, err := o.Append(outbox.Message{Topic: "t", Key: key, Terminal: true})
		require.NoError(t, err)
		require.True(t, added)
	}
	wg.Add(1)
	go append1("first")
	require.Eventually(t, func() bool { return outbox.Queued(o) == 0 && o.Len() == 1 }, 10*time.Second, time.Millisecond)
	const n = 50
	for i := range n {
		wg.Add(1)
		go append1(fmt.Sprint("k", i))
	}
	require.Eventually(t, func() bool { return outbox.Queued(o) == n }, 10*time.Second, time.Millisecond)
	close(gate)
	wg.Wait()
	require.Equal(t, uint64(2), outbox.Syncs(o))
	require.Len(t, o.Pending(), n+1)
}

// TestConcurrentAppendsSurviveReopen: many goroutines append, commit marks
// and remove concurrently with a tiny segment bound, so compaction runs in
// the middle of it; after reopening, every acknowledged append that was not
// removed is there with its payload, and every mark has its last value.
func TestConcurrentAppendsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	opts := outbox.Options{SegmentBytes: 8 << 10, MaxEntries: 1 << 20}
	o, err := outbox.Open(dir, opts)
	require.NoError(t, err)
	const workers, per = 32, 40
	var mu sync.Mutex
	want := map[string]string{}
	marks := map[string]byte{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				key := fmt.Sprintf("w%d-%d", w, i)
				res, err := o.Commit(outbox.Batch{
					Messages: []outbox.Message{{Topic: "t", Key: key, Payload: []byte(strings.Repeat(key, 4)), Terminal: i%2 == 0}},
					Marks:    []outbox.Mark{{Key: fmt.Sprint("w", w), Value: byte(i + 1)}},
				})
				require.NoError(t, err)
				require.True(t, res[0].Added)
				mu.Lock()
				marks[fmt.Sprint("w", w)] = byte(i + 1)
				mu.Unlock()
				if i%3 == 0 {
					require.NoError(t, o.Remove(res[0].Seq))
					continue
				}
				mu.Lock()
				want[key] = strings.Repeat(key, 4)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, want, payloadsOf(t, o))
	require.LessOrEqual(t, len(segments(t, dir)), 2, "compaction deletes superseded segments")
	require.NoError(t, o.Close())

	o2, err := outbox.Open(dir, opts)
	require.NoError(t, err)
	defer o2.Close()
	require.Equal(t, want, payloadsOf(t, o2))
	got := map[string]byte{}
	for _, m := range o2.Marks() {
		got[m.Key] = m.Value
	}
	require.Equal(t, marks, got)
}

const crashChildEnv = "OUTBOX_CRASH_CHILD_DIR"

// TestCrashChild is the child of TestCrashKeepsAcknowledgedAppends; it does
// nothing unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return
	}
	o, err := outbox.Open(dir, outbox.Options{SegmentBytes: 64 << 10, MaxEntries: 1 << 20})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var out sync.Mutex
	for w := 0; ; w++ {
		go func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, err := o.Commit(outbox.Batch{
					Messages: []outbox.Message{{Topic: "t", Key: key, Payload: []byte(key), Terminal: true}},
					Marks:    []outbox.Mark{{Key: key, Value: 1}},
				}); err != nil {
					fmt.Println("error", err)
					os.Exit(2)
				}
				out.Lock()
				// One write per line: whole lines reach the parent.
				fmt.Printf("acked %s\n", key)
				out.Unlock()
			}
		}()
		if w == 15 {
			select {}
		}
	}
}

// TestCrashKeepsAcknowledgedAppends kills a child process with SIGKILL in
// the middle of concurrent appends and checks that every append the child
// saw acknowledged is in the reopened log, with its mark.
func TestCrashKeepsAcknowledgedAppends(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(acked) < 3000 {
		line := sc.Text()
		require.False(t, strings.HasPrefix(line, "error"), line)
		if key, ok := strings.CutPrefix(line, "acked "); ok {
			acked[key] = true
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.GreaterOrEqual(t, len(acked), 3000, "child stopped early")

	o, err := outbox.Open(dir, outbox.Options{MaxEntries: 1 << 20})
	require.NoError(t, err)
	defer o.Close()
	got := payloadsOf(t, o)
	marks := map[string]bool{}
	for _, m := range o.Marks() {
		marks[m.Key] = true
	}
	for key := range acked {
		require.Equal(t, key, got[key], "acknowledged append %s lost", key)
		require.True(t, marks[key], "acknowledged mark %s lost", key)
	}
}

func BenchmarkAppendRemove(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			o, err := outbox.Open(b.TempDir(), outbox.Options{NoSync: !sync})
			require.NoError(b, err)
			defer o.Close()
			payload := make([]byte, 256)
			b.ReportAllocs()
			for b.Loop() {
				seq, _, err := o.Append(outbox.Message{Topic: "t", Payload: payload, Terminal: true})
				if err != nil {
					b.Fatal(err)
				}
				if err := o.Remove(seq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendRemoveParallel is many tasks finishing at once: 32
// goroutines per core append and remove; they share fsyncs.
func BenchmarkAppendRemoveParallel(b *testing.B) {
	o, err := outbox.Open(b.TempDir(), outbox.Options{})
	require.NoError(b, err)
	defer o.Close()
	payload := make([]byte, 256)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			seq, _, err := o.Append(outbox.Message{Topic: "t", Payload: payload, Terminal: true})
			if err != nil {
				b.Error(err)
				return
			}
			if err := o.Remove(seq); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(outbox.Syncs(o)), "appends/fsync")
}
