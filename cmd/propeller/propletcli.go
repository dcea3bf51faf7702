package main

import (
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

func labelString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
