package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	bbolt "go.etcd.io/bbolt"
)

func newBackupCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Download a consistent copy of a running standalone manager's database",
		Long: `Download the manager's bbolt database while it runs (GET /v1/backup: one
read transaction, so the manager keeps serving). The copy is checked (bbolt's
consistency check) before it is renamed to FILE, so a failed or cut-short
download leaves no file. Restore: stop the manager, put FILE in place of
<data-dir>/propeller.db, start it (docs/operations.md).`,
		Example: `  propeller backup --out propeller-$(date +%F).db`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out FILE is required")
			}
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
			if err != nil {
				return err
			}
			tmp := f.Name()
			defer os.Remove(tmp) // a no-op once renamed
			n, err := c.Backup(cmd.Context(), f)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w (nothing written to %s)", err, out)
			}
			if err := checkBolt(tmp); err != nil {
				return fmt.Errorf("backup of %d bytes is not a sound database, nothing written to %s: %w", n, out, err)
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			res := struct {
				File string `json:"file"`
				Size int64  `json:"size"`
			}{out, n}
			return o.print(cmd, view{obj: res, names: []string{out}, columns: []string{"FILE", "SIZE"},
				rows: [][]string{{out, strconv.FormatInt(n, 10)}}})
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&out, "out", "", "file to write the database to")
	return cmd
}

// checkBolt opens path read-only and runs bbolt's consistency check.
func checkBolt(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}
