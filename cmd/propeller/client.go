package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/standalone"
)

// clientOptions say which manager the CLI talks to and how it prints.
type clientOptions struct {
	*globalOptions
	server    string
	token     string
	tokenFile string
	dataDir   string
	output    string
}

func (o *clientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", "http://127.0.0.1:7070", "manager REST URL")
	fs.StringVar(&o.token, "token", "", "REST bearer token (default: read from --token-file or <data-dir>/api-token)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the REST bearer token")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "manager data dir to read api-token from when no token is given")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
}

func (o *clientOptions) client(cmd *cobra.Command) (*rest.Client, error) {
	if err := resolveFlags(cmd, o.configFile, "client"); err != nil {
		return nil, err
	}
	if o.output != "table" && o.output != "json" && o.output != "yaml" {
		return nil, fmt.Errorf("--output %q: want table, json or yaml", o.output)
	}
	tok := o.token
	if tok == "" {
		file := o.tokenFile
		if file == "" {
			file = filepath.Join(o.dataDir, standalone.APITokenFile)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("no token: pass --token or PROPELLER_TOKEN, or point --token-file/--data-dir at the manager's api-token (%w)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return rest.NewClient(o.server, tok)
}

// print writes v as JSON or YAML, or calls table for the table format.
func (o *clientOptions) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	switch o.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func taskRows(tw *tabwriter.Writer, tasks ...rest.Task) {
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tPROPLET\tATTEMPT\tREASON\tAGE")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.Name, t.Phase, t.PropletID, t.Attempt, t.Reason, time.Since(t.CreatedAt).Round(time.Second))
	}
}

func newTaskCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{Use: "task", Short: "Create, inspect and stop tasks on a standalone manager"}
	o.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newTaskCreateCommand(o), newTaskListCommand(o), newTaskGetCommand(o), newTaskStopCommand(o), newTaskDeleteCommand(o), newTaskLogsCommand(o))
	return cmd
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
	memory      string
	memoryPages uint32
	suspend     bool
	preopen     bool
	wait        bool
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
	fs.StringVar(&o.memory, "memory", "", "memory the task asks for, bytes or with Ki, Mi, Gi (e.g. 128Mi): it runs only on a proplet offering a task that much")
	fs.Uint32Var(&o.memoryPages, "memory-pages", 0, "cap the module's linear memory at this many 64 KiB pages (default: the proplet's)")
	fs.BoolVar(&o.suspend, "suspend", false, "create without scheduling; start it with the API later")
	fs.BoolVar(&o.preopen, "preopen", false, "give the module a writable, empty /data directory for the attempt")
	fs.BoolVar(&o.wait, "wait", false, "wait until the task finishes and print its result")
}

func newTaskCreateCommand(co *clientOptions) *cobra.Command {
	o := &taskCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a task from a local module (--file) or a URL (--image)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			memory, err := parseBytes(o.memory)
			if err != nil {
				return fmt.Errorf("--memory: %w", err)
			}
			req := rest.TaskRequest{
				Name: args[0], ImageURL: o.image, Function: o.function, Inputs: o.inputs,
				CLIArgs: o.args, Env: o.env, Labels: o.labels, Selector: o.selector, PropletID: o.proplet,
				PropletIDs:     o.proplets,
				TimeoutSeconds: o.timeout.Seconds(), MaxAttempts: o.maxAttempts, Suspend: o.suspend, Preopen: o.preopen,
				MemoryBytes: memory, MemoryPages: o.memoryPages,
			}
			if o.file != "" {
				if req.File, err = os.ReadFile(o.file); err != nil {
					return err
				}
			}
			t, err := c.CreateTask(cmd.Context(), req)
			if err != nil {
				return err
			}
			if o.wait {
				if t, err = c.WaitTask(cmd.Context(), t.ID, 20*time.Millisecond); err != nil {
					return err
				}
			}
			return co.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) {
				taskRows(tw, t)
				if o.wait {
					printResult(tw, t)
				}
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
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
		fmt.Fprintf(w, "error: %s\n", t.Message)
	}
	if t.Stdout != "" {
		fmt.Fprintf(w, "stdout:\n%s", t.Stdout)
	}
	if t.Stderr != "" {
		fmt.Fprintf(w, "stderr:\n%s", t.Stderr)
	}
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
			var tasks []rest.Task
			for {
				page, err := c.ListTasks(cmd.Context(), f)
				if err != nil {
					return err
				}
				tasks = append(tasks, page.Items...)
				if !all || page.Continue == "" {
					break
				}
				f.Continue = page.Continue
			}
			return co.print(cmd.OutOrStdout(), rest.TaskList{Items: tasks}, func(tw *tabwriter.Writer) { taskRows(tw, tasks...) })
		},
	}
	cmd.Flags().StringSliceVar(&f.Phases, "state", nil, "only these phases (Pending, Scheduled, Running, Succeeded, Failed, Cancelled)")
	cmd.Flags().StringVar(&f.PropletID, "proplet", "", "only tasks placed on this proplet")
	cmd.Flags().StringToStringVar(&f.Labels, "label", nil, "only tasks with these labels, k=v")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "page size")
	cmd.Flags().BoolVar(&all, "all", false, "follow every page")
	return cmd
}

func newTaskGetCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a task with its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			t, err := c.GetTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return co.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) {
				taskRows(tw, t)
				printResult(tw, t)
			})
		},
	}
}

func newTaskStopCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID",
		Short: "Cancel a task; a running one is stopped on its proplet",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			t, err := c.StopTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return co.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) { taskRows(tw, t) })
		},
	}
}

func newTaskDeleteCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a task (stopping it first if it runs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteTask(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), "deleted", args[0])
			return err
		},
	}
}

func newTaskLogsCommand(co *clientOptions) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a task's stdout and stderr tails",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			var t rest.Task
			if follow {
				t, err = c.WaitTask(cmd.Context(), args[0], 200*time.Millisecond)
			} else {
				t, err = c.GetTask(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), t.Stdout)
			fmt.Fprint(cmd.ErrOrStderr(), t.Stderr)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "wait for the task to finish first")
	return cmd
}

func newPropletListCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the proplets a standalone manager knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			var ps []rest.Proplet
			for p, err := range c.Proplets(cmd.Context()) {
				if err != nil {
					return err
				}
				ps = append(ps, p)
			}
			return o.print(cmd.OutOrStdout(), rest.PropletList{Items: ps}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tALIVE\tSLOTS\tRUNNING\tLABELS\tLAST SEEN")
				for _, p := range ps {
					seen := "-"
					if p.LastSeen != nil {
						seen = time.Since(*p.LastSeen).Round(time.Second).String() + " ago"
					}
					fmt.Fprintf(tw, "%s\t%t\t%d\t%d\t%s\t%s\n", p.ID, p.Alive, p.Slots, len(p.Running), labelString(p.Labels), seen)
				}
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func labelString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// parseBytes reads "", a byte count, or one with a binary suffix (Ki, Mi,
// Gi, Ti), as Kubernetes writes memory.
func parseBytes(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	digits, shift := v, 0
	for i, suffix := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			digits, shift = n, 10*(i+1)
			break
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q: want bytes, or a whole number with Ki, Mi, Gi or Ti", v)
	}
	return n << shift, nil
}
