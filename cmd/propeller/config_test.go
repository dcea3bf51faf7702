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
	_, _, _, _, err := execute(t, "proplet", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "read config")

	t.Setenv("PROPELLER_SLOTS", "many")
	_, _, _, _, err = execute(t, "proplet")
	require.ErrorContains(t, err, "slots")
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

func TestVersion(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	require.NoError(t, root.Execute())
	require.True(t, strings.HasPrefix(out.String(), "propeller "))
}
