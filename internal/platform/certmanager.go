//go:build linux

package platform

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// cert-manager on the platform: its controller, built from the pinned
// module by the nested module internal/platform/tools/certmanager (its
// main.go says why not from cert-manager's own main), its CRDs read from
// that module's deploy/crds, and the platform CA as docs/openbao.md sets it
// up: a self-signed ClusterIssuer bootstraps a CA Certificate, and the CA
// ClusterIssuer PlatformIssuer signs every instance's server certificate.
const (
	CertManagerVersion   = "v1.19.1"
	CertManagerNamespace = "cert-manager"
	certManagerModule    = "github.com/cert-manager/cert-manager"

	// PlatformIssuer is the CA ClusterIssuer of the instances' server
	// certificates; its CA certificate is in the Secret of the same name
	// in CertManagerNamespace (PlatformCAPEM).
	PlatformIssuer = "strata-platform-ca"
	// selfSignedIssuer only signs PlatformIssuer's CA.
	selfSignedIssuer = "strata-selfsigned"
)

// buildCertManagerImage builds cert-manager's controller.
func (p *Platform) buildCertManagerImage(ctx context.Context) (string, string, error) {
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "cert-manager-controller",
		moduleDir: filepath.Join(p.cfg.SourceDir, "internal", "platform", "tools", "certmanager"),
		pkg:       ".",
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("cert-manager-controller", strings.TrimPrefix(CertManagerVersion, "v"), bin, []layerEntry{
		{path: "cert-manager-controller", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/cert-manager-controller"}, User: "65532:65532"})
}

// InstallCertManager installs cert-manager's CRDs and controller and the
// platform CA with its ClusterIssuer, and waits until PlatformIssuer is
// ready. It is idempotent.
func (p *Platform) InstallCertManager(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	crds, err := moduleManifests(ctx, certManagerModule, CertManagerVersion, filepath.Join("deploy", "crds"))
	if err != nil {
		return err
	}
	if err := p.applyObjects(ctx, crds); err != nil {
		return err
	}
	if err := p.Apply(ctx, []byte(certManagerManifest(imgs.CertManager))); err != nil {
		return err
	}
	if err := p.WaitForDeployment(ctx, CertManagerNamespace, "cert-manager", 5*time.Minute); err != nil {
		return err
	}
	if err := p.Apply(ctx, []byte(platformCAManifest)); err != nil {
		return err
	}
	if err := p.waitForClusterIssuer(ctx, PlatformIssuer, 3*time.Minute); err != nil {
		return err
	}
	p.cfg.Log("platform: cert-manager %s and ClusterIssuer %s ready in %s", CertManagerVersion, PlatformIssuer, time.Since(start).Round(time.Second))
	return nil
}

// PlatformCAPEM is the CA certificate PlatformIssuer signs with: what
// clients (and OpenBao) verify instances' server certificates against.
func (p *Platform) PlatformCAPEM(ctx context.Context) ([]byte, error) {
	s, err := p.Client.CoreV1().Secrets(CertManagerNamespace).Get(ctx, PlatformIssuer, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("platform: the platform CA (did InstallCertManager run?): %w", err)
	}
	if len(s.Data["tls.crt"]) == 0 {
		return nil, fmt.Errorf("platform: Secret %s/%s has no tls.crt", CertManagerNamespace, PlatformIssuer)
	}
	return s.Data["tls.crt"], nil
}

func (p *Platform) waitForClusterIssuer(ctx context.Context, name string, timeout time.Duration) error {
	dyn, err := dynamic.NewForConfig(p.AdminConfig)
	if err != nil {
		return err
	}
	issuers := dyn.Resource(schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "clusterissuers"})
	var last string
	err = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		ci, err := issuers.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready, message := readyCondition(ci)
		last = message
		return ready, nil
	})
	if err != nil {
		return fmt.Errorf("platform: ClusterIssuer %s not ready after %s: %s; cert-manager pods: %s", name, timeout, last, p.podSummary(ctx, CertManagerNamespace))
	}
	return nil
}

// readyCondition reads an object's Ready condition.
func readyCondition(obj *unstructured.Unstructured) (bool, string) {
	conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conditions {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			msg, _ := m["message"].(string)
			return m["status"] == "True", msg
		}
	}
	return false, "no Ready condition yet"
}

// certManagerManifest is the controller's namespace, ServiceAccount, RBAC
// (the rules of cert-manager's chart for the controllers this binary runs)
// and Deployment.
func certManagerManifest(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cert-manager, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "cert-manager-controller"}
rules:
- apiGroups: [cert-manager.io]
  resources: [issuers, issuers/status, clusterissuers, clusterissuers/status, certificates, certificates/status, certificaterequests, certificaterequests/status]
  verbs: [update, patch]
- apiGroups: [cert-manager.io]
  resources: [issuers, clusterissuers, certificates, certificaterequests]
  verbs: [get, list, watch]
- apiGroups: [cert-manager.io]
  resources: [certificaterequests]
  verbs: [create, delete]
- apiGroups: [cert-manager.io]
  resources: [certificates/finalizers, certificaterequests/finalizers]
  verbs: [update]
- apiGroups: [cert-manager.io]
  resources: [signers]
  resourceNames: ["issuers.cert-manager.io/*", "clusterissuers.cert-manager.io/*"]
  verbs: [approve]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "cert-manager-controller"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "cert-manager-controller"}
subjects: [{kind: ServiceAccount, name: cert-manager, namespace: %[1]s}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cert-manager, namespace: %[1]s, labels: {app.kubernetes.io/name: cert-manager, app.kubernetes.io/component: controller}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: cert-manager, app.kubernetes.io/component: controller}}
  template:
    metadata: {labels: {app.kubernetes.io/name: cert-manager, app.kubernetes.io/component: controller}}
    spec:
      serviceAccountName: cert-manager
      enableServiceLinks: false
      containers:
      - name: cert-manager-controller
        image: %[2]s
        imagePullPolicy: IfNotPresent
        args: ["--cluster-resource-namespace=%[1]s", "--v=2"]
        resources:
          requests: {cpu: 10m, memory: 64Mi}
          limits: {memory: 256Mi}
        securityContext:
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}
`, CertManagerNamespace, image)
}

// platformCAManifest is the platform CA of docs/openbao.md ("A platform CA
// and its ClusterIssuer").
var platformCAManifest = fmt.Sprintf(`apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: %[1]s}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: %[2]s, namespace: %[3]s}
spec:
  isCA: true
  commonName: Strata platform CA
  secretName: %[2]s
  duration: 87600h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: %[1]s, kind: ClusterIssuer, group: cert-manager.io}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: %[2]s}
spec: {ca: {secretName: %[2]s}}
`, selfSignedIssuer, PlatformIssuer, CertManagerNamespace)
