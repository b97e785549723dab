package redistest

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/kubeenv"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

// redisFailoverSchemas are the openAPIV3Schemas of the RedisFailover CRDs
// of the spotahome operator and of its maintained fork (shared/crds, never
// copied into the repository).
func redisFailoverSchemas(t *testing.T) map[string]*apiext.JSONSchemaProps {
	t.Helper()
	fork, err := kubeenv.RedisForkCRDDir()
	if err != nil {
		t.Fatalf("RedisFailover CRDs: %v", err)
	}
	out := map[string]*apiext.JSONSchemaProps{}
	for name, dir := range map[string]string{"spotahome": filepath.Join(filepath.Dir(fork), "spotahome"), "freshworks": fork} {
		raw, err := os.ReadFile(filepath.Join(dir, "databases.spotahome.com_redisfailovers.yaml"))
		if err != nil {
			t.Fatalf("%s CRD: %v (set %s)", name, err, kubeenv.EnvCRDsDir)
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatalf("%s CRD: %v", name, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name != "v1" {
				continue
			}
			var internal apiext.JSONSchemaProps
			if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				t.Fatalf("%s CRD schema: %v", name, err)
			}
			out[name] = &internal
		}
		if out[name] == nil {
			t.Fatalf("%s CRD has no v1", name)
		}
	}
	return out
}

// Every rendered RedisFailover is valid against both CRDs, and the API
// server would prune none of its fields (an unknown field would silently
// vanish).
func TestRenderedRedisFailoverMatchesBothCRDs(t *testing.T) {
	schemas := redisFailoverSchemas(t)
	svc := catalog.RedisService()
	cfg := rd.DefaultConfig()
	cfg.StorageClass = "gp3-encrypted"
	cfg.ServerCertificates.IssuerName = "platform-ca"
	// A restore adds init containers and, with an IAM role, the service
	// account (spec.redis.initContainers and .serviceAccountName, in the
	// 1.2.4 API too).
	restoring := cfg
	restoring.SnapshotImage = "strata-broker:test"
	restoring.Backup = provisioners.BackupConfig{Bucket: "b", IAMRoleARN: "arn:aws:iam::111122223333:role/r"}
	restore := map[string]any{"restore": map[string]any{"from_instance": "source"}}
	for _, plan := range []string{"dev-lite", "standard", "ha"} {
		for _, variant := range []struct {
			meshed bool
			cfg    rd.Config
			params map[string]any
		}{{false, cfg, nil}, {true, cfg, nil}, {false, restoring, restore}} {
			meshed := variant.meshed
			inst := provisioners.Instance{
				ID: "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d", Name: "rd-6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
				Namespace: "team-c", Service: &svc, Plan: svc.PlanByName(plan), Meshed: meshed, Params: variant.params,
			}
			objs, err := (&rd.Provisioner{Config: variant.cfg}).Build(inst)
			if err != nil {
				t.Fatal(err)
			}
			var rf *unstructured.Unstructured
			for _, o := range objs {
				if o.GetKind() == "RedisFailover" {
					rf = o
				}
			}
			for name, s := range schemas {
				t.Run(plan+"/"+name, func(t *testing.T) {
					g := NewWithT(t)
					validator, _, err := validation.NewSchemaValidator(s)
					g.Expect(err).NotTo(HaveOccurred())
					errs := validation.ValidateCustomResource(field.NewPath(""), rf.UnstructuredContent(), validator)
					g.Expect(errs).To(BeEmpty(), "meshed=%v params=%v", meshed, variant.params)

					structural, err := structuralschema.NewStructural(s)
					g.Expect(err).NotTo(HaveOccurred())
					obj := rf.DeepCopy().UnstructuredContent()
					pruned := pruning.PruneWithOptions(obj, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
					g.Expect(pruned).To(BeEmpty(), "fields the API server would drop (meshed=%v params=%v)", meshed, variant.params)
				})
			}
		}
	}
}

// The check above can fail: an unknown field is reported as pruned and a
// wrong type as invalid, by both CRDs.
func TestCRDCheckCatchesMistakes(t *testing.T) {
	for name, s := range redisFailoverSchemas(t) {
		g := NewWithT(t)
		obj := map[string]any{
			"apiVersion": "databases.spotahome.com/v1", "kind": "RedisFailover",
			"metadata": map[string]any{"name": "x", "namespace": "y"},
			"spec":     map[string]any{"redis": map[string]any{"replicas": "two", "tlsPort": int64(6380)}},
		}
		validator, _, err := validation.NewSchemaValidator(s)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(validation.ValidateCustomResource(field.NewPath(""), obj, validator)).NotTo(BeEmpty(), name)
		structural, err := structuralschema.NewStructural(s)
		g.Expect(err).NotTo(HaveOccurred())
		pruned := pruning.PruneWithOptions(obj, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		g.Expect(pruned).To(ContainElement("spec.redis.tlsPort"), name)
	}
}
