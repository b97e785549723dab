//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
)

// TestTenantLimits: the platform team's limits and a namespace's
// ResourceQuota refuse what exceeds them with 422 and a message naming
// the limit, and /metrics reports what each tenant holds.
func TestTenantLimits(t *testing.T) {
	w := sharedWorld(t)
	ctx := context.Background()
	for _, ns := range []string{"team-e", "team-f"} {
		w.ensureNamespace(t, ns, nil)
	}
	// team-f has a quota of 30 GiB of volume requests, 25 of them used
	// (the status the quota controller would write).
	q, err := w.core.CoreV1().ResourceQuotas("team-f").Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "storage"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceRequestsStorage: resource.MustParse("30Gi")}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q.Status = corev1.ResourceQuotaStatus{
		Hard: corev1.ResourceList{corev1.ResourceRequestsStorage: resource.MustParse("30Gi")},
		Used: corev1.ResourceList{corev1.ResourceRequestsStorage: resource.MustParse("25Gi")},
	}
	if _, err := w.core.CoreV1().ResourceQuotas("team-f").UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	osb := w.startBrokerWith(t, func(o *broker.Options) {
		o.Limits = broker.TenancyLimits{Default: broker.TenantLimits{
			InstancesPerService: map[string]int{"postgresql": 2},
			Plans:               map[string][]string{"postgresql": {"dev-lite", "standard"}},
			StorageGB:           45,
		}}
	})
	provision := func(id, ns, planID string, params map[string]any) response {
		return osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(planID, ns, params))
	}

	t.Run("within the limits", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(provision("7e000000-0000-4000-8000-000000000001", "team-e", catalog.PostgresStandardID, nil).Code).To(Equal(http.StatusAccepted), "40 GB of 45")
		g.Expect(provision("7e000000-0000-4000-8000-000000000002", "team-e", catalog.PostgresDevLiteID, nil).Code).To(Equal(http.StatusAccepted), "41 GB of 45")
		g.Expect(provision("7e000000-0000-4000-8000-000000000002", "team-e", catalog.PostgresDevLiteID, nil).Code).To(Equal(http.StatusAccepted), "a repeat is not counted twice")
	})
	cases := []struct {
		name, id, ns, plan string
		params             map[string]any
		substr             string
	}{
		{"a plan the tenant may not use", "7e000000-0000-4000-8000-000000000003", "team-f", catalog.PostgresHAID, nil,
			"tenancy.limits.default.plans.postgresql"},
		{"one instance too many", "7e000000-0000-4000-8000-000000000004", "team-e", catalog.PostgresDevLiteID, nil,
			"tenancy.limits.default.instancesPerService.postgresql: this tenant may hold 2 postgresql instance(s) and has 2"},
		{"more storage than the namespace's quota has left", "7e000000-0000-4000-8000-000000000005", "team-f", catalog.PostgresDevLiteID, map[string]any{"storage_gb": 6},
			"ResourceQuota storage of namespace team-f: requests.storage has 5Gi left"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			r := provision(c.id, c.ns, c.plan, c.params)
			g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), r.Raw)
			g.Expect(r.Body["error"]).To(Equal("TenantLimitExceeded"))
			g.Expect(r.Body["description"]).To(ContainSubstring(c.substr))
			g.Expect(w.list(clusterGVR, c.ns, "strata.dev/instance-id="+c.id)).To(BeEmpty(), "nothing is created")
		})
	}
	t.Run("an update beyond the limits changes nothing", func(t *testing.T) {
		g := NewWithT(t)
		const id = "7e000000-0000-4000-8000-000000000001"
		w.operatorReportsReady(t, "team-e", "pg-"+id)
		g.Expect(osb.do(http.MethodGet, "/v2/service_instances/"+id+"/last_operation", nil).Body["state"]).To(Equal("succeeded"))
		r := osb.do(http.MethodPatch, "/v2/service_instances/"+id+"?accepts_incomplete=true", map[string]any{
			"service_id": catalog.PostgresServiceID, "parameters": map[string]any{"storage_gb": 25},
			"context": map[string]any{"platform": "kubernetes", "namespace": "team-e"}})
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("tenancy.limits.default.storageGB: the tenant's instances would request 51 GB in all, over its limit of 45 GB"))
	})
	t.Run("usage per tenant in /metrics", func(t *testing.T) {
		g := NewWithT(t)
		// Topics on the shared Kafka cluster (in its namespace).
		w.ensureNamespace(t, "kafka", nil)
		_, standard, err := catalog.Default().Find(catalog.KafkaServiceID, catalog.KafkaStandardID)
		g.Expect(err).NotTo(HaveOccurred())
		kafkaBody := provisionBody(catalog.KafkaStandardID, "team-e", map[string]any{"topics": []any{
			map[string]any{"name": "orders", "partitions": 6}, map[string]any{"name": "audit"},
		}})
		kafkaBody["service_id"] = catalog.KafkaServiceID
		r := osb.do(http.MethodPut, "/v2/service_instances/7e000000-0000-4000-8000-000000000009?accepts_incomplete=true", kafkaBody)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		req, err := http.NewRequest(http.MethodGet, osb.base+"/metrics", nil)
		g.Expect(err).NotTo(HaveOccurred())
		res, err := osb.http.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		text := string(body)
		g.Expect(text).To(ContainSubstring(`strata_tenant_instances{plan="standard",service="postgresql",tenant="team-e"} 1`))
		g.Expect(text).To(ContainSubstring(`strata_tenant_instances{plan="dev-lite",service="postgresql",tenant="team-e"} 1`))
		// By plan. standard: 2 × 20 GiB, dev-lite: 1 GiB.
		g.Expect(text).To(ContainSubstring(`strata_tenant_storage_bytes{plan="standard",service="postgresql",tenant="team-e"} 4.294967296e+10`))
		g.Expect(text).To(ContainSubstring(`strata_tenant_storage_bytes{plan="dev-lite",service="postgresql",tenant="team-e"} 1.073741824e+09`))
		// standard: 2 × (1 CPU + 0.25 for the barman-cloud sidecar) + 2
		// PgBouncers × 0.25; dev-lite: 0.25.
		g.Expect(text).To(ContainSubstring(`strata_tenant_cpu_cores{plan="standard",service="postgresql",tenant="team-e"} 3`))
		g.Expect(text).To(ContainSubstring(`strata_tenant_cpu_cores{plan="dev-lite",service="postgresql",tenant="team-e"} 0.25`))
		g.Expect(text).To(ContainSubstring(`strata_tenant_instances{plan="standard",service="kafka",tenant="team-e"} 1`))
		g.Expect(text).To(ContainSubstring(`strata_tenant_topics{plan="standard",service="kafka",tenant="team-e"} 2`))
		g.Expect(text).To(ContainSubstring(fmt.Sprintf(`strata_tenant_partitions{plan="standard",service="kafka",tenant="team-e"} %d`, 6+standard.Kafka.DefaultPartitions)))
		g.Expect(text).NotTo(MatchRegexp(`strata_tenant_(topics|partitions)\{[^}]*service="postgresql"`), "PostgreSQL holds no topics")
		g.Expect(strings.Contains(text, `tenant="team-f"`)).To(BeFalse(), "refused provisions hold nothing")
	})
}
