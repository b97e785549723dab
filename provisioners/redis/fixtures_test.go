package redis

import (
	"bytes"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
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
	svc := testService()
	p := svc.PlanByName(plan)
	if p == nil {
		t.Fatalf("plan %q is not in the catalog", plan)
	}
	return provisioners.Instance{
		ID: id, Name: provisioners.ResourceName("rd-", id), Namespace: testNamespace,
		Service: svc, Plan: p, Params: params,
	}
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
	objs, err := (&Provisioner{Config: c}).Build(inst)
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

func renderYAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func uuidFor(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
