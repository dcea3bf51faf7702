//go:build !noperator

package main

import (
	"context"
	"log/slog"

	"github.com/absmach/propeller/operator"
)

const (
	operatorBuilt = true
	operatorHelp  = "  propeller manager operator     the manager as a Kubernetes operator\n"
)

// startOperator runs the Kubernetes operator. Builds tagged noperator
// leave it (and the Kubernetes client libraries) out: an edge device that
// only runs proplets saves half the binary and its start-up memory.
func startOperator(ctx context.Context, o *operatorOptions, log *slog.Logger) error {
	return operator.Run(ctx, operator.Config{
		Kubeconfig:         o.kubeconfig,
		Namespace:          o.namespace,
		AllNamespaces:      o.allNamespaces,
		UnservedInterval:   o.unserved,
		Broker:             o.broker,
		BrokerUser:         o.brokerUser,
		BrokerPassword:     o.brokerPassword,
		BrokerCA:           o.brokerCA,
		MQTTAddr:           o.mqttAddr,
		JoinToken:          o.joinToken,
		TLSCert:            o.tlsCert,
		TLSKey:             o.tlsKey,
		Prefix:             o.prefix,
		Engine:             o.engineOptions.config(),
		DataDir:            o.dataDir,
		CheckpointRegistry: o.checkpointRegistry,
		RegistryAuth:       o.registryAuth,
		MetricsAddr:        o.metricsAddr,
		HealthAddr:         o.healthAddr,
		LeaderElection:     o.leaderElect,
		Logger:             log,
	})
}
