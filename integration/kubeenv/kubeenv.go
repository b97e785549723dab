//go:build linux

// Package kubeenv gives the integration tests a real Kubernetes control
// plane (etcd and the kube-apiserver, no controllers, no nodes) with the
// upstream CustomResourceDefinitions. The control plane itself is
// internal/controlplane, which the broker's --embedded mode runs too; this
// package ties it to a test's lifetime and downloads the CRD modules the
// tests need into the Go module cache (the broker never downloads them).
package kubeenv

import (
	"sync"
	"testing"

	"github.com/strata-dev/strata/internal/controlplane"
)

const (
	// EnvKubeAPIServer overrides the kube-apiserver binary
	// (default <repo>/.cache/bin/kube-apiserver).
	EnvKubeAPIServer = controlplane.EnvKubeAPIServer
	// EnvCRDsDir points at the CRDs that have no Go module (Strimzi, the
	// redis operators); default <repo>/../shared/crds.
	EnvCRDsDir = controlplane.EnvCRDsDir
	// AdminUser is the user the Env's token authenticates as; it is in
	// system:masters, which RBAC lets do everything.
	AdminUser = controlplane.AdminUser
)

// Env is a running control plane.
type Env = controlplane.Env

// Start starts a control plane, stops it when the test ends and fails the
// test if it cannot start.
func Start(t testing.TB) *Env {
	t.Helper()
	env, err := StartE()
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	t.Cleanup(env.Stop)
	return env
}

// StartWithCRDs is Start followed by installing every CRD of
// UpstreamCRDDirs (with the spotahome RedisFailover CRD).
func StartWithCRDs(t testing.TB) *Env {
	t.Helper()
	env := Start(t)
	dirs, err := UpstreamCRDDirs()
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	if err := InstallCRDs(env.Config, dirs...); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	return env
}

// StartE starts etcd and the kube-apiserver and returns once /readyz is ok.
// The caller must call Stop (TestMain users in particular).
func StartE() (*Env, error) { return controlplane.Start() }

// RepoRoot returns the root of the Strata module.
func RepoRoot() (string, error) { return controlplane.RepoRoot() }

// InstallCRDs creates or updates every CustomResourceDefinition found in
// paths and waits until all of them are Established.
var InstallCRDs = controlplane.InstallCRDs

// UpstreamCRDDirs downloads the CRD modules into the Go module cache (once
// per process; a warm cache makes it a no-op) and returns the directories of
// every upstream CRD (controlplane.UpstreamCRDDirs).
func UpstreamCRDDirs() ([]string, error) {
	if err := downloadCRDModules(); err != nil {
		return nil, err
	}
	return controlplane.UpstreamCRDDirs()
}

var downloadCRDModules = sync.OnceValue(controlplane.DownloadCRDModules)

// RedisForkCRDDir returns the directory of the RedisFailover CRD of the
// freshworks redis-operator fork.
func RedisForkCRDDir() (string, error) { return controlplane.RedisForkCRDDir() }
