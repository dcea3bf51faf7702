package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
)

const taskRefHelp = `TASK is a task's id, its name (when no other task has it) or a prefix of its id
that no other id starts with.`

func newTaskCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, inspect, start and stop tasks on a standalone manager",
		Long:  "Create, inspect, start and stop tasks on a standalone manager.\n\n" + taskRefHelp + "\n\n" + exitCodesHelp,
	}
	o.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newTaskCreateCommand(o), newTaskListCommand(o), newTaskGetCommand(o), newTaskWaitCommand(o),
		newTaskStartCommand(o), newTaskUploadCommand(o), newTaskStopCommand(o), newTaskDeleteCommand(o), newTaskLogsCommand(o))
	return cmd
}

// taskView shows tasks; detail adds each one's result under the table.
func taskView(obj any, detail bool, tasks ...rest.Task) view {
	v := view{
		obj:     obj,
		columns: []string{"ID", "NAME", "PHASE", "PROPLET", "ATTEMPT", "REASON", "AGE"},
		wide:    []string{"IMAGE", "MEMORY", "SELECTOR", "EXIT", "MESSAGE"},
	}
	for _, t := range tasks {
		v.names = append(v.names, t.ID)
		exit, image, memory := "-", t.ImageURL, "-"
		if t.ExitCode != nil {
			exit = strconv.Itoa(*t.ExitCode)
		}
		if d, ok := strings.CutPrefix(image, wire.BlobScheme); ok {
			image = wire.BlobScheme + shortDigest(d)
		}
		if t.MemoryBytes > 0 {
			memory = strconv.FormatInt(t.MemoryBytes, 10)
		}
		v.rows = append(v.rows, []string{t.ID, dash(t.Name), t.Phase, dash(t.PropletID), strconv.Itoa(t.Attempt),
			dash(t.Reason), age(t.CreatedAt), dash(image), memory, dash(labelString(t.Selector)), exit, dash(t.Message)})
	}
	if detail && len(tasks) == 1 {
		t := tasks[0]
		v.detail = func(w io.Writer) { printResult(w, t) }
	}
	return v
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return "sha256:" + d
}

func printResult(w io.Writer, t rest.Task) {
	if len(t.Results) > 0 {
		parts := make([]string, len(t.Results))
		for i, r := range t.Results {
			parts[i] = strconv.FormatFloat(r, 'f', -1, 64)
		}
		fmt.Fprintf(w, "results: [%s]\n", strings.Join(parts, " "))
	}
	if t.ExitCode != nil {
		fmt.Fprintf(w, "exit code: %d\n", *t.ExitCode)
	}
	if t.Message != "" {
		fmt.Fprintf(w, "message: %s\n", t.Message)
	}
	if t.Stdout != "" {
		fmt.Fprintf(w, "stdout:\n%s", t.Stdout)
	}
	if t.Stderr != "" {
		fmt.Fprintf(w, "stderr:\n%s", t.Stderr)
	}
}

type taskCreateOptions struct {
	file        string
	image       string
	function    string
	inputs      []float64
	args        []string
	env         map[string]string
	labels      map[string]string
	selector    map[string]string
	proplet     string
	proplets    []string
	timeout     time.Duration
	maxAttempts int
	memory      int64
	memoryPages uint32
	suspend     bool
	preopen     bool
	wait        waitOptions
}

func (o *taskCreateOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.file, "file", "", "path of a .wasm module to upload")
	fs.StringVar(&o.image, "image", "", "module URL: oci://registry/repo:tag or https://host/module.wasm")
	fs.StringVar(&o.function, "function", "", "export to call with --inputs; without it the module runs as a command")
	fs.Float64SliceVar(&o.inputs, "inputs", nil, "numeric arguments of --function")
	fs.StringSliceVar(&o.args, "args", nil, "command-line arguments of a command module")
	fs.StringToStringVar(&o.env, "env", nil, "environment, K=V,K2=V2")
	fs.StringToStringVar(&o.labels, "labels", nil, "task labels, k=v")
	fs.StringToStringVar(&o.selector, "selector", nil, "run only on proplets with these labels, k=v")
	fs.StringVar(&o.proplet, "proplet", "", "run on this proplet only")
	fs.StringSliceVar(&o.proplets, "proplets", nil, "run on one of these proplets (ids, comma-separated); not with --proplet")
	fs.DurationVar(&o.timeout, "timeout", 0, "deadline of one attempt (default: the manager's)")
	fs.IntVar(&o.maxAttempts, "max-attempts", 0, "attempts before the task fails (default: the manager's)")
	fs.Var(newQuantityFlag(&o.memory, 0), "memory", "memory the task asks for, a Kubernetes quantity (128Mi, 1.5Gi, 500M or bytes) as in a WasmTask's resources.requests.memory: it runs only on a proplet offering a task that much")
	fs.Uint32Var(&o.memoryPages, "memory-pages", 0, "cap the module's linear memory at this many 64 KiB pages (default: the proplet's)")
	fs.BoolVar(&o.suspend, "suspend", false, "create without scheduling: upload a module later with 'task upload' (if neither --file nor --image), then 'task start'")
	fs.BoolVar(&o.preopen, "preopen", false, "give the module a writable, empty /data directory for the attempt")
	o.wait.AddFlags(fs, true)
}

