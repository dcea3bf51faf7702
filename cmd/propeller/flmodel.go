package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/internal/durable"
)

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func newFLModelCommand(co *clientOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Download the models of federated-learning checkpoints"}
	cmd.AddCommand(newFLModelPullCommand(co))
	return cmd
}

func newFLModelPullCommand(co *clientOptions) *cobra.Command {
	var (
		round  int
		digest string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "pull (JOB [--round N] | --digest sha256:HEX) [--out FILE]",
		Short: "Download a checkpoint's model (safetensors), verified against its sha256 digest",
		Long: `Download the global model of an FL job's checkpoint: round N's with
--round, else the newest one; or any model by --digest. The bytes are checked
against the sha256 digest before the file is written (in one rename, so a
failed pull leaves no partial file). --out - writes to stdout.`,
		Example: `  propeller fl model pull digits-job --round 3 --out round3.safetensors
  propeller fl model pull --digest sha256:9f86d0... --out model.safetensors`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case digest == "" && len(args) == 0:
				return usageErrorf("name a job (and optionally --round N), or --digest sha256:HEX")
			case digest != "" && (len(args) > 0 || cmd.Flags().Changed("round")):
				return usageErrorf("--digest names the model by itself: not with a job or --round")
			case digest != "" && !digestPattern.MatchString(digest):
				return usageErrorf("--digest %q: want sha256: and 64 lowercase hex digits", digest)
			case cmd.Flags().Changed("round") && round < 1:
				return usageErrorf("--round %d: rounds count from 1", round)
			}
			c, err := co.client(cmd)
			if err != nil {
				return err
			}
			ckpt := rest.Checkpoint{Digest: digest}
			name := strings.TrimPrefix(digest, "sha256:")
			if len(args) > 0 {
				if ckpt, err = findCheckpoint(cmd.Context(), c, args[0], round); err != nil {
					return err
				}
				name = args[0] + "-round-" + strconv.Itoa(ckpt.Round)
			} else {
				name = name[:12]
			}
			if out == "" {
				out = name + ".safetensors"
			}
			b, err := c.Model(cmd.Context(), ckpt.Digest)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			if got := "sha256:" + hex.EncodeToString(sum[:]); got != ckpt.Digest {
				return fmt.Errorf("model %s: the manager sent %d bytes hashing to %s; nothing written", ckpt.Digest, len(b), got)
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			if err := writeFileAtomic(out, b, 0o644); err != nil {
				return err
			}
			res := struct {
				File   string `json:"file"`
				Digest string `json:"digest"`
				Size   int    `json:"size"`
				Round  int    `json:"round,omitempty"`
			}{out, ckpt.Digest, len(b), ckpt.Round}
			roundCell := "-"
			if ckpt.Round > 0 {
				roundCell = strconv.Itoa(ckpt.Round)
			}
			return co.print(cmd, view{obj: res, names: []string{out}, columns: []string{"FILE", "DIGEST", "SIZE", "ROUND"},
				rows: [][]string{{out, ckpt.Digest, strconv.Itoa(len(b)), roundCell}}})
		},
	}
	cmd.Flags().IntVar(&round, "round", 0, "the round whose checkpoint to pull (default: the newest)")
	cmd.Flags().StringVar(&digest, "digest", "", "pull this model, sha256:HEX, instead of a job's checkpoint")
	cmd.Flags().StringVar(&out, "out", "", "file to write; - for stdout (default: JOB-round-N.safetensors, or the digest's first 12 hex digits)")
	return cmd
}

// findCheckpoint returns job's checkpoint of round, or its newest when
// round is 0.
func findCheckpoint(ctx context.Context, c *rest.Client, job string, round int) (rest.Checkpoint, error) {
	var (
		all  []rest.Checkpoint
		page rest.Page
	)
	for {
		l, err := c.ListCheckpoints(ctx, job, page)
		if err != nil {
			return rest.Checkpoint{}, err
		}
		all = append(all, l.Items...)
		if l.Continue == "" {
			break
		}
		page.Continue = l.Continue
	}
	if len(all) == 0 {
		return rest.Checkpoint{}, fmt.Errorf("job %s has no checkpoint yet: a round writes one when it closes", job)
	}
	best := all[0]
	rounds := make([]string, 0, len(all))
	for _, ck := range all {
		if round != 0 && ck.Round == round {
			return ck, nil
		}
		if ck.Round > best.Round {
			best = ck
		}
		rounds = append(rounds, strconv.Itoa(ck.Round))
	}
	if round != 0 {
		return rest.Checkpoint{}, fmt.Errorf("job %s has no checkpoint of round %d; it has rounds %s", job, round, strings.Join(rounds, ", "))
	}
	return best, nil
}

// writeFileAtomic writes b to path through a synced temporary file in
// the same directory and a rename, so no reader (nor a crash) ever sees a
// partial file.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp, err := durable.WriteTemp(filepath.Dir(path), "."+filepath.Base(path)+".*", b, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
