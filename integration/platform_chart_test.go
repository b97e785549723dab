//go:build linux

package integration_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners"
)

// TestPlatformChartIsAccepted applies the platform chart (the shared Kafka
// cluster and its node pools) to the real API server with the Strimzi 1.2
// CRDs, as a platform engineer's helm install would.
func TestPlatformChartIsAccepted(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	ctx := context.Background()
	if _, err := w.core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kafka"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	objs, err := charts.RenderPlatform(nil, brokerNS)
	g.Expect(err).NotTo(HaveOccurred())
	kube, err := provisioners.NewKube(w.env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		g.Expect(kube.Apply(ctx, []*unstructured.Unstructured{u})).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
	}
	w.get(g, kafkaGVR, "kafka", "strata-shared")
	g.Expect(w.list(kafkaNodePoolGVR, "kafka", "strimzi.io/cluster=strata-shared")).To(HaveLen(2))
}
