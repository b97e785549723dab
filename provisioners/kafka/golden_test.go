package kafka

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

// go test ./provisioners/kafka -run TestBuildGolden -update rewrites the
// golden files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var goldenCases = []struct {
	name   string
	plan   string
	config func() Config
	params map[string]any
	meshed bool
}{
	{name: "dev-lite", plan: "dev-lite", config: DefaultConfig},
	{name: "standard", plan: "standard", config: baseConfig, params: map[string]any{"topics": []any{
		map[string]any{"name": "orders", "partitions": float64(12), "retention_ms": float64(3_600_000)},
		map[string]any{"name": "order-snapshots", "cleanup_policy": "compact"},
	}}},
	{name: "ha", plan: "ha", config: baseConfig},
	{name: "ha-meshed", plan: "ha", config: baseConfig, meshed: true, params: map[string]any{
		"storage_gb": float64(500),
		"topics":     []any{map[string]any{"name": "payments", "partitions": float64(24)}},
	}},
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

func goldenInstance(t *testing.T, plan string, params map[string]any, meshed bool) provisioners.Instance {
	inst := testInstance(t, plan, params)
	inst.Meshed = meshed
	return inst
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := renderYAML(build(t, tc.config(), goldenInstance(t, tc.plan, tc.params, tc.meshed)))
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

func TestBuildIsDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := goldenInstance(t, tc.plan, tc.params, tc.meshed)
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

func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			raw, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden.yaml"))
			g.Expect(err).NotTo(HaveOccurred())
			objs := build(t, tc.config(), goldenInstance(t, tc.plan, tc.params, tc.meshed))
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
