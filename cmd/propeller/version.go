package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time, e.g. -ldflags "-X main.version=v1.2.3 -X
// main.buildDate=2025-01-02T03:04:05Z" (the Makefile does). Without them
// the Go toolchain's VCS stamp fills revision and date.
var (
	version   = "dev"
	revision  = ""
	buildDate = ""
)

// versionInfo is what `propeller version -o json` prints.
type versionInfo struct {
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from.
	Revision string `json:"revision,omitempty"`
	// Modified: the work tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// BuildDate is the link-time date, else the commit's time.
	BuildDate string `json:"buildDate,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func buildVersion() string { return currentVersion().Version }

func currentVersion() versionInfo {
	v := versionInfo{Version: version, Revision: revision, BuildDate: buildDate, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = v.stamped(bi)
	}
	return v
}

// stamped fills what -ldflags left empty from the toolchain's build info:
// the module version, vcs.revision and vcs.time (the commit's time). Go
// stamps VCS data only in a plain clone, not in a git worktree nor with
// -buildvcs=false, hence the Makefile's -X flags.
func (v versionInfo) stamped(bi *debug.BuildInfo) versionInfo {
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = cmp.Or(v.Revision, s.Value)
		case "vcs.time":
			v.BuildDate = cmp.Or(v.BuildDate, s.Value)
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCommand() *cobra.Command {
	var (
		short  bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion()
			w := cmd.OutOrStdout()
			switch {
			case output == "json" || output == "yaml":
				p, err := newPrinter(output, false)
				if err != nil {
					return err
				}
				return p.print(w, view{obj: v})
			case output != "":
				return usageErrorf("--output %q: want json or yaml", output)
			case short:
				_, err := fmt.Fprintln(w, v.Version)
				return err
			}
			rev := cmp.Or(v.Revision, "unknown")
			if v.Modified {
				rev += " (modified)"
			}
			_, err := fmt.Fprintf(w, "propeller %s\nrevision:   %s\nbuild date: %s\ngo:         %s %s\n",
				v.Version, rev, cmp.Or(v.BuildDate, "unknown"), v.GoVersion, v.Platform)
			return err
		},
	}
	cmd.Flags().BoolVar(&short, "short", false, "print only the version")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}
