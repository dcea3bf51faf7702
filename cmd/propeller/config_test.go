package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// execute runs the root command with runners that capture options instead
// of starting anything.
func execute(t *testing.T, args ...string) (runners, *standaloneOptions, *operatorOptions, *propletOptions, error) {
	t.Helper()
	var (
		s *standaloneOptions
		o *operatorOptions
		p *propletOptions
	)
	r := runners{
		standalone: func(_ *cobra.Command, x *standaloneOptions) error { s = x; return nil },
		operator:   func(_ *cobra.Command, x *operatorOptions) error { o = x; return nil },
		proplet:    func(_ *cobra.Command, x *propletOptions) error { p = x; return nil },
	}
	root := newRootCommandWith(r)
	root.SetArgs(args)
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	err := root.Execute()
	return r, s, o, p, err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
log-level: debug
manager:
  http-addr: 127.0.0.1:1111
  policy: least-loaded
proplet:
  slots: 7
  labels:
    zone: file
    arch: arm64
`), 0o600))

	type result struct {
		httpAddr, policy, labels string
		slots                    int
	}
	get := func(t *testing.T, cmd string, args []string) result {
		_, s, o, p, err := execute(t, append([]string{cmd}, args...)...)
		require.NoError(t, err)
		var r result
		switch {
		case s != nil:
			r.httpAddr, r.policy = s.httpAddr, s.policy
		case o != nil:
			r.policy = o.policy
		case p != nil:
			r.slots = p.slots
			var kv []string
			for k, v := range p.labels {
				kv = append(kv, k+"="+v)
			}
			require.LessOrEqual(t, len(kv), 2)
			if len(kv) == 2 && kv[0] > kv[1] {
				kv[0], kv[1] = kv[1], kv[0]
			}
			r.labels = strings.Join(kv, ",")
		}
		return r
	}

	tests := []struct {
		name string
		cmd  string
		env  map[string]string
		args []string
		want result
	}{
		{"standalone default", "manager standalone", nil, nil, result{httpAddr: "127.0.0.1:7070", policy: "round-robin"}},
		{"standalone file", "manager standalone", nil, []string{"--config", file}, result{httpAddr: "127.0.0.1:1111", policy: "least-loaded"}},
		{"standalone env beats file", "manager standalone", map[string]string{"PROPELLER_HTTP_ADDR": "127.0.0.1:2222"}, []string{"--config", file}, result{httpAddr: "127.0.0.1:2222", policy: "least-loaded"}},
		{"standalone flag beats env", "manager standalone", map[string]string{"PROPELLER_HTTP_ADDR": "127.0.0.1:2222"}, []string{"--config", file, "--http-addr", "127.0.0.1:3333"}, result{httpAddr: "127.0.0.1:3333", policy: "least-loaded"}},
		{"operator default", "manager operator", nil, nil, result{policy: "round-robin"}},
		{"operator file", "manager operator", nil, []string{"--config", file}, result{policy: "least-loaded"}},
		{"operator env", "manager operator", map[string]string{"PROPELLER_POLICY": "round-robin"}, []string{"--config", file}, result{policy: "round-robin"}},
		{"operator flag", "manager operator", map[string]string{"PROPELLER_POLICY": "round-robin"}, []string{"--config", file, "--policy", "least-loaded"}, result{policy: "least-loaded"}},
		{"proplet default", "proplet", nil, nil, result{slots: 4}},
		{"proplet file", "proplet", nil, []string{"--config", file}, result{slots: 7, labels: "arch=arm64,zone=file"}},
		{"proplet env", "proplet", map[string]string{"PROPELLER_SLOTS": "9", "PROPELLER_LABELS": "zone=env"}, []string{"--config", file}, result{slots: 9, labels: "zone=env"}},
		{"proplet flag", "proplet", map[string]string{"PROPELLER_SLOTS": "9"}, []string{"--config", file, "--slots", "2", "--labels", "zone=flag"}, result{slots: 2, labels: "zone=flag"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append(strings.Fields(tc.cmd)[1:], tc.args...)
			require.Equal(t, tc.want, get(t, strings.Fields(tc.cmd)[0], args))
		})
	}
}

func TestConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, _, _, _, err := execute(t, "proplet", "--config", missing)
	require.ErrorContains(t, err, "read config "+missing)
	require.Equal(t, exitUsage, exitCode(err))

	t.Setenv("PROPELLER_CONFIG", missing)
	_, _, _, _, err = execute(t, "proplet")
	require.ErrorContains(t, err, "read config "+missing)
	t.Setenv("PROPELLER_CONFIG", "")

	t.Setenv("PROPELLER_SLOTS", "many")
	_, _, _, _, err = execute(t, "proplet")
	require.ErrorContains(t, err, "--slots from the environment")
	require.Equal(t, exitUsage, exitCode(err))
}

// TestConfigUnknownKeys: a key that no command reads is an error naming
// it (with the key it is closest to), wherever in the file it is and
// whichever command reads the file.
func TestConfigUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"top level", "slotz: 3\n", []string{`unknown key "slotz" (did you mean "slots"?)`}},
		{"in a section", "manager:\n  http-adr: 127.0.0.1:1\n", []string{`unknown key "manager.http-adr" (did you mean "http-addr"?)`}},
		{"flag of another section", "proplet:\n  http-addr: 127.0.0.1:1\n", []string{`unknown key "proplet.http-addr"`}},
		{"in a context", "contexts:\n  lab:\n    server: http://h:1\n    tokn: x\n", []string{`unknown key "contexts.lab.tokn" (did you mean "token"?)`}},
		{"all of them", "a-key: 1\nclient:\n  outptu: json\n", []string{`unknown key "a-key"`, `unknown key "client.outptu" (did you mean "output"?)`}},
		{"section not a mapping", "manager: 3\n", []string{"manager: want a mapping of flag names to values"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping of settings at the top level"}},
		{"not YAML", "a: [\n", []string{"config "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.yaml")
			require.NoError(t, os.WriteFile(file, []byte(tc.yaml), 0o600))
			for _, args := range [][]string{{"proplet"}, {"manager", "standalone"}, {"task", "list"}, {"context", "list"}} {
				code, stdout, stderr := runCLI(t, append(args, "--config", file)...)
				require.Equal(t, exitUsage, code, "%v: %s%s", args, stdout, stderr)
				require.Contains(t, stderr, "config "+file)
				for _, w := range tc.want {
					require.Contains(t, stderr, w, args)
				}
			}
		})
	}
}

// TestDefaultConfigFile: without --config the file under
// $XDG_CONFIG_HOME/propeller is read, and PROPELLER_CONFIG replaces it.
func TestDefaultConfigFile(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	require.NoError(t, os.MkdirAll(filepath.Join(xdg, "propeller"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(xdg, "propeller", "config.yaml"), []byte("proplet:\n  slots: 11\n"), 0o600))
	_, _, _, p, err := execute(t, "proplet")
	require.NoError(t, err)
	require.Equal(t, 11, p.slots)

	other := filepath.Join(t.TempDir(), "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte("slots: 12\n"), 0o600))
	t.Setenv("PROPELLER_CONFIG", other)
	_, _, _, p, err = execute(t, "proplet")
	require.NoError(t, err)
	require.Equal(t, 12, p.slots)

	// A flag names the file even when the variable is set.
	_, _, _, p, err = execute(t, "proplet", "--config", filepath.Join(xdg, "propeller", "config.yaml"))
	require.NoError(t, err)
	require.Equal(t, 11, p.slots)

	// No default file is not an error.
	t.Setenv("PROPELLER_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, _, _, p, err = execute(t, "proplet")
	require.NoError(t, err)
	require.Equal(t, 4, p.slots)

	// Big numbers stay exact.
	require.NoError(t, os.WriteFile(other, []byte("proplet:\n  cache-bytes: 536870913\n"), 0o600))
	_, _, _, p, err = execute(t, "proplet", "--config", other)
	require.NoError(t, err)
	require.EqualValues(t, 536870913, p.cacheBytes)
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		require.NotEmpty(t, cmd.Short, "%s has no description", cmd.CommandPath())
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			require.NotEmpty(t, f.Usage, "%s --%s has no help text", cmd.CommandPath(), f.Name)
		})
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	root := newRootCommand()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	walk(root)
}
