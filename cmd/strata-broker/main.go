// Command strata-broker serves the Strata Open Service Broker.
//
// In a cluster it runs with the Helm chart in charts/strata-broker. With
// --embedded it starts a local Kubernetes control plane (etcd and
// kube-apiserver, with the upstream CRDs; no operators) so a newcomer can
// call the catalog and provision on a machine with no cluster.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/provisioners/postgres/seedfetch"
	"github.com/strata-dev/strata/provisioners/redis/snapshot"
)

type flags struct {
	listen, tlsCert, tlsKey, credentialsDir, config, namespace, kubeconfig, logLevel, logFormat string
	embedded                                                                                    bool
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseFlags() flags {
	var f flags
	flag.StringVar(&f.listen, "listen", env("STRATA_LISTEN", ""), "address to serve HTTPS on (default :8443, or 127.0.0.1:8443 with --embedded)")
	flag.StringVar(&f.tlsCert, "tls-cert-file", env("STRATA_TLS_CERT_FILE", ""), "server certificate (PEM)")
	flag.StringVar(&f.tlsKey, "tls-key-file", env("STRATA_TLS_KEY_FILE", ""), "server key (PEM)")
	flag.StringVar(&f.credentialsDir, "credentials-dir", env("STRATA_CREDENTIALS_DIR", ""), "directory with the broker's basic-auth 'username' and 'password' files (else STRATA_BROKER_USERNAME/STRATA_BROKER_PASSWORD)")
	flag.StringVar(&f.config, "config", env("STRATA_CONFIG", ""), "broker configuration file (YAML)")
	flag.StringVar(&f.namespace, "namespace", env("POD_NAMESPACE", ""), "namespace of the broker's records")
	flag.StringVar(&f.kubeconfig, "kubeconfig", env("KUBECONFIG", ""), "kubeconfig (default: in-cluster)")
	flag.StringVar(&f.logLevel, "log-level", env("STRATA_LOG_LEVEL", "info"), "debug, info, warn or error")
	flag.StringVar(&f.logFormat, "log-format", env("STRATA_LOG_FORMAT", "auto"), "json, console (readable), or auto: console when stderr is a terminal, else json")
	flag.BoolVar(&f.embedded, "embedded", false, "start a local control plane and serve against it (development)")
	flag.Parse()
	if f.listen == "" {
		// A development broker is for this machine only.
		f.listen = ":8443"
		if f.embedded {
			f.listen = "127.0.0.1:8443"
		}
	}
	return f
}

func main() {
	// The Redis snapshot job and restore init container run this binary
	// too (redis-snapshot): one image, versioned with the builder that
	// renders their flags, and nothing else to build, pin and scan.
	if len(os.Args) > 1 && os.Args[1] == "redis-snapshot" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := snapshot.Main(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "redis-snapshot:", err)
			os.Exit(1)
		}
		return
	}
	// The seed-from-S3 Job's fetch step (provisioners/postgres/seeds3.go)
	// runs this binary for the same reason.
	if len(os.Args) > 1 && os.Args[1] == "postgres-seed-fetch" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := seedfetch.Main(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "postgres-seed-fetch:", err)
			os.Exit(1)
		}
		return
	}
	f := parseFlags()
	log, err := newLogger(f.logFormat, f.logLevel, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()
	if err := run(f, log); err != nil {
		log.Error("strata-broker stopped", zap.Error(err))
		os.Exit(1)
	}
}

func run(f flags, log *zap.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := broker.LoadConfig(f.config)
	if err != nil {
		return err
	}
	creds := envCredentials(os.Getenv("STRATA_BROKER_USERNAME"), os.Getenv("STRATA_BROKER_PASSWORD"))
	if f.credentialsDir != "" {
		creds = fileCredentials(f.credentialsDir)
	}

	var restCfg *rest.Config
	if f.embedded {
		dev, err := startEmbedded(log, cfg.Kubernetes)
		if err != nil {
			return err
		}
		defer dev.stop()
		restCfg, f.tlsCert, f.tlsKey = dev.restConfig, dev.certFile, dev.keyFile
		creds = fileCredentials(dev.credentialsDir)
		if f.namespace == "" {
			f.namespace = dev.brokerNamespace
		}
		if cfg.Postgres.Backup.Bucket == "" {
			// Nothing is uploaded without the operators; the bucket only
			// lets the backup plans render.
			cfg.Postgres.Backup.Bucket = "strata-dev-backups"
		}
		if cfg.Postgres.ServerCertificates.IssuerName == "" {
			// Likewise nothing issues certificates; an issuer's name lets
			// Redis (TLS only) render.
			cfg.Postgres.ServerCertificates.IssuerName = "strata-embedded-ca"
		}
	} else if restCfg, err = kubeConfig(f.kubeconfig); err != nil {
		return err
	}
	if cfg.BrokerNamespace != "" {
		f.namespace = cfg.BrokerNamespace
	}
	if f.tlsCert == "" || f.tlsKey == "" {
		return errors.New("TLS is required: pass --tls-cert-file and --tls-key-file (or --embedded for a local development broker)")
	}

	b, err := broker.New(restCfg, cfg.Options(f.namespace, log))
	if err != nil {
		return err
	}
	// Operations finish whether or not a platform polls them.
	go b.RunReconciler(ctx, broker.ReconcileOptions{Interval: time.Duration(cfg.ReconcileIntervalSeconds) * time.Second})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler := broker.NewHandler(b, broker.HandlerOptions{
		Credentials:  creds,
		PollInterval: time.Duration(cfg.PollIntervalSeconds) * time.Second,
		Ready:        b.Ready,
		Registry:     reg,
		Log:          log,
	})

	srv := &http.Server{
		Addr:              f.listen,
		Handler:           handler,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS(f.tlsCert, f.tlsKey) }()
	log.Info("serving the Open Service Broker API", zap.String("listen", f.listen), zap.String("namespace", f.namespace))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Finish in-flight requests: a platform retries what we drop, but a
	// cut response to a provision leaves it guessing.
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log.Info("shutting down")
	return srv.Shutdown(shutdown)
}

func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster and no --kubeconfig given (or use --embedded): %w", err)
	}
	return cfg, nil
}
