package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUsageErrors: what a script gets for a command line that is wrong:
// exit 2, a message naming the mistake, and a suggestion where one fits.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown subcommand", []string{"task", "frobnicate"}, []string{`error: unknown command "frobnicate" for "propeller task"`, "Run 'propeller task --help' for usage."}},
		{"misspelt subcommand", []string{"task", "creat", "x"}, []string{`unknown command "creat"`, "Did you mean this?\n\tcreate\n"}},
		{"unknown top-level command", []string{"tsak"}, []string{`unknown command "tsak" for "propeller"`, "Did you mean this?\n\ttask\n"}},
		{"subcommand of a runnable command", []string{"proplet", "lst"}, []string{`unknown command "lst" for "propeller proplet"`, "\tlist\n"}},
		{"nested group", []string{"proplet", "credentials", "rotate", "p1"}, []string{`unknown command "rotate" for "propeller proplet credentials"`}},
		{"unknown flag", []string{"task", "create", "x", "--fiel", "a.wasm"}, []string{"unknown flag: --fiel", "Did you mean this?\n\t--file\n", "Run 'propeller task create --help' for usage."}},
		{"unknown flag of a manager", []string{"manager", "standalone", "--htp-addr", ":1"}, []string{"unknown flag: --htp-addr", "\t--http-addr\n"}},
		{"unknown shorthand", []string{"task", "list", "-z"}, []string{"unknown shorthand flag: 'z' in -z"}},
		{"bad flag value", []string{"proplet", "--slots", "many"}, []string{`invalid argument "many" for "--slots"`}},
		{"missing argument", []string{"task", "get"}, []string{"accepts 1 arg(s), received 0"}},
		{"extra argument", []string{"version", "now"}, []string{`unknown command "now" for "propeller version"`}},
		{"no module", []string{"task", "create", "x"}, []string{"a task needs its module: --file module.wasm or --image URL (or --suspend"}},
		{"two modules", []string{"task", "create", "x", "--file", "a.wasm", "--image", "oci://r/m:v1"}, []string{"--file and --image exclude each other"}},
		{"wait on suspended", []string{"task", "create", "x", "--suspend", "--wait"}, []string{"--wait with --suspend would never return"}},
		{"bad output", []string{"task", "list", "-o", "xml"}, []string{`--output "xml": want table, wide, name, json, yaml or jsonpath=TEMPLATE`}},
		{"bad jsonpath", []string{"task", "list", "-o", "jsonpath={.items[}"}, []string{"--output jsonpath:"}},
		{"unknown help topic", []string{"help", "task", "frobnicate"}, []string{`unknown command "frobnicate" for "propeller task"`}},
		{"unknown completion shell", []string{"completion", "tcsh"}, []string{`unknown command "tcsh" for "propeller completion"`}},
		{"upload without file", []string{"task", "upload", "x"}, []string{"--file is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			require.Equal(t, exitUsage, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Empty(t, stdout)
			for _, w := range tc.want {
				require.Contains(t, stderr, w)
			}
		})
	}
}

// TestHelpExitsZero: asking for help is not an error, and a group command
// without a subcommand shows its help.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"task"}, {"task", "--help"}, {"task", "create", "--help"}, {"context"}, {"help", "task", "create"}} {
		code, stdout, stderr := runCLI(t, args...)
		require.Equal(t, exitOK, code, "%v: %s", args, stderr)
		require.Contains(t, stdout, "Usage:", args)
	}
	_, stdout, _ := runCLI(t, "--help")
	require.Contains(t, stdout, "Exit codes:")
}

// TestNoServer: a manager that is not there is a failure (1), not usage.
func TestNoServer(t *testing.T) {
	code, _, stderr := runCLI(t, "task", "list", "--server", "http://"+closedAddr(t), "--token", "x")
	require.Equal(t, exitFailure, code, stderr)
	require.Contains(t, stderr, "error: ")
}

func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"", "abc", 3}, {"file", "fiel", 2}, {"http-addr", "htp-addr", 1}, {"kitten", "sitting", 3}} {
		require.Equal(t, tc.want, levenshtein(tc.a, tc.b), "%s %s", tc.a, tc.b)
		require.Equal(t, tc.want, levenshtein(tc.b, tc.a), "%s %s", tc.b, tc.a)
	}
}
