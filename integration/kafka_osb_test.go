//go:build linux

package integration_test

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
)

var (
	kafkaTopicGVR    = schema.GroupVersionResource{Group: "kafka.strimzi.io", Version: "v1", Resource: "kafkatopics"}
	kafkaUserGVR     = schema.GroupVersionResource{Group: "kafka.strimzi.io", Version: "v1", Resource: "kafkausers"}
	kafkaGVR         = schema.GroupVersionResource{Group: "kafka.strimzi.io", Version: "v1", Resource: "kafkas"}
	kafkaNodePoolGVR = schema.GroupVersionResource{Group: "kafka.strimzi.io", Version: "v1", Resource: "kafkanodepools"}
)

// strimziReportsReady writes the status Strimzi's operators write once a
// resource is reconciled (they cannot run here: no kubelet, no Kafka).
func (w *world) strimziReportsReady(t *testing.T, gvr schema.GroupVersionResource, ns, selector string) {
	t.Helper()
	for _, o := range w.list(gvr, ns, selector) {
		_ = unstructured.SetNestedField(o.Object, map[string]any{
			"observedGeneration": o.GetGeneration(),
			"conditions":         []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T12:00:00Z"}},
		}, "status")
		if _, err := w.dyn.Resource(gvr).Namespace(ns).UpdateStatus(context.Background(), &o, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKafkaLifecycle drives a Kafka instance on the platform's shared
// Strimzi cluster through its OSB life over HTTP, and a dedicated cluster
// through provisioning: every object is accepted by the real API server
// with the Strimzi 1.2 CRDs, under the chart's RBAC.
func TestKafkaLifecycle(t *testing.T) {
	w := sharedWorld(t)
	osb := w.startBroker(t)
	ctx := context.Background()
	// The shared cluster's namespace, and the cluster CA Secret Strimzi
	// keeps there.
	w.ensureNamespace(t, "kafka", nil)
	if _, err := w.core.CoreV1().Secrets("kafka").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "strata-shared-cluster-ca-cert"},
		Data:       map[string][]byte{"ca.crt": testCAPEM(t)},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	const id = "4afca000-0000-4000-8000-000000000001"
	const path = "/v2/service_instances/" + id
	const prefix = "team-a.kafka-" + id + "."
	body := func(plan string, params map[string]any) map[string]any {
		b := provisionBody(plan, "team-a", params)
		b["service_id"] = catalog.KafkaServiceID
		return b
	}
	params := map[string]any{"topics": []any{map[string]any{"name": "orders", "partitions": 3}, map[string]any{"name": "payments"}}}

	t.Run("provision creates the topics in the shared cluster's namespace", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", body(catalog.KafkaDevLiteID, params))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		topics := w.list(kafkaTopicGVR, "kafka", "strata.dev/instance-id="+id)
		g.Expect(topics).To(HaveLen(2))
		orders := w.get(g, kafkaTopicGVR, "kafka", prefix+"orders")
		g.Expect(orders.GetLabels()).To(HaveKeyWithValue("strimzi.io/cluster", "strata-shared"))
		g.Expect(orders.GetLabels()).To(HaveKeyWithValue("strata.dev/tenant", "team-a"))
		partitions, _, _ := unstructured.NestedInt64(orders.Object, "spec", "partitions")
		g.Expect(partitions).To(Equal(int64(3)))

		r = osb.do(http.MethodGet, path+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), r.Raw)
		w.strimziReportsReady(t, kafkaTopicGVR, "kafka", "strata.dev/instance-id="+id)
		r = osb.do(http.MethodGet, path+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("2 of 2 topics"))
	})

	const bid = "4afca000-0000-4000-8000-0000000000b1"
	bpath := path + "/service_bindings/" + bid
	t.Run("bind creates a KafkaUser confined to the instance's prefix, asynchronously", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", map[string]any{
			"service_id": catalog.KafkaServiceID, "plan_id": catalog.KafkaDevLiteID, "parameters": map[string]any{"access": "readwrite"}})
		g.Expect(r.Code).To(Equal(http.StatusAccepted), "the user exists only once Strimzi has made it: %s", r.Raw)
		op := r.Body["operation"].(string)
		user := w.get(g, kafkaUserGVR, "kafka", binding.KafkaUserName(bid))
		acls, _, _ := unstructured.NestedSlice(user.Object, "spec", "authorization", "acls")
		g.Expect(acls).NotTo(BeEmpty())
		for _, a := range acls {
			name, _, _ := unstructured.NestedString(a.(map[string]any), "resource", "name")
			pattern, _, _ := unstructured.NestedString(a.(map[string]any), "resource", "patternType")
			if name != "" {
				g.Expect(name).To(HavePrefix("team-a.kafka-"+id), "every ACL is confined to the instance")
				g.Expect(pattern).To(Equal("prefix"))
			}
		}
		g.Expect(osb.do(http.MethodGet, bpath+"/last_operation?operation="+op, nil).Body["state"]).To(Equal("in progress"))

		// Strimzi's User Operator creates the user and its Secret, with the
		// password the broker gave it.
		w.strimziReportsReady(t, kafkaUserGVR, "kafka", "strata.dev/binding-id="+bid)
		given, err := w.core.CoreV1().Secrets("kafka").Get(ctx, binding.KafkaUserName(bid)+"-password", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = w.core.CoreV1().Secrets("kafka").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: binding.KafkaUserName(bid)},
			Data:       map[string][]byte{"password": given.Data["password"]},
		}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		r = osb.do(http.MethodGet, bpath+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)

		r = osb.do(http.MethodGet, bpath, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		g.Expect(creds["spring.kafka.bootstrap-servers"]).To(Equal("strata-shared-kafka-bootstrap.kafka.svc:9093"))
		g.Expect(creds["spring.kafka.security.protocol"]).To(Equal("SASL_SSL"))
		g.Expect(creds["topic-prefix"]).To(Equal(prefix))
		g.Expect(creds["password"]).To(Equal(string(given.Data["password"])))
		secret, err := w.core.CoreV1().Secrets("team-a").Get(ctx, "binding-"+bid, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "the Spring-Boot-ready Secret is in the tenant's namespace")
		g.Expect(string(secret.Type)).To(Equal("servicebinding.io/kafka"))
	})

	t.Run("an update that drops a topic it may drop deletes it", func(t *testing.T) {
		g := NewWithT(t)
		patch := func(p map[string]any) response {
			return osb.do(http.MethodPatch, path+"?accepts_incomplete=true", map[string]any{"service_id": catalog.KafkaServiceID, "parameters": p,
				"context": map[string]any{"platform": "kubernetes", "namespace": "team-a"}})
		}
		only := map[string]any{"topics": []any{map[string]any{"name": "orders", "partitions": 3}}}
		r := patch(only)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), "dropping a topic loses its data: %s", r.Raw)
		only["allow_topic_deletion"] = true
		r = patch(only)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(live(w.list(kafkaTopicGVR, "kafka", "strata.dev/instance-id="+id))).To(ConsistOf(prefix + "orders"))
	})

	t.Run("unbind and deprovision remove the user and the topics", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodDelete, bpath+"?service_id="+catalog.KafkaServiceID+"&plan_id="+catalog.KafkaDevLiteID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(live(w.list(kafkaUserGVR, "kafka", "strata.dev/binding-id="+bid))).To(BeEmpty())
		w.strimziReportsReady(t, kafkaTopicGVR, "kafka", "strata.dev/instance-id="+id)
		r = osb.do(http.MethodGet, path+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
		r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.KafkaServiceID+"&plan_id="+catalog.KafkaDevLiteID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		w.collectGarbage(t, "kafka", kafkaTopicGVR, kafkaUserGVR, netpolGVR)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+r.Body["operation"].(string), nil)
		expectGone(g, r)
		g.Expect(w.list(kafkaTopicGVR, "kafka", "strata.dev/instance-id="+id)).To(BeEmpty())
	})

	t.Run("ha: a dedicated KRaft cluster in the tenant's namespace is accepted", func(t *testing.T) {
		g := NewWithT(t)
		const ha = "4afca000-0000-4000-8000-000000000002"
		b := provisionBody(catalog.KafkaHAID, "team-b", map[string]any{"topics": []any{map[string]any{"name": "events"}}})
		b["service_id"] = catalog.KafkaServiceID
		r := osb.do(http.MethodPut, "/v2/service_instances/"+ha+"?accepts_incomplete=true", b)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(w.list(kafkaGVR, "team-b", "strata.dev/instance-id="+ha)).To(HaveLen(1))
		g.Expect(w.list(kafkaNodePoolGVR, "team-b", "strata.dev/instance-id="+ha)).To(HaveLen(2), "dedicated controllers and brokers")
		g.Expect(w.list(kafkaTopicGVR, "team-b", "strata.dev/instance-id="+ha)).To(HaveLen(1))
	})
}
