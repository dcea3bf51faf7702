package main

import "github.com/spf13/cobra"

// runners are what the long-running commands do once their options are
// resolved; tests swap them to observe the options.
type runners struct {
	standalone func(cmd *cobra.Command, o *standaloneOptions) error
	operator   func(cmd *cobra.Command, o *operatorOptions) error
	proplet    func(cmd *cobra.Command, o *propletOptions) error
}

func defaultRunners() runners {
	return runners{standalone: runStandalone, operator: runOperator, proplet: runProplet}
}

func newRootCommand() *cobra.Command { return newRootCommandWith(defaultRunners()) }

func newRootCommandWith(r runners) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "propeller",
		Short: "Orchestrate WebAssembly workloads across the cloud-edge continuum",
		Long: `Propeller runs WebAssembly tasks on fleets of edge devices.

  propeller manager standalone   the manager on a bare host (REST + MQTT + bbolt)
` + operatorHelp + `  propeller proplet              the worker that runs WASM on a device

Every flag can also be set with an environment variable PROPELLER_<FLAG>
(--http-addr is PROPELLER_HTTP_ADDR) or in the YAML config file (--config,
PROPELLER_CONFIG, else ~/.config/propeller/config.yaml). A flag on the
command line wins over the environment, which wins over the current context
(client commands; see 'propeller context'), which wins over the config
file, which wins over the default. An unknown key in the file is an error.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newManagerCommand(g, r),
		newPropletCommand(g, r),
		newTaskCommand(g),
		newFLCommand(g),
		newContextCommand(g),
		newBackupCommand(g),
		newVersionCommand(),
	)
	root.SetHelpCommand(newHelpCommand())
	// Added now rather than at Execute, so harden covers them too.
	root.InitDefaultCompletionCmd()
	harden(root)
	return root
}

// newHelpCommand is cobra's help, except that an unknown topic is a usage
// error (exit 2) like an unknown command, not help text and exit 0.
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return unknownCommand(cmd, rest[0])
			}
			return cmd.Help()
		},
	}
}

func newManagerCommand(g *globalOptions, r runners) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the manager (standalone or Kubernetes operator)",
	}
	cmd.AddCommand(newStandaloneCommand(g, r))
	if operatorBuilt {
		cmd.AddCommand(newOperatorCommand(g, r))
	} else {
		cmd.Short = "Run the manager (standalone; this edge build has no Kubernetes operator)"
	}
	return cmd
}
