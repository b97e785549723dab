package postgres

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/provisioners"
)

// go test ./provisioners/postgres -run TestBuildGolden -update rewrites the
// golden files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases are the renderings kept under testdata/<name>.golden.yaml.
var goldenCases = []struct {
	name   string
	plan   string
	config func() Config
	params map[string]any
	meshed bool
}{
	{name: "dev-lite", plan: "dev-lite", config: DefaultConfig},
	{name: "standard", plan: "standard", config: baseConfig},
	{name: "ha", plan: "ha", config: baseConfig},
	{
		name: "ha-xa-extensions-two-databases", plan: "ha", config: baseConfig,
		params: map[string]any{
			"xa":         true,
			"extensions": []any{"pg_trgm", "vector"},
			"databases":  []any{"orders", "order_audit"},
			"replicas":   float64(3),
			"audit":      map[string]any{"classes": []any{"read", "write", "ddl"}},
		},
	},
	{name: "standard-meshed", plan: "standard", config: baseConfig, meshed: true},
	{
		name: "standard-backup-config", plan: "standard", config: fullBackupConfig,
		params: map[string]any{
			"storage_gb": float64(100),
			"resources":  map[string]any{"cpu": "2", "memory": "4Gi"},
			"backup":     map[string]any{"schedule": "0 30 1 * * *", "retention_days": float64(14)},
		},
	},
}

// renderYAML renders objects as one YAML stream in build order; yaml sorts
// map keys, so the output is deterministic.
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

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			got, err := renderYAML(build(t, tc.config(), inst))
			g.Expect(err).NotTo(HaveOccurred())

			path := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				g.Expect(os.MkdirAll("testdata", 0o755)).To(Succeed())
				g.Expect(os.WriteFile(path, got, 0o644)).To(Succeed())
			}
			want, err := os.ReadFile(path)
			g.Expect(err).NotTo(HaveOccurred(), "missing golden file; run go test -run TestBuildGolden -update")
			g.Expect(string(got)).To(Equal(string(want)), "rendering of %s differs from %s; if intended, rerun with -update and review the diff", tc.name, path)
		})
	}
}

// Rendering must not depend on map iteration order or on earlier calls.
func TestBuildIsDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			first, err := renderYAML(build(t, tc.config(), inst))
			g.Expect(err).NotTo(HaveOccurred())
			for range 5 {
				again, err := renderYAML(build(t, tc.config(), inst))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(again).To(Equal(first))
			}
		})
	}
}

// The golden files must round-trip: what is committed is what a client
// would apply, with the same kinds in the same order.
func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			raw, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden.yaml"))
			g.Expect(err).NotTo(HaveOccurred())
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			objs := build(t, tc.config(), inst)
			docs := bytes.Split(raw, []byte("---\n"))
			g.Expect(docs).To(HaveLen(len(objs)))
			for i, doc := range docs {
				var u unstructured.Unstructured
				g.Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
				g.Expect(provisioners.RefOf(&u)).To(Equal(provisioners.RefOf(objs[i])), "document %d", i)
			}
		})
	}
}