func newTaskCreateCommand(co *clientOptions) *cobra.Command {
	o := &taskCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME (--file module.wasm | --image URL | --suspend)",
		Short: "Create a task from a local module (--file) or a URL (--image)",
		Long: `Create a task from a local module (--file) or a URL (--image). With
--suspend and neither, the task waits for its module ('task upload') and a
'task start'.

With --wait the command returns when the task ends and exits by its phase:
0 Succeeded, 3 Failed or Cancelled (the reason is printed), 4 when
--wait-timeout passes first (why the task waits, e.g. Unschedulable, is
printed).`,
		Example: `  propeller task create hello --file hello.wasm --wait
  id=$(propeller task create add --image oci://localhost:5000/add:v1 --function add --inputs 1,2 -o name)
  propeller task create later --suspend && propeller task upload later --file app.wasm --start`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.file == "" && o.image == "" && !o.suspend:
				return usageErrorf("a task needs its module: --file module.wasm or --image URL (or --suspend, to upload it later with 'propeller task upload')")
			case o.file != "" && o.image != "":
				return usageErrorf("--file and --image exclude each other")
			case o.proplet != "" && len(o.proplets) > 0:
				return usageErrorf("--proplet and --proplets exclude each other")
			case o.wait.wait && o.suspend:
				return usageErrorf("--wait with --suspend would never return: a suspended task runs after 'propeller task start'")
			}
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			req := rest.TaskRequest{
				Name: args[0], ImageURL: o.image, Function: o.function, Inputs: o.inputs,
				CLIArgs: o.args, Env: o.env, Labels: o.labels, Selector: o.selector, PropletID: o.proplet,
				PropletIDs:     o.proplets,
				TimeoutSeconds: o.timeout.Seconds(), MaxAttempts: o.maxAttempts, Suspend: o.suspend, Preopen: o.preopen,
				MemoryBytes: o.memory, MemoryPages: o.memoryPages,
			}
			if o.file != "" {
				if req.File, err = os.ReadFile(o.file); err != nil {
					return usageErrorf("--file: %v", err)
				}
			}
			t, err := c.CreateTask(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !o.wait.wait {
				return co.print(cmd, taskView(t, false, t))
			}
			return waitAndPrint(cmd, co, c, t, o.wait.timeout)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// waitAndPrint waits for t to end, prints it with its result, and turns
// its phase into the exit code.
func waitAndPrint(cmd *cobra.Command, co *clientOptions, c *rest.Client, t rest.Task, timeout time.Duration) error {
	final, werr := waitTask(cmd.Context(), c, t, timeout, cmd.ErrOrStderr())
	if werr != nil && !isWaitOutcome(werr) {
		return werr
	}
	if err := co.print(cmd, taskView(final, true, final)); err != nil {
		return err
	}
	return werr
}

func newTaskListCommand(co *clientOptions) *cobra.Command {
	var (
		f   rest.TaskFilter
		all bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			list := rest.TaskList{Items: []rest.Task{}}
			for {
				page, err := c.ListTasks(cmd.Context(), f)
				if err != nil {
					return err
				}
				list.Items, list.Continue = append(list.Items, page.Items...), page.Continue
				if !all || page.Continue == "" {
					break
				}
				f.Continue = page.Continue
			}
			return co.print(cmd, taskView(list, false, list.Items...))
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&f.Phases, "phase", nil, "only these phases (Pending, Scheduled, Running, Succeeded, Failed, Cancelled)")
	fs.StringSliceVar(&f.Phases, "state", nil, "only these phases")
	_ = fs.MarkDeprecated("state", "use --phase")
	fs.StringVar(&f.PropletID, "proplet", "", "only tasks placed on this proplet")
	fs.StringToStringVar(&f.Labels, "label", nil, "only tasks with these labels, k=v")
	fs.StringVar(&f.Name, "name", "", "only tasks with exactly this name")
	fs.IntVar(&f.Limit, "limit", 100, "page size")
	fs.StringVar(&f.Continue, "continue", "", "start at this page: the continue token of -o json")
	fs.BoolVar(&all, "all", false, "follow every page")
	return cmd
}

func newTaskGetCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get TASK",
		Short: "Show a task with its result",
		Long:  "Show a task with its result.\n\n" + taskRefHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			return co.print(cmd, taskView(t, true, t))
		},
	}
}

