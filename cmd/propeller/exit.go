package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes are part of the CLI's contract: scripts branch on them
// (docs/cli.md lists them, and so does `propeller --help`).
const (
	exitOK = 0
	// exitFailure: the command did not do what was asked (the manager
	// refused it, could not be reached, or the object is not there).
	exitFailure = 1
	// exitUsage: the command line or the config file is wrong; nothing
	// was sent to the manager.
	exitUsage = 2
	// exitTaskFailed: the task (or FL job) waited on ended Failed or
	// Cancelled.
	exitTaskFailed = 3
	// exitWaitTimeout: waiting gave up at --wait-timeout with the task
	// still unfinished (Unschedulable, say); the reason is printed.
	exitWaitTimeout = 4
	// exitInterrupted: SIGINT or SIGTERM, as a shell reports a SIGINT.
	exitInterrupted = 130
)

const exitCodesHelp = `Exit codes:
  0    the command did what was asked
  1    it failed: the manager refused it or could not be reached
  2    usage: unknown command or flag, bad arguments or config file; nothing was sent
  3    a waited-on task (or FL job) ended Failed or Cancelled
  4    waiting gave up at --wait-timeout (the task is still Pending, e.g. Unschedulable)
  130  interrupted`

// exitError carries the exit code an error maps to, and an optional hint
// printed under the message (a suggestion, where to find usage).
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode maps the error a command returned to the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailure
}

// printError writes err the way kubectl does: "error: ..." and a hint.
func printError(w io.Writer, err error) {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(w, "interrupted")
		return
	}
	fmt.Fprintln(w, "error:", err)
	var ee *exitError
	if errors.As(err, &ee) && ee.hint != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, ee.hint)
	}
}

// harden makes the command tree fail the way scripts expect: an unknown
// subcommand, an unknown flag or a wrong number of arguments exits 2 with a
// suggestion, instead of cobra's help text and exit 0 for a group command.
func harden(root *cobra.Command) {
	root.SetFlagErrorFunc(flagError)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		switch {
		case c.HasSubCommands() && c.Run == nil && c.RunE == nil:
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return cmd.Help()
				}
				return unknownCommand(cmd, args[0])
			}
		case c.Args == nil:
			c.Args = cobra.NoArgs
		}
		validate := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := validate(cmd, args); err != nil {
				if cmd.HasSubCommands() && len(args) > 0 {
					return unknownCommand(cmd, args[0])
				}
				return &exitError{code: exitUsage, err: err, hint: usageHint(cmd)}
			}
			return nil
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

func usageHint(cmd *cobra.Command) string {
	return fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath())
}

func unknownCommand(cmd *cobra.Command, name string) error {
	return &exitError{
		code: exitUsage,
		err:  fmt.Errorf("unknown command %q for %q", name, cmd.CommandPath()),
		hint: suggestionHint(cmd.SuggestionsFor(name)) + usageHint(cmd),
	}
}

func suggestionHint(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return "Did you mean this?\n\t" + strings.Join(names, "\n\t") + "\n\n"
}

// flagError turns pflag's parse errors into usage errors, with the flags
// the user may have meant when the flag is unknown.
func flagError(cmd *cobra.Command, err error) error {
	hint := usageHint(cmd)
	msg := err.Error()
	if typed, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		hint = suggestionHint(suggestFlags(cmd.Flags(), typed)) + hint
	}
	return &exitError{code: exitUsage, err: err, hint: hint}
}

// suggestFlags returns the flags within cobra's suggestion distance of
// typed (or starting with it), as "--name".
func suggestFlags(fs *pflag.FlagSet, typed string) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.HasPrefix(f.Name, typed) || levenshtein(typed, f.Name) <= 2 {
			out = append(out, "--"+f.Name)
		}
	})
	slices.Sort(out)
	return out
}

// suggestKey returns the name in known closest to typed, if it is within
// two edits; "" otherwise.
func suggestKey(typed string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := levenshtein(typed, k); d < dist {
			best, dist = k, d
		}
	}
	return best
}

// levenshtein is the edit distance between a and b (cobra's is private).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
