//go:build linux

package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// CNPGNamespace is where the CloudNativePG operator runs (the release
// manifest's namespace).
const CNPGNamespace = "cnpg-system"

// InstallCNPG installs the CloudNativePG operator from the release manifest
// in its Go module (CRDs, RBAC, webhooks, Deployment; read from the module
// cache, never copied into the repository), with the locally built operator
// image and the local PostgreSQL image as the default operand, and waits
// until the operator serves its webhooks.
func (p *Platform) InstallCNPG(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	dir, err := moduleDir(ctx, cnpgModule, "v"+CNPGVersion)
	if err != nil {
		return err
	}
	release := filepath.Join(dir, "releases", "cnpg-"+CNPGVersion+".yaml")
	manifest, err := os.ReadFile(release)
	if err != nil {
		return fmt.Errorf("platform: the CloudNativePG release manifest: %w", err)
	}
	objs, err := decodeManifest(manifest)
	if err != nil {
		return fmt.Errorf("platform: %s: %w", release, err)
	}
	found := false
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" && obj.GetName() == "cnpg-controller-manager" {
			if err := useLocalOperatorImages(obj, imgs); err != nil {
				return err
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("platform: no cnpg-controller-manager Deployment in %s", release)
	}
	// The Poolers' image: imported here, pulled by no one (there is no
	// registry) until a Pooler runs.
	if err := p.importIfMissing(ctx, imgs.PgBouncer); err != nil {
		return err
	}
	start := time.Now()
	if err := p.applyObjects(ctx, objs); err != nil {
		return err
	}
	if err := p.WaitForDeployment(ctx, CNPGNamespace, "cnpg-controller-manager", 5*time.Minute); err != nil {
		return err
	}
	p.cfg.Log("platform: CloudNativePG %s installed in %s", CNPGVersion, time.Since(start).Round(time.Second))
	return nil
}

// useLocalOperatorImages points the operator's Deployment at the local
// images: its own (also the image it injects the instance manager from),
// the default PostgreSQL operand and the Poolers' PgBouncer. The pull
// policy is IfNotPresent: there is no registry to pull from.
func useLocalOperatorImages(deploy *unstructured.Unstructured, imgs Images) error {
	containers, _, err := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return fmt.Errorf("platform: the CloudNativePG Deployment's containers: %w", err)
	}
	if len(containers) != 1 {
		return fmt.Errorf("platform: the CloudNativePG Deployment has %d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	c["image"] = imgs.CNPGOperator
	c["imagePullPolicy"] = "IfNotPresent"
	env, _ := c["env"].([]any)
	var kept []any
	for _, e := range env {
		name, _ := e.(map[string]any)["name"].(string)
		if name != "OPERATOR_IMAGE_NAME" && name != "POSTGRES_IMAGE_NAME" && name != "PGBOUNCER_IMAGE_NAME" {
			kept = append(kept, e)
		}
	}
	kept = append(kept,
		map[string]any{"name": "OPERATOR_IMAGE_NAME", "value": imgs.CNPGOperator},
		map[string]any{"name": "POSTGRES_IMAGE_NAME", "value": imgs.PostgreSQL},
		map[string]any{"name": "PGBOUNCER_IMAGE_NAME", "value": imgs.PgBouncer},
	)
	c["env"] = kept
	return unstructured.SetNestedSlice(deploy.Object, containers, "spec", "template", "spec", "containers")
}

// moduleManifests reads the objects of every YAML file in a directory of
// a Go module at an exact version, from the module cache (upstream's CRDs
// and manifests are read where the module ships them, never copied into
// the repository), in file name order.
func moduleManifests(ctx context.Context, module, version, subdir string) ([]*unstructured.Unstructured, error) {
	dir, err := moduleDir(ctx, module, version)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, subdir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("platform: no YAML in %s", filepath.Join(dir, subdir))
	}
	sort.Strings(files)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		decoded, err := decodeManifest(b)
		if err != nil {
			return nil, fmt.Errorf("platform: %s: %w", f, err)
		}
		objs = append(objs, decoded...)
	}
	return objs, nil
}

// decodeManifest splits a multi-document YAML into objects.
func decodeManifest(manifest []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}
