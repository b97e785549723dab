//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/internal/controlplane"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// startEmbedded starts the embedded default: a real etcd and
// kube-apiserver with the upstream CRDs (internal/controlplane, the control
// plane the integration tests use), a self-signed serving certificate and
// generated broker credentials, all under .cache/strata. The CRDs are read
// from the Go module cache; nothing is downloaded at start.
func startEmbedded(log *zap.Logger, limits broker.KubernetesConfig) (*devBroker, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		root, _ = os.Getwd()
	}
	dir := filepath.Join(root, ".cache", "strata")
	if err := os.MkdirAll(filepath.Join(dir, "credentials"), 0o700); err != nil {
		return nil, err
	}
	log.Info("starting the embedded control plane (etcd, kube-apiserver, upstream CRDs)")
	// The CRDs first: a cold module cache fails at once, naming the
	// download, before any process starts.
	crds, err := controlplane.UpstreamCRDDirs()
	if err != nil {
		return nil, fmt.Errorf("embedded control plane: %w", err)
	}
	envt, err := controlplane.Start()
	if err != nil {
		return nil, fmt.Errorf("embedded control plane: %w", err)
	}
	err = controlplane.InstallCRDs(envt.Config, crds...)
	if err != nil {
		envt.Stop()
		return nil, fmt.Errorf("install CRDs: %w", err)
	}
	core, err := kubernetes.NewForConfig(broker.ClientConfig(envt.Config, limits))
	if err != nil {
		envt.Stop()
		return nil, err
	}
	// kafka: the namespace of the platform's shared Kafka cluster
	// (kafka.shared.namespace); strata-postgres: the shared PostgreSQL
	// cluster's (postgres.shared.namespace).
	for _, ns := range []string{"strata-system", "dev", "kafka", postgres.DefaultSharedConfig().Namespace} {
		_, err := core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			envt.Stop()
			return nil, err
		}
	}
	d := &devBroker{restConfig: envt.Config, credentialsDir: filepath.Join(dir, "credentials"), brokerNamespace: "strata-system", stop: envt.Stop}
	if d.certFile, d.keyFile, err = selfSigned(dir); err != nil {
		envt.Stop()
		return nil, err
	}
	if err := writeIfAbsent(filepath.Join(d.credentialsDir, "username"), "strata"); err != nil {
		envt.Stop()
		return nil, err
	}
	pw := make([]byte, 18)
	_, _ = rand.Read(pw)
	if err := writeIfAbsent(filepath.Join(d.credentialsDir, "password"), base64.RawURLEncoding.EncodeToString(pw)); err != nil {
		envt.Stop()
		return nil, err
	}
	log.Info("embedded broker ready: namespace \"dev\" is a tenant; credentials and CA are files, never logged",
		zap.String("credentials", d.credentialsDir), zap.String("ca", d.certFile))
	return d, nil
}

func writeIfAbsent(path, value string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return os.WriteFile(path, []byte(value+"\n"), 0o600)
}

// selfSigned writes a certificate for localhost, valid a year, once.
func selfSigned(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "strata-broker (development)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
