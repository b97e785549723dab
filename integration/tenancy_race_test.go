//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// TestTenantLimitsHoldUnderConcurrency: many provisions of one tenant at
// once, spread over two broker replicas, never take it past its limit;
// the tenant's guard makes the checks that raced check again.
func TestTenantLimitsHoldUnderConcurrency(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	ctx := context.Background()
	const ns, limit, attempts = "team-i", 3, 10
	w.ensureNamespace(t, ns, nil)
	limits := func(o *broker.Options) {
		o.Limits = broker.TenancyLimits{Default: broker.TenantLimits{InstancesPerService: map[string]int{"postgresql": limit}}}
	}
	replicas := []*osbClient{w.startBrokerWith(t, limits), w.startBrokerWith(t, limits)}

	codes := make([]int, attempts)
	bodies := make([]map[string]any, attempts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("7ace0000-0000-4000-8000-%012d", i)
			r := replicas[i%2].do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, ns, nil))
			codes[i], bodies[i] = r.Code, r.Body
		}()
	}
	close(start)
	wg.Wait()

	accepted := 0
	for i, code := range codes {
		switch code {
		case http.StatusAccepted:
			accepted++
		case http.StatusUnprocessableEntity:
			g.Expect(bodies[i]["error"]).To(Equal("TenantLimitExceeded"), "%v", bodies[i])
		default:
			t.Errorf("provision %d: %d %v", i, code, bodies[i])
		}
	}
	g.Expect(accepted).To(Equal(limit), "exactly the limit's worth of provisions is accepted: %v", codes)
	g.Expect(live(w.list(clusterGVR, ns, provisioners.LabelManagedBy+"="+provisioners.ManagedByStrata))).To(HaveLen(limit), "and only theirs have objects")
	recs, err := w.core.CoreV1().Secrets(brokerNS).List(ctx, metav1.ListOptions{LabelSelector: "strata.dev/record=instance," + provisioners.LabelTenant + "=" + ns})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(recs.Items).To(HaveLen(limit), "refused provisions leave no record")
}
