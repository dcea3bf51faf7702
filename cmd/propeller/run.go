package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func runStandalone(*cobra.Command, *standaloneOptions) error {
	return errors.New("standalone manager: not wired yet")
}

func runProplet(*cobra.Command, *propletOptions) error {
	return errors.New("proplet: not wired yet")
}
