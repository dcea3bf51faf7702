package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/absmach/propeller/api/rest"
)

// defaultWaitTimeout bounds a wait unless --wait-timeout says otherwise:
// a task that can never be placed must not hang a script for ever.
const defaultWaitTimeout = 5 * time.Minute

type waitOptions struct {
	wait    bool
	timeout time.Duration
}

func (o *waitOptions) AddFlags(fs *pflag.FlagSet, withWait bool) {
	if withWait {
		fs.BoolVar(&o.wait, "wait", false, "wait until the task ends, print its result and exit by its phase (0 Succeeded, 3 Failed or Cancelled, 4 --wait-timeout)")
	}
	fs.DurationVar(&o.timeout, "wait-timeout", defaultWaitTimeout, "give up waiting after this long (exit 4, saying why the task waits); 0 waits for ever")
}

// waitTask polls t until it ends, ctx ends or timeout passes. It returns
// the last state seen and: nil for Succeeded; an exitFailed error for
// Failed or Cancelled; an exitWaitTimeout error at the timeout. Why a
// task cannot be placed (Unschedulable) is written to notes when seen.
func waitTask(ctx context.Context, c *rest.Client, t rest.Task, timeout time.Duration, notes io.Writer) (rest.Task, error) {
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	every, noted := 20*time.Millisecond, ""
	for {
		if t.Reason == "Unschedulable" && t.Message != noted {
			noted = t.Message
			fmt.Fprintf(notes, "task %s is %s: %s: %s\n", t.ID, t.Phase, t.Reason, t.Message)
		}
		if rest.Terminal(t.Phase) {
			return t, taskOutcome(t)
		}
		select {
		case <-wctx.Done():
			return t, waitEnded(ctx, t, timeout)
		case <-time.After(every):
		}
		every = min(2*every, 500*time.Millisecond)
		next, err := c.GetTask(wctx, t.ID)
		if err != nil {
			if wctx.Err() != nil {
				return t, waitEnded(ctx, t, timeout)
			}
			return t, err
		}
		t = next
	}
}

func waitEnded(ctx context.Context, t rest.Task, timeout time.Duration) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &exitError{code: exitWaitTimeout, err: fmt.Errorf("task %s is still %s after --wait-timeout %s%s", t.ID, t.Phase, timeout, reasonSuffix(t.Reason, t.Message))}
}

// taskOutcome is nil for a Succeeded task and the exit-3 error saying
// why for a Failed or Cancelled one.
func taskOutcome(t rest.Task) error {
	if t.Phase == "Succeeded" {
		return nil
	}
	return &exitError{code: exitTaskFailed, err: fmt.Errorf("task %s %s%s", t.ID, t.Phase, reasonSuffix(t.Reason, t.Message))}
}

// isWaitOutcome reports whether err is how the wait ended (the task failed
// or the timeout passed) rather than a failure to wait at all.
func isWaitOutcome(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && (ee.code == exitTaskFailed || ee.code == exitWaitTimeout)
}
