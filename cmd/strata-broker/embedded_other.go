//go:build !linux

package main

import (
	"errors"

	"go.uber.org/zap"

	"github.com/strata-dev/strata/broker"
)

// startEmbedded refuses: the embedded control plane ties etcd and the
// kube-apiserver to the broker with Linux's parent-death signal, and the
// kube-apiserver it runs is built for Linux. Everything else of the broker
// builds and runs here.
func startEmbedded(*zap.Logger, broker.KubernetesConfig) (*devBroker, error) {
	return nil, errors.New("--embedded needs Linux (it runs etcd and a kube-apiserver on this machine); on other systems run the broker against a cluster with --kubeconfig")
}
