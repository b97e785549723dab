package postgres

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
	testBucket     = "strata-backups"
	testKMSKey     = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	testIAMRole    = "arn:aws:iam::111122223333:role/strata-backups"
	testRegion     = "eu-west-1"
	testEndpoint   = "https://s3.eu-west-1.amazonaws.com"
)

var planNames = []string{"dev-lite", "standard", "ha"}

// testService is the catalog's PostgreSQL service. Every call returns a
// fresh copy so a test that changes a plan cannot leak into another.
func testService() *catalog.Service {
	return &catalog.Default().Services[0]
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

// testInstance is an instance of the named plan in testNamespace.
func testInstance(t testing.TB, plan string, params map[string]any) provisioners.Instance {
	t.Helper()
	return instanceWithID(t, plan, testInstanceID, params)
}

func instanceWithID(t testing.TB, plan, id string, params map[string]any) provisioners.Instance {
	t.Helper()
	svc, p := testPlan(t, plan)
	return provisioners.Instance{
		ID:        id,
		Name:      provisioners.ResourceName("pg-", id),
		Namespace: testNamespace,
		Service:   svc,
		Plan:      p,
		Params:    params,
	}
}

// baseConfig is the default configuration with a storage class and the
// least backup configuration a backup plan needs (a bucket).
func baseConfig() Config {
	c := DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	c.Backup = BackupConfig{Bucket: testBucket}
	return c
}

// fullBackupConfig sets every backup field.
func fullBackupConfig() Config {
	c := baseConfig()
	c.Backup = BackupConfig{
		Bucket:      testBucket,
		PathPrefix:  "/pg/eu/",
		Region:      testRegion,
		KMSKeyID:    testKMSKey,
		IAMRoleARN:  testIAMRole,
		EndpointURL: testEndpoint,
	}
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

// byKind returns the objects of one kind, in build order.
func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of a kind, failing the test otherwise.
func one(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := byKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(found))
	}
	return found[0]
}

func nestedString(t testing.TB, o *unstructured.Unstructured, fields ...string) string {
	t.Helper()
	v, found, err := unstructured.NestedString(o.Object, fields...)
	if err != nil || !found {
		t.Fatalf("%s %s: %v is not a string (found=%v, err=%v)", o.GetKind(), o.GetName(), fields, found, err)
	}
	return v
}

func nestedSlice(t testing.TB, o *unstructured.Unstructured, fields ...string) []any {
	t.Helper()
	v, found, err := unstructured.NestedSlice(o.Object, fields...)
	if err != nil || !found {
		t.Fatalf("%s %s: %v is not a list (found=%v, err=%v)", o.GetKind(), o.GetName(), fields, found, err)
	}
	return v
}

func nestedMap(t testing.TB, o *unstructured.Unstructured, fields ...string) map[string]any {
	t.Helper()
	v, found, err := unstructured.NestedMap(o.Object, fields...)
	if err != nil || !found {
		t.Fatalf("%s %s: %v is not an object (found=%v, err=%v)", o.GetKind(), o.GetName(), fields, found, err)
	}
	return v
}

// uuidFor makes the i-th distinct, UUID-shaped instance id.
func uuidFor(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}