func newTaskWaitCommand(co *clientOptions) *cobra.Command {
	var w waitOptions
	cmd := &cobra.Command{
		Use:   "wait TASK",
		Short: "Wait for a task to end; the exit code says how it ended",
		Long: "Wait for a task to end and print it with its result. Exit code 0: it\n" +
			"Succeeded; 3: it Failed or was Cancelled; 4: --wait-timeout passed first.\n\n" + taskRefHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			return waitAndPrint(cmd, co, c, t, w.timeout)
		},
	}
	w.AddFlags(cmd.Flags(), false)
	return cmd
}

func newTaskStartCommand(co *clientOptions) *cobra.Command {
	var w waitOptions
	cmd := &cobra.Command{
		Use:   "start TASK",
		Short: "Start a suspended task",
		Long:  "Start a task created with --suspend.\n\n" + taskRefHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			if t, err = c.StartTask(cmd.Context(), t.ID); err != nil {
				return err
			}
			if w.wait {
				return waitAndPrint(cmd, co, c, t, w.timeout)
			}
			return co.print(cmd, taskView(t, false, t))
		},
	}
	w.AddFlags(cmd.Flags(), true)
	return cmd
}

func newTaskUploadCommand(co *clientOptions) *cobra.Command {
	var (
		file  string
		start bool
	)
	cmd := &cobra.Command{
		Use:   "upload TASK --file module.wasm [--start]",
		Short: "Give a suspended task its module",
		Long:  "Upload the module of a task created with --suspend (it replaces any module the task had).\n\n" + taskRefHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageErrorf("--file is required: the .wasm module to upload")
			}
			wasm, err := os.ReadFile(file)
			if err != nil {
				return usageErrorf("--file: %v", err)
			}
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			if t, err = c.UploadWasm(cmd.Context(), t.ID, wasm); err != nil {
				return err
			}
			if start {
				if t, err = c.StartTask(cmd.Context(), t.ID); err != nil {
					return err
				}
			}
			return co.print(cmd, taskView(t, false, t))
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the .wasm module")
	cmd.Flags().BoolVar(&start, "start", false, "start the task once its module is uploaded")
	return cmd
}

func newTaskStopCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "stop TASK",
		Short: "Cancel a task; a running one is stopped on its proplet",
		Long:  "Cancel a task; a running one is stopped on its proplet.\n\n" + taskRefHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			if t, err = c.StopTask(cmd.Context(), t.ID); err != nil {
				return err
			}
			return co.print(cmd, taskView(t, false, t))
		},
	}
}

func newTaskDeleteCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete TASK",
		Short: "Delete a task (stopping it first if it runs)",
		Long:  "Delete a task (stopping it first if it runs).\n\n" + taskRefHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteTask(cmd.Context(), t.ID); err != nil {
				return err
			}
			if co.out.format == "name" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), t.ID)
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "task %s deleted\n", t.ID)
			}
			return err
		},
	}
}

func newTaskLogsCommand(co *clientOptions) *cobra.Command {
	var w waitOptions
	cmd := &cobra.Command{
		Use:   "logs TASK",
		Short: "Print a task's stdout and stderr tails",
		Long: "Print a task's stdout and stderr tails. With --follow it waits for the\n" +
			"task to end first and exits as 'task wait' does.\n\n" + taskRefHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, t, err := co.task(cmd, args[0])
			if err != nil {
				return err
			}
			var werr error
			if w.wait {
				t, werr = waitTask(cmd.Context(), c, t, w.timeout, cmd.ErrOrStderr())
				if werr != nil && !isWaitOutcome(werr) {
					return werr
				}
			}
			fmt.Fprint(cmd.OutOrStdout(), t.Stdout)
			fmt.Fprint(cmd.ErrOrStderr(), t.Stderr)
			return werr
		},
	}
	cmd.Flags().BoolVarP(&w.wait, "follow", "f", false, "wait for the task to end first")
	cmd.Flags().DurationVar(&w.timeout, "wait-timeout", defaultWaitTimeout, "with --follow, give up (exit 4) after this long; 0 waits for ever")
	return cmd
}
