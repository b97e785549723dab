package postgres

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
	return svc, provtest.Plan(t, svc, name)
}

// testInstance is an instance of the named plan in testNamespace.
func testInstance(t testing.TB, plan string, params map[string]any) provisioners.Instance {
	t.Helper()
	return instanceWithID(t, plan, testInstanceID, params)
}

func instanceWithID(t testing.TB, plan, id string, params map[string]any) provisioners.Instance {
	t.Helper()
	return provtest.Instance(t, testService(), plan, "pg-", id, testNamespace, params)
}

// baseConfig is the default configuration with a storage class and the
// least backup configuration a backup plan needs (a bucket).
func baseConfig() Config {
	c := DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	c.Backup = BackupConfig{BackupConfig: provisioners.BackupConfig{Bucket: testBucket}}
	return c
}

// fullBackupConfig sets every backup field.
func fullBackupConfig() Config {
	c := baseConfig()
	c.Backup = BackupConfig{BackupConfig: provisioners.BackupConfig{
		Bucket:      testBucket,
		PathPrefix:  "/pg/eu/",
		Region:      testRegion,
		KMSKeyID:    testKMSKey,
		IAMRoleARN:  testIAMRole,
		EndpointURL: testEndpoint,
	}}
	return c
}

// staticKeysConfig is an S3-compatible store without IAM: an endpoint, a
// region and static keys (what LoadCredentials reads from credentialsDir).
func staticKeysConfig() Config {
	c := baseConfig()
	c.Backup = BackupConfig{BackupConfig: provisioners.BackupConfig{
		Bucket:         testBucket,
		Region:         "us-east-1",
		EndpointURL:    "http://versitygw.strata-s3.svc.cluster.local:7070",
		CredentialsDir: "/etc/strata/backup",
		Credentials:    &S3Keys{AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretKey},
	}}
	return c
}

// acrossNamespacesConfig has static keys (which the ObjectStore over the
// source's backups reads with too) and lets restores cross namespaces.
func acrossNamespacesConfig() Config {
	c := staticKeysConfig()
	c.Restore.AcrossNamespaces = true
	return c
}

// testSourceID is the instance a restore reads the backups of.
const testSourceID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

const (
	testAccessKeyID = "STRATAEXAMPLEKEYID"
	testSecretKey   = "example-secret-access-key"
)

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
