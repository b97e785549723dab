package redis

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

// go test ./provisioners/redis -run TestBuildGolden -update rewrites the
// golden files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var goldenCases = []struct {
	name   string
	plan   string
	params map[string]any
	meshed bool
}{
	{name: "dev-lite", plan: "dev-lite"},
	{name: "standard", plan: "standard"},
	{name: "ha", plan: "ha"},
	{name: "standard-meshed", plan: "standard", meshed: true},
	{
		name: "ha-parameters", plan: "ha",
		params: map[string]any{
			"replicas": float64(5), "storage_gb": float64(100), "maxmemory_policy": "noeviction",
			"resources": map[string]any{"cpu": "2", "memory": "16Gi"},
		},
	},
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			got, err := renderYAML(build(t, baseConfig(), inst))
			g.Expect(err).NotTo(HaveOccurred())
			path := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
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
		g := NewWithT(t)
		inst := testInstance(t, tc.plan, tc.params)
		inst.Meshed = tc.meshed
		first, err := renderYAML(build(t, baseConfig(), inst))
		g.Expect(err).NotTo(HaveOccurred())
		for range 3 {
			again, _ := renderYAML(build(t, baseConfig(), inst))
			g.Expect(again).To(Equal(first), tc.name)
		}
	}
}

func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		g := NewWithT(t)
		raw, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden.yaml"))
		g.Expect(err).NotTo(HaveOccurred())
		inst := testInstance(t, tc.plan, tc.params)
		inst.Meshed = tc.meshed
		objs := build(t, baseConfig(), inst)
		docs := bytes.Split(raw, []byte("---\n"))
		g.Expect(docs).To(HaveLen(len(objs)), tc.name)
		for i, doc := range docs {
			var u unstructured.Unstructured
			g.Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
			g.Expect(provisioners.RefOf(&u)).To(Equal(provisioners.RefOf(objs[i])), "%s document %d", tc.name, i)
		}
	}
}
