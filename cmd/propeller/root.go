package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

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
  propeller manager operator     the manager as a Kubernetes operator
  propeller proplet              the worker that runs WASM on a device

Every flag can also be set with an environment variable PROPELLER_<FLAG>
(--http-addr is PROPELLER_HTTP_ADDR) or in the YAML file given by --config.
A flag on the command line wins over the environment, which wins over the
config file, which wins over the default.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newManagerCommand(g, r),
		newPropletCommand(g, r),
		newTaskCommand(g),
		newFLCommand(g),
		newVersionCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "propeller", buildVersion())
			return err
		},
	}
}

func newManagerCommand(g *globalOptions, r runners) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the manager (standalone or Kubernetes operator)",
	}
	cmd.AddCommand(newStandaloneCommand(g, r), newOperatorCommand(g, r))
	return cmd
}

// resolved prepares a long-running command: flags from env and config
// file, then the logger.
func (g *globalOptions) resolve(cmd *cobra.Command, section string) error {
	return resolveFlags(cmd, g.configFile, section)
}
