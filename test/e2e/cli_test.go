package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

// cliRun is one run of the propeller binary.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cliEnv runs the binary as a user's shell would: only the given
// PROPELLER_* settings and a home of its own, so no developer config leaks in.
type cliEnv struct {
	t   *testing.T
	env []string
}

func newCLIEnv(t *testing.T, extra ...string) *cliEnv {
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "PROPELLER_") && k != "HOME" && k != "XDG_CONFIG_HOME" {
			env = append(env, kv)
		}
	}
	return &cliEnv{t: t, env: append(env, extra...)}
}

func (e *cliEnv) run(args ...string) cliRun {
	e.t.Helper()
	cmd := exec.Command(harness.Binary, args...)
	cmd.Env = e.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		require.NoError(e.t, err)
	}
	return cliRun{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// expect runs args and checks the exit code and that stdout and stderr
// contain the given strings.
func (e *cliEnv) expect(code int, args []string, stdout, stderr []string) cliRun {
	e.t.Helper()
	r := e.run(args...)
	require.Equal(e.t, code, r.code, "propeller %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.stdout, r.stderr)
	for _, s := range stdout {
		require.Contains(e.t, r.stdout, s, "stdout of propeller %s", strings.Join(args, " "))
	}
	for _, s := range stderr {
		require.Contains(e.t, r.stderr, s, "stderr of propeller %s", strings.Join(args, " "))
	}
	return r
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// TestCLI runs the binary as a script would, against a real manager and
// proplet, and checks what scripts rely on: exit codes, output formats,
// contexts, lookups by name and id prefix.
func TestCLI(t *testing.T) {
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("cli-a", "--labels", "zone=a")
	s.WaitAlive("cli-a")
	dir := t.TempDir()
	hello := writeFile(t, dir, "hello.wasm", exampletest.Build(t, "hello"))
	cfg := filepath.Join(dir, "config.yaml")
	e := newCLIEnv(t, "PROPELLER_CONFIG="+cfg)

	// A context names the manager; later commands need no flags.
	e.expect(0, []string{"context", "set", "e2e", "--server", "http://" + s.HTTPAddr, "--token-file", filepath.Join(s.DataDir, "api-token")},
		[]string{`Created context "e2e"`}, nil)
	e.expect(0, []string{"context", "use", "e2e"}, []string{`Switched to context "e2e".`}, nil)

	type step struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
	}
	for _, st := range []step{
		{"wait on Succeeded", []string{"task", "create", "ok", "--file", hello, "--args", "world", "--wait"}, 0,
			[]string{"Succeeded", "stdout:\n", "arg[0]=world"}, nil},
		{"wait on Failed", []string{"task", "create", "fails", "--file", hello, "--args=-exit,7", "--max-attempts", "1", "--wait"}, 3,
			[]string{"Failed", "exit code: 7"}, []string{"error: task ", " Failed (NonZeroExit"}},
		{"wait past the timeout", []string{"task", "create", "nowhere", "--file", hello, "--proplet", "ghost", "--wait", "--wait-timeout", "1s"}, 4,
			[]string{"Pending"}, []string{"is still Pending after --wait-timeout 1s"}},
		{"unknown subcommand", []string{"task", "frobnicate"}, 2,
			nil, []string{`error: unknown command "frobnicate" for "propeller task"`}},
		{"misspelt subcommand", []string{"task", "lsit"}, 2, nil, []string{"Did you mean this?\n\tlist\n"}},
		{"unknown flag", []string{"task", "list", "--phse", "Failed"}, 2, nil, []string{"unknown flag: --phse", "Did you mean this?\n\t--phase\n"}},
		{"no module", []string{"task", "create", "empty"}, 2, nil, []string{"a task needs its module"}},
		{"get by name, jsonpath", []string{"task", "get", "ok", "-o", "jsonpath={.phase} {.exitCode}"}, 0, []string{"Succeeded 0\n"}, nil},
		{"list, jsonpath over items", []string{"task", "list", "--phase", "Failed", "-o", "jsonpath={.items[*].name}"}, 0, []string{"fails\n"}, nil},
		{"list yaml", []string{"task", "list", "--phase", "Succeeded", "-o", "yaml"}, 0, []string{"items:\n", "phase: Succeeded"}, nil},
		{"not found", []string{"task", "get", "no-such-task"}, 1, nil, []string{`task "no-such-task" not found`}},
		{"proplet get", []string{"proplet", "get", "cli-a", "-o", "jsonpath={.alive} {.labels.zone}"}, 0, []string{"true a\n"}, nil},
		{"proplet list by name", []string{"proplet", "list", "-o", "name"}, 0, []string{"cli-a\n"}, nil},
		{"proplet get unknown", []string{"proplet", "get", "ghost"}, 1, nil, []string{"error: "}},
	} {
		t.Run(st.name, func(t *testing.T) {
			e.t = t
			e.expect(st.code, st.args, st.stdout, st.stderr)
		})
	}
	e.t = t

	// -o name prints ids only, and --no-headers leaves tables to awk.
	ids := strings.Fields(e.expect(0, []string{"task", "list", "-o", "name"}, nil, nil).stdout)
	require.Len(t, ids, 3)
	rows := strings.Split(strings.TrimSpace(e.expect(0, []string{"task", "list", "--no-headers"}, nil, nil).stdout), "\n")
	require.Len(t, rows, 3)
	require.Equal(t, ids[0], strings.Fields(rows[0])[0])
	wide := e.expect(0, []string{"task", "list", "-o", "wide"}, []string{"IMAGE", "MESSAGE"}, nil).stdout
	require.Contains(t, strings.Split(wide, "\n")[0], "SELECTOR")

	// A unique prefix of an id finds the task; a shared one lists them all.
	okID := strings.TrimSpace(e.expect(0, []string{"task", "get", "ok", "-o", "name"}, nil, nil).stdout)
	e.expect(0, []string{"task", "get", okID[:len(okID)-1], "-o", "jsonpath={.name}"}, []string{"ok\n"}, nil)
	shared := commonPrefix(ids)
	require.NotEmpty(t, shared, "ids %v share no prefix", ids)
	r := e.expect(1, []string{"task", "get", shared}, nil, []string{"3 task ids start with " + `"` + shared + `"`})
	for _, id := range ids {
		require.Contains(t, r.stderr, id)
	}
	e.expect(0, []string{"task", "create", "ok", "--file", hello, "--suspend"}, nil, nil)
	r = e.expect(1, []string{"task", "get", "ok"}, nil, []string{`2 tasks are named "ok"`, okID})

	// Unschedulable when waiting starts: the reason is printed at once,
	// and again with exit 4 when the timeout passes.
	e.expect(0, []string{"task", "create", "stuck", "--file", hello, "--proplet", "ghost"}, nil, nil)
	require.Eventually(t, func() bool {
		return e.run("task", "get", "stuck", "-o", "jsonpath={.reason}").stdout == "Unschedulable\n"
	}, 60*time.Second, 50*time.Millisecond)
	e.expect(4, []string{"task", "wait", "stuck", "--wait-timeout", "500ms"}, []string{"Pending"},
		[]string{"is Pending: Unschedulable: proplet ghost is not known\n", "still Pending after --wait-timeout 500ms (Unschedulable: proplet ghost is not known)"})
	// Stopped, it is Cancelled: waiting on it exits 3.
	e.expect(0, []string{"task", "stop", "stuck", "-o", "jsonpath={.phase}"}, []string{"Cancelled\n"}, nil)
	e.expect(3, []string{"task", "wait", "stuck"}, nil, []string{" Cancelled"})

	// A suspended task without a module gets one by upload, then runs.
	later := strings.TrimSpace(e.expect(0, []string{"task", "create", "later", "--suspend", "-o", "name"}, nil, nil).stdout)
	e.expect(0, []string{"task", "upload", later, "--file", hello}, []string{"Pending"}, nil)
	e.expect(0, []string{"task", "start", "later", "--wait"}, []string{"Succeeded", "hello"}, nil)
	e.expect(0, []string{"task", "delete", "later"}, []string{"task " + later + " deleted"}, nil)
	e.expect(1, []string{"task", "get", later}, nil, []string{"not found"})

	// Memory sizes are Kubernetes quantities, as in a WasmTask.
	for in, want := range map[string]string{"128M": "128000000", "128Mi": "134217728", "1.5Gi": "1610612736", "1e3": "1000"} {
		e.expect(0, []string{"task", "create", "mem", "--file", hello, "--suspend", "--memory", in, "-o", "jsonpath={.memoryBytes}"}, []string{want + "\n"}, nil)
	}
	e.expect(2, []string{"task", "create", "mem", "--file", hello, "--memory", "12MB"}, nil, []string{`invalid argument "12MB" for "--memory"`})

	// A flag beats the context; an unknown key in the file is an error.
	e.expect(1, []string{"task", "list", "--server", "http://" + harness.FreeAddr(t)}, nil, []string{"error: "})
	bad := writeFile(t, dir, "bad.yaml", []byte("client:\n  sever: http://127.0.0.1:1\n"))
	e.expect(2, []string{"task", "list", "--config", bad}, nil, []string{`unknown key "client.sever" (did you mean "server"?)`})

	// A proplet that is gone can be deleted; then it is not found.
	s.StartProplet("cli-b")
	s.WaitAlive("cli-b")
	s.Proplets["cli-b"].Kill()
	require.Eventually(t, func() bool {
		return e.run("proplet", "get", "cli-b", "-o", "jsonpath={.alive}").stdout == "false\n"
	}, 60*time.Second, 50*time.Millisecond)
	e.expect(0, []string{"proplet", "delete", "cli-b"}, []string{"proplet cli-b deleted"}, nil)
	e.expect(1, []string{"proplet", "get", "cli-b"}, nil, []string{"not found"})

	var v struct{ Version, GoVersion string }
	require.NoError(t, json.Unmarshal([]byte(e.expect(0, []string{"version", "-o", "json"}, nil, nil).stdout), &v))
	require.NotEmpty(t, v.Version)
	require.NotEmpty(t, v.GoVersion)
}

func commonPrefix(ss []string) string {
	p := ss[0]
	for _, s := range ss[1:] {
		for !strings.HasPrefix(s, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}
