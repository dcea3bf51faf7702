package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPropletCredentialsCommand(g *globalOptions) *cobra.Command {
	o := &clientOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Issue, inspect and revoke per-proplet MQTT secrets on a standalone manager",
		Long: `Manage a proplet's own MQTT secret on a standalone manager's embedded
broker. Once a proplet id has a secret, the join token no longer works for
that id. Issuing again rotates the secret; rotating or revoking closes the
proplet's open connections, so the old secret stops working at once.`,
	}
	o.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newCredentialsCreateCommand(o), newCredentialsGetCommand(o), newCredentialsRevokeCommand(o))
	return cmd
}

func newCredentialsCreateCommand(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "create ID",
		Short: "Issue (or rotate) a proplet's secret and print it once",
		Long: `Issue a fresh secret for proplet ID and print it. It is shown only this
once: the manager keeps a hash. Start the proplet with --id ID --token
<secret>. Issuing again replaces the secret and disconnects the proplet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			cred, err := c.IssueCredential(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.print(cmd, view{obj: cred, names: []string{cred.PropletID}, columns: []string{"PROPLET", "SECRET", "CREATED"},
				rows: [][]string{{cred.PropletID, cred.Secret, cred.CreatedAt.Format(time.RFC3339)}}})
		},
	}
}

func newCredentialsGetCommand(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show whether a proplet has a secret and when it was issued (never the secret)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			cred, err := c.GetCredential(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.print(cmd, view{obj: cred, names: []string{cred.PropletID}, columns: []string{"PROPLET", "CREATED", "AGE"},
				rows: [][]string{{cred.PropletID, cred.CreatedAt.Format(time.RFC3339), age(cred.CreatedAt)}}})
		},
	}
}

func newCredentialsRevokeCommand(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a proplet's secret and disconnect it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			if err := c.RevokeCredential(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked the credential of proplet %s\n", args[0])
			return nil
		},
	}
}
