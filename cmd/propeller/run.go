package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/absmach/propeller/standalone"
)

func runStandalone(cmd *cobra.Command, o *standaloneOptions) error {
	log, err := o.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	return standalone.Run(cmd.Context(), standalone.Config{
		DataDir:        o.dataDir,
		HTTPAddr:       o.httpAddr,
		MQTTAddr:       o.mqttAddr,
		Broker:         o.broker,
		BrokerUser:     o.brokerUser,
		BrokerPassword: o.brokerPassword,
		BrokerCA:       o.brokerCA,
		TLSCert:        o.tlsCert,
		TLSKey:         o.tlsKey,
		Prefix:         o.prefix,
		Engine:         o.engineOptions.config(),
		MaxUploadBytes: o.maxUploadBytes,
		Logger:         log,
	})
}

func runProplet(*cobra.Command, *propletOptions) error {
	return errors.New("proplet: not wired yet")
}
