package kafka

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Fixed values the golden files are rendered with.
const (
	testInstanceID = "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f"
	testNamespace  = "team-orders"
)

var planNames = []string{"dev-lite", "standard", "ha"}

// testService is a fresh copy of the catalog's Kafka service.
func testService() *catalog.Service {
	s := catalog.KafkaService()
	return &s
}

func testPlan(t testing.TB, name string) (*catalog.Service, *catalog.Plan) {
	t.Helper()
	svc := testService()
	p := svc.PlanByName(name)
	if p == nil {
		t.Fatalf("plan %q is not in the catalog", name)
	}
	return svc, p
}

func testInstance(t testing.TB, plan string, params map[string]any) provisioners.Instance {
	t.Helper()
	return instanceWithID(t, plan, testInstanceID, testNamespace, params)
}

func instanceWithID(t testing.TB, plan, id, ns string, params map[string]any) provisioners.Instance {
	t.Helper()
	svc, p := testPlan(t, plan)
	return provisioners.Instance{
		ID:        id,
		Name:      provisioners.ResourceName("kafka-", id),
		Namespace: ns,
		Service:   svc,
		Plan:      p,
		Params:    params,
	}
}

func baseConfig() Config {
	c := DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	return c
}

func build(t testing.TB, c Config, inst provisioners.Instance) []*unstructured.Unstructured {
	t.Helper()
	p := &Provisioner{Config: c}
	objs, err := p.Build(inst)
	if err != nil {
		t.Fatalf("Build(%s): %v", inst.Plan.Name, err)
	}
	return objs
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func one(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := byKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(found))
	}
	return found[0]
}

func uuidFor(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

func topicsParam(names ...string) map[string]any {
	ts := make([]any, len(names))
	for i, n := range names {
		ts[i] = map[string]any{"name": n}
	}
	return map[string]any{"topics": ts}
}
