package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/absmach/propeller/api/rest"
)

func newFLCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{Use: "fl", Short: "Run and follow federated-learning jobs on a standalone manager"}
	o.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newFLCreateCommand(o), newFLListCommand(o), newFLGetCommand(o), newFLWatchCommand(o), newFLStopCommand(o), newFLModelCommand(o))
	return cmd
}

// readJobSpec reads a FederatedJob spec from YAML or JSON: either the bare
// spec or a whole FederatedJob object (apiVersion/kind/metadata/spec), so
// the operator's manifests work here too.
func readJobSpec(path string) (rest.FederatedJobSpec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return rest.FederatedJobSpec{}, err
	}
	var obj struct {
		Kind string          `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return rest.FederatedJobSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(js, &obj); err == nil && obj.Kind != "" {
		if obj.Kind != "FederatedJob" {
			return rest.FederatedJobSpec{}, fmt.Errorf("%s: kind %q, want FederatedJob", path, obj.Kind)
		}
		js = obj.Spec
	}
	var spec rest.FederatedJobSpec
	if err := yaml.UnmarshalStrict(js, &spec); err != nil {
		return rest.FederatedJobSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

func newFLCreateCommand(co *clientOptions) *cobra.Command {
	var specFile, modelFile, wasmFile string
	var watch bool
	cmd := &cobra.Command{
		Use:   "create -f job.yaml [--model model.safetensors] [--wasm client.wasm]",
		Short: "Start a federated-learning job",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if specFile == "" {
				return usageErrorf("-f/--file is required: the FederatedJob spec")
			}
			spec, err := readJobSpec(specFile)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			req := rest.FederatedJobRequest{FederatedJobSpec: spec}
			if modelFile != "" {
				if req.InitialModel, err = os.ReadFile(modelFile); err != nil {
					return err
				}
				req.ModelRef = ""
			}
			if wasmFile != "" {
				if req.TaskWasm, err = os.ReadFile(wasmFile); err != nil {
					return err
				}
				req.TaskWasmImage = ""
			}
			j, err := c.CreateFederatedJob(cmd.Context(), req)
			if err != nil {
				return err
			}
			if watch {
				return watchJob(cmd, co, j.ID)
			}
			return co.print(cmd, jobView(j, false, j))
		},
	}
	cmd.Flags().StringVarP(&specFile, "file", "f", "", "FederatedJob spec, YAML or JSON (a whole FederatedJob manifest works too)")
	cmd.Flags().StringVar(&modelFile, "model", "", "initial global model (safetensors); replaces the spec's modelRef")
	cmd.Flags().StringVar(&wasmFile, "wasm", "", "training module; replaces the spec's taskWasmImage")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the job until it ends")
	return cmd
}

// latestMetric returns the newest round metric worth showing: accuracy if
// clients report it, else loss, else any.
func latestMetric(j rest.FederatedJob) (string, float64, bool) {
	for i := len(j.Status.Rounds) - 1; i >= 0; i-- {
		m := j.Status.Rounds[i].Metrics
		if len(m) == 0 {
			continue
		}
		for _, k := range []string{"accuracy", "loss"} {
			if v, ok := m[k]; ok {
				return k, v, true
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys[0], m[keys[0]], true
	}
	return "", 0, false
}

// jobView shows FL jobs; rounds adds each one's rounds under the table.
func jobView(obj any, rounds bool, jobs ...rest.FederatedJob) view {
	v := view{
		obj:     obj,
		columns: []string{"ID", "EXPERIMENT", "PHASE", "ROUND", "ALGORITHM", "METRIC", "AGE"},
		wide:    []string{"REASON", "MESSAGE"},
	}
	for _, j := range jobs {
		v.names = append(v.names, j.ID)
		metric := "-"
		if k, m, ok := latestMetric(j); ok {
			metric = fmt.Sprintf("%s=%.4f", k, m)
		}
		v.rows = append(v.rows, []string{j.ID, dash(j.Spec.ExperimentID), string(j.Status.Phase),
			fmt.Sprintf("%d/%d", completedRounds(j), j.Spec.Rounds.Total), dash(string(j.Spec.Aggregator.Algorithm)), metric,
			age(j.Status.CreatedAt), dash(j.Status.Reason), dash(j.Status.Message)})
	}
	if rounds && len(jobs) == 1 {
		v.detail = func(w io.Writer) {
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			roundRows(tw, jobs[0])
			_ = tw.Flush()
		}
	}
	return v
}

func completedRounds(j rest.FederatedJob) int {
	n := 0
	for _, r := range j.Status.Rounds {
		if r.Checkpoint != "" {
			n = max(n, r.Number)
		}
	}
	return n
}

func newFLListCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List federated-learning jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			jobs := []rest.FederatedJob{}
			for j, err := range c.FederatedJobs(cmd.Context()) {
				if err != nil {
					return err
				}
				jobs = append(jobs, j)
			}
			return co.print(cmd, jobView(map[string]any{"items": jobs}, false, jobs...))
		},
	}
}

func newFLGetCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a job with its rounds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			j, err := c.GetFederatedJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return co.print(cmd, jobView(j, true, j))
		},
	}
}

func newFLStopCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a job; its running training tasks are stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			j, err := c.StopFederatedJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return co.print(cmd, jobView(j, false, j))
		},
	}
}

func roundRows(tw *tabwriter.Writer, j rest.FederatedJob) {
	fmt.Fprintln(tw, "ROUND\tPHASE\tUPDATES\tSAMPLES\tMETRICS\tCHECKPOINT")
	for _, r := range j.Status.Rounds {
		keys := make([]string, 0, len(r.Metrics))
		for k := range r.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ms []string
		for _, k := range keys {
			ms = append(ms, fmt.Sprintf("%s=%.4f", k, r.Metrics[k]))
		}
		ckpt := r.Checkpoint
		if len(ckpt) > 19 {
			ckpt = ckpt[:19]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\n", r.ID, r.Phase, len(r.Updates), r.KOfN, r.TotalSamples, strings.Join(ms, " "), ckpt)
	}
}

func newFLWatchCommand(co *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job round by round, with its metric curve, until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return watchJob(cmd, co, args[0])
		},
	}
}

// watchJob prints each round once it closes or fails, and a sparkline of
// the job's metric, until the job ends.
func watchJob(cmd *cobra.Command, co *clientOptions, id string) error {
	c, err := co.client(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	printed := map[string]bool{}
	var curve []float64
	metricName := ""
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		j, err := c.GetFederatedJob(cmd.Context(), id)
		if err != nil {
			return err
		}
		for _, r := range j.Status.Rounds {
			if printed[r.ID] || (r.Checkpoint == "" && r.Phase != rest.RoundFailed) {
				continue
			}
			printed[r.ID] = true
			if metricName == "" {
				for _, k := range []string{"accuracy", "loss"} {
					if _, ok := r.Metrics[k]; ok {
						metricName = k
						break
					}
				}
			}
			v, ok := r.Metrics[metricName]
			if ok {
				curve = append(curve, v)
			}
			fmt.Fprintf(out, "round %-5s %-8s updates %d/%d samples %-6d %s=%.4f  %s\n", r.ID, r.Phase, len(r.Updates), r.KOfN, r.TotalSamples, metricName, v, sparkline(curve))
		}
		if j.Status.Phase != rest.JobRunning {
			fmt.Fprintf(out, "job %s %s after %d/%d rounds%s\n", j.ID, j.Status.Phase, completedRounds(j), j.Spec.Rounds.Total, reasonSuffix(j.Status.Reason, j.Status.Message))
			if j.Status.Phase != rest.JobSucceeded {
				return &exitError{code: exitTaskFailed, err: fmt.Errorf("job %s %s%s", j.ID, j.Status.Phase, reasonSuffix(j.Status.Reason, j.Status.Message))}
			}
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return cmd.Context().Err()
		case <-tick.C:
		}
	}
}

func reasonSuffix(reason, msg string) string {
	switch {
	case reason == "" && msg == "":
		return ""
	case msg == "":
		return " (" + reason + ")"
	}
	return " (" + reason + ": " + msg + ")"
}

// sparkline draws values as block characters scaled to their range.
func sparkline(vs []float64) string {
	if len(vs) == 0 {
		return ""
	}
	const bars = "▁▂▃▄▅▆▇█"
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	runes := []rune(bars)
	var b strings.Builder
	for _, v := range vs {
		i := len(runes) - 1
		if hi > lo {
			i = int((v - lo) / (hi - lo) * float64(len(runes)-1))
		}
		b.WriteRune(runes[i])
	}
	return b.String()
}
