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
	// testSourceID is the instance a restore copies from.
	testSourceID    = "2b8e4f60-1a3c-4d5e-8f90-a1b2c3d4e5f6"
	testBucket      = "strata-snapshots"
	testBrokerImage = "registry.example/strata-broker:v1.4.0"
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

// staticKeysConfig is baseConfig with a bucket on an S3-compatible store
// and static keys (what LoadCredentials reads from credentialsDir).
func staticKeysConfig() Config {
	c := baseConfig()
	c.SnapshotImage = testBrokerImage
	c.Backup = provisioners.BackupConfig{
		Bucket: testBucket, PathPrefix: "/redis-eu/", EndpointURL: "https://s3.storage.example:9000",
		Region: "eu-central-1", KMSKeyID: "arn:aws:kms:eu-central-1:111122223333:key/1234abcd",
		CredentialsDir: "/etc/strata/backup",
		Credentials:    &provisioners.S3Keys{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMIexample"},
	}
	return c
}

// iamRoleConfig is baseConfig with a bucket on AWS reached through an IAM
// role for service accounts.
func iamRoleConfig() Config {
	c := baseConfig()
	c.SnapshotImage = testBrokerImage
	c.Backup = provisioners.BackupConfig{Bucket: testBucket, Region: "eu-west-1", IAMRoleARN: "arn:aws:iam::111122223333:role/strata-redis-snapshots"}
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
