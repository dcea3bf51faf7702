package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/absmach/propeller/api/rest"
)

// propletView shows proplets.
func propletView(obj any, ps ...rest.Proplet) view {
	v := view{
		obj:     obj,
		columns: []string{"ID", "ALIVE", "SLOTS", "RUNNING", "LABELS", "LAST SEEN"},
		wide:    []string{"MEMORY", "RUNTIME", "VERSION"},
	}
	for _, p := range ps {
		v.names = append(v.names, p.ID)
		seen, memory := "-", "-"
		if p.LastSeen != nil {
			seen = age(*p.LastSeen) + " ago"
		}
		if p.MemoryBytes > 0 {
			memory = strconv.FormatInt(p.MemoryBytes, 10)
		}
		v.rows = append(v.rows, []string{p.ID, strconv.FormatBool(p.Alive), strconv.Itoa(p.Slots), strconv.Itoa(len(p.Running)),
			dash(labelString(p.Labels)), seen, memory, dash(p.Runtime), dash(p.Version)})
	}
	return v
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
			ps := []rest.Proplet{}
			for p, err := range c.Proplets(cmd.Context()) {
				if err != nil {
					return err
				}
				ps = append(ps, p)
			}
			return o.print(cmd, propletView(map[string]any{"items": ps}, ps...))
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newPropletGetCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a proplet: liveness, capacity, labels and the tasks it runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			p, err := c.GetProplet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			v := propletView(p, p)
			if len(p.Running) > 0 {
				v.detail = func(w io.Writer) { fmt.Fprintf(w, "running: %s\n", strings.Join(p.Running, " ")) }
			}
			return o.print(cmd, v)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newPropletDeleteCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Forget a proplet; the tasks placed on it are retried elsewhere or fail as PropletLost",
		Long: `Forget a proplet the manager knows, say one that was decommissioned.
The tasks placed on it are treated as lost with it (retried elsewhere, or
Failed with reason PropletLost). A proplet that is still running announces
itself again on its next status message.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteProplet(cmd.Context(), args[0]); err != nil {
				return err
			}
			if o.out.format == "name" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), args[0])
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "proplet %s deleted\n", args[0])
			}
			return err
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
