package kafka

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
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
	return svc, provtest.Plan(t, svc, name)
}

func testInstance(t testing.TB, plan string, params map[string]any) provisioners.Instance {
	t.Helper()
	return instanceWithID(t, plan, testInstanceID, testNamespace, params)
}

func instanceWithID(t testing.TB, plan, id, ns string, params map[string]any) provisioners.Instance {
	t.Helper()
	return provtest.Instance(t, testService(), plan, "kafka-", id, ns, params)
}

func baseConfig() Config {
	c := DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	return c
}

func build(t testing.TB, c Config, inst provisioners.Instance) []*unstructured.Unstructured {
	t.Helper()
	return provtest.Build(t, &Provisioner{Config: c}, inst)
}

// The engines' shared test helpers, under the names this package's tests
// use.
var (
	renderYAML = provtest.RenderYAML
	byKind     = provtest.ByKind
	one        = provtest.One
	uuidFor    = provtest.UUIDFor
)

func topicsParam(names ...string) map[string]any {
	ts := make([]any, len(names))
	for i, n := range names {
		ts[i] = map[string]any{"name": n}
	}
	return map[string]any{"topics": ts}
}
