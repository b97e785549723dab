package main

import "k8s.io/client-go/rest"

// devBroker is what --embedded starts: no operator runs, so instances are
// created and stay "in progress", waiting for CloudNativePG: enough to
// explore the API.
type devBroker struct {
	restConfig        *rest.Config
	certFile, keyFile string
	credentialsDir    string
	brokerNamespace   string
	stop              func()
}
