package redis

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

const (
	testInstanceID = "7d3f2a10-8c4e-4b6a-9e21-5f0a1b2c3d4e"
	testNamespace  = "team-orders"
	testIssuer     = "platform-ca"
)

var planNames = []string{"dev-lite", "standard", "ha"}

// testService is a fresh copy of the catalog's Redis service.
func testService() *catalog.Service {
	s := catalog.RedisService()
	return &s
}

func testInstance(t testing.TB, plan string, params map[string]any) provisioners.Instance {
	t.Helper()
	return instanceWithID(t, plan, testInstanceID, params)
}

func instanceWithID(t testing.TB, plan, id string, params map[string]any) provisioners.Instance {
	t.Helper()
	return provtest.Instance(t, testService(), plan, "rd-", id, testNamespace, params)
}

// baseConfig is the default configuration with a storage class and an
// issuer, the least a deployment has.
func baseConfig() Config {
	c := DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	c.ServerCertificates = provisioners.CertificatesConfig{IssuerName: testIssuer}
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
