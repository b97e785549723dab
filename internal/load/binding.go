package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Binding is a binding's keys (docs/bindings.md): the files of its
// directory, or the data of its Secret.
type Binding map[string]string

// ReadBindingDir reads a binding directory: one file per key. Kubernetes
// mounts a Secret with "..data"-style bookkeeping entries beside the keys;
// those are skipped.
func ReadBindingDir(dir string) (Binding, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the binding directory: %w", err)
	}
	b := Binding{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p) // follows the mounted Secret's symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		v, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading binding key %s: %w", e.Name(), err)
		}
		b[e.Name()] = string(v)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("the binding directory %s has no keys", dir)
	}
	return b, nil
}

// ReadBindingSecret reads the binding Secret ns/name.
func ReadBindingSecret(ctx context.Context, kube kubernetes.Interface, ns, name string) (Binding, error) {
	s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the binding Secret %s/%s: %w", ns, name, err)
	}
	b := Binding{}
	for k, v := range s.Data {
		b[k] = string(v)
	}
	for k, v := range s.StringData {
		b[k] = v
	}
	return b, nil
}

// Get returns a key, failing when it is missing or empty. Errors name the
// key, never its value.
func (b Binding) Get(key string) (string, error) {
	v := strings.TrimSpace(b[key])
	if v == "" {
		return "", fmt.Errorf("the binding has no %q key", key)
	}
	return v, nil
}

// Values returns the binding's values of keys, in order, failing on the
// first one missing (as Get does).
func (b Binding) Values(keys ...string) ([]string, error) {
	out := make([]string, len(keys))
	for i, k := range keys {
		v, err := b.Get(k)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Type is the binding's servicebinding.io type (postgresql, redis, kafka).
func (b Binding) Type() string { return strings.TrimSpace(b["type"]) }

// checkType refuses a binding of another service, so a Redis binding given
// to the postgres workload fails clearly instead of at connect.
func (b Binding) checkType(want string) error {
	if t := b.Type(); t != "" && t != want {
		return fmt.Errorf("the binding is of type %q, this workload needs %q", t, want)
	}
	return nil
}

// TLSConfig trusts only the binding's CA (ca.crt) and verifies that the
// server's certificate names host.
func (b Binding) TLSConfig(host string) (*tls.Config, error) {
	ca, err := b.Get("ca.crt")
	if err != nil {
		return nil, fmt.Errorf("%w: the load tool only connects with TLS, verified against the binding's CA", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca)) {
		return nil, errors.New("the binding's ca.crt holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}
