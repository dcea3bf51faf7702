package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newContextCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Name the managers the CLI talks to (address, token, TLS CA) and pick one",
		Long: `A context is a named set of client settings kept in the config file
(--config, PROPELLER_CONFIG, else ~/.config/propeller/config.yaml):

  current-context: edge-lab
  contexts:
    edge-lab:
      server: https://10.0.0.5:7070
      token-file: /home/me/.propeller/edge-lab.token
      tls-ca: /home/me/.propeller/edge-lab-ca.pem

Client commands use the current context, or the one --context or
PROPELLER_CONTEXT names. A flag or PROPELLER_* variable beats the context.
The context commands rewrite the file (comments are not kept) with mode 0600.`,
	}
	cmd.AddCommand(newContextListCommand(g), newContextCurrentCommand(g), newContextUseCommand(g),
		newContextSetCommand(g), newContextDeleteCommand(g))
	return cmd
}

func newContextListCommand(g *globalOptions) *cobra.Command {
	var (
		output    string
		noHeaders bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the contexts; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output, noHeaders)
			if err != nil {
				return err
			}
			s, err := g.settings(cmd)
			if err != nil {
				return err
			}
			ctxs := s.contexts()
			names := make([]string, 0, len(ctxs))
			for n := range ctxs {
				names = append(names, n)
			}
			sort.Strings(names)
			v := view{obj: map[string]any{keyCurrentContext: s.currentContext(), keyContexts: ctxs}, names: names,
				columns: []string{"CURRENT", "NAME", "SERVER", "TOKEN"}, wide: []string{"TLS-CA"}}
			for _, n := range names {
				c := ctxs[n]
				cur := ""
				if n == s.currentContext() {
					cur = "*"
				}
				tok := "-"
				switch {
				case c["token"] != nil:
					tok = "(inline)"
				case c["token-file"] != nil:
					tok = fmt.Sprint(c["token-file"])
				}
				v.rows = append(v.rows, []string{cur, n, dash(str(c["server"])), tok, dash(str(c["tls-ca"]))})
			}
			return p.print(cmd.OutOrStdout(), v)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", outputHelp)
	cmd.Flags().BoolVar(&noHeaders, "no-headers", false, "leave out the header line of table output")
	return cmd
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func newContextCurrentCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "current",
		Short: "Print the current context's name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.settings(cmd)
			if err != nil {
				return err
			}
			if s.currentContext() == "" {
				return fmt.Errorf("no current context in %s: pick one with 'propeller context use NAME'", s.path)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s.currentContext())
			return err
		},
	}
}

// completeContexts offers the file's context names for NAME.
func (g *globalOptions) completeContexts(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	s, err := g.settings(cmd)
	if len(args) > 0 || err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0)
	for n := range s.contexts() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

func newContextUseCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "use NAME",
		Short:             "Make NAME the current context",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeContexts,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.settings(cmd)
			if err != nil {
				return err
			}
			if _, err := s.context(args[0]); err != nil {
				return err
			}
			s.raw[keyCurrentContext] = args[0]
			if err := s.save(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Switched to context %q.\n", args[0])
			return err
		},
	}
}

func newContextSetCommand(g *globalOptions) *cobra.Command {
	var server, token, tokenFile, tlsCA string
	cmd := &cobra.Command{
		Use:   "set NAME [--server URL] [--token-file FILE | --token TOKEN] [--tls-ca FILE]",
		Short: "Create a context or change its settings",
		Long: `Create context NAME, or change the settings given. A setting given
empty is removed. --token and --token-file replace each other. File paths
are stored absolute, so the context works from any directory.`,
		Example: `  propeller context set edge-lab --server https://10.0.0.5:7070 --token-file ~/edge-lab.token --tls-ca ~/edge-lab-ca.pem
  propeller context use edge-lab`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeContexts,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "" {
				return usageErrorf("a context needs a name")
			}
			fs := cmd.Flags()
			if fs.Changed("token") && fs.Changed("token-file") {
				return usageErrorf("--token and --token-file exclude each other")
			}
			if fs.Changed("server") && server != "" {
				if u, err := url.Parse(server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return usageErrorf("--server %q: want http(s)://host:port", server)
				}
			}
			s, err := g.settings(cmd)
			if err != nil {
				return err
			}
			ctxs, _ := s.raw[keyContexts].(map[string]any)
			if ctxs == nil {
				ctxs = map[string]any{}
				s.raw[keyContexts] = ctxs
			}
			c, _ := ctxs[name].(map[string]any)
			created := c == nil
			if created {
				c = map[string]any{}
				ctxs[name] = c
			}
			set := func(key, val string, path bool) error {
				if !fs.Changed(key) {
					return nil
				}
				if val == "" {
					delete(c, key)
					return nil
				}
				if path {
					abs, err := filepath.Abs(val)
					if err != nil {
						return err
					}
					val = abs
				}
				c[key] = val
				return nil
			}
			if fs.Changed("token") {
				delete(c, "token-file")
			}
			if fs.Changed("token-file") {
				delete(c, "token")
			}
			for _, kv := range []struct {
				key, val string
				path     bool
			}{{"server", server, false}, {"token", token, false}, {"token-file", tokenFile, true}, {"tls-ca", tlsCA, true}} {
				if err := set(kv.key, kv.val, kv.path); err != nil {
					return err
				}
			}
			if err := s.save(); err != nil {
				return err
			}
			verb := "Modified"
			if created {
				verb = "Created"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s context %q in %s.\n", verb, name, s.path)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&server, "server", "", "manager REST URL, http(s)://host:port")
	fs.StringVar(&token, "token", "", "REST bearer token, stored in the file (prefer --token-file)")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the REST bearer token")
	fs.StringVar(&tlsCA, "tls-ca", "", "CA bundle (PEM) that signed the manager's HTTPS certificate")
	// nomad calls the address -address; accept --addr and --address too.
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "addr" || name == "address" {
			name = "server"
		}
		return pflag.NormalizedName(name)
	})
	return cmd
}

func newContextDeleteCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a context (and unset it if it is the current one)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeContexts,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.settings(cmd)
			if err != nil {
				return err
			}
			if _, err := s.context(args[0]); err != nil {
				return err
			}
			ctxs := s.raw[keyContexts].(map[string]any)
			delete(ctxs, args[0])
			if s.currentContext() == args[0] {
				delete(s.raw, keyCurrentContext)
			}
			if err := s.save(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Deleted context %q.\n", args[0])
			return err
		},
	}
}
