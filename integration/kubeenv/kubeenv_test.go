//go:build linux

package kubeenv_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/integration/kubeenv"
)

var (
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	namespaceGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	secretGVR    = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	clusterGVR   = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
)

// TestControlPlane checks what the integration suites rely on: the upstream
// CRDs are served, their schemas are enforced and RBAC is on.
func TestControlPlane(t *testing.T) {
	start := time.Now()
	env := kubeenv.StartWithCRDs(t)
	t.Logf("control plane started and CRDs installed in %s", time.Since(start).Round(time.Millisecond))

	dyn, err := dynamic.NewForConfig(env.Config)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	ctx := t.Context()

	t.Run("upstream CRDs are established", func(t *testing.T) {
		g := NewWithT(t)
		for _, name := range []string{
			"clusters.postgresql.cnpg.io",
			"databaseroles.postgresql.cnpg.io",
			"objectstores.barmancloud.cnpg.io",
			"podmonitors.monitoring.coreos.com",
			"kafkas.kafka.strimzi.io",
			"redisfailovers.databases.spotahome.com",
			"peerauthentications.security.istio.io",
			"certificates.cert-manager.io",
		} {
			crd, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred(), name)
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			g.Expect(conds).To(ContainElement(And(
				HaveKeyWithValue("type", "Established"),
				HaveKeyWithValue("status", "True"),
			)), name)
		}
	})

	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": "kubeenv-test"},
	}}
	_, err = dyn.Resource(namespaceGVR).Create(ctx, ns, metav1.CreateOptions{})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	cluster := func(instances any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
			"metadata": map[string]any{"generateName": "pg-"},
			"spec": map[string]any{
				"instances": instances,
				"storage":   map[string]any{"size": "1Gi"},
			},
		}}
	}

	t.Run("a valid CNPG Cluster is accepted", func(t *testing.T) {
		_, err := dyn.Resource(clusterGVR).Namespace("kubeenv-test").Create(ctx, cluster(int64(1)), metav1.CreateOptions{})
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
	})

	t.Run("the CRD schema rejects an invalid Cluster", func(t *testing.T) {
		_, err := dyn.Resource(clusterGVR).Namespace("kubeenv-test").Create(ctx, cluster("x"), metav1.CreateOptions{})
		g := NewWithT(t)
		g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		g.Expect(err.Error()).To(ContainSubstring("spec.instances"))
	})

	t.Run("RBAC denies a service account without bindings", func(t *testing.T) {
		g := NewWithT(t)
		// The admin may list secrets, so a Forbidden below is RBAC's doing.
		_, err := dyn.Resource(secretGVR).Namespace("kubeenv-test").List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())

		sa, err := dynamic.NewForConfig(env.ConfigAs("system:serviceaccount:kubeenv-test:nobody",
			"system:serviceaccounts", "system:serviceaccounts:kubeenv-test", "system:authenticated"))
		g.Expect(err).NotTo(HaveOccurred())
		_, err = sa.Resource(secretGVR).Namespace("kubeenv-test").List(ctx, metav1.ListOptions{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want 403 Forbidden, got %v", err)
	})

	t.Run("the redis-operator fork's CRD replaces the spotahome one", func(t *testing.T) {
		g := NewWithT(t)
		dir, err := kubeenv.RedisForkCRDDir()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kubeenv.InstallCRDs(env.Config, dir)).To(Succeed())
	})
}
