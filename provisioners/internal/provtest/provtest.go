// Package provtest holds what the engines' tests share: the golden-file
// harness (the -update flag, the YAML rendering and the comparison),
// instance fixtures, lookups in built objects and the build benchmark loop.
// Only tests import it.
package provtest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Update is the -update flag: go test ./provisioners/<engine> -run
// TestBuildGolden -update rewrites the golden files; review the diff before
// committing it.
var Update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// RenderYAML renders objects as one YAML stream in build order; yaml sorts
// map keys, so the output is deterministic.
func RenderYAML(objs []*unstructured.Unstructured) ([]byte, error) {
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

// GoldenPath is where the golden file of a case lives.
func GoldenPath(name string) string {
	return filepath.Join("testdata", name+".golden.yaml")
}

// ExpectGolden compares a rendering with its golden file, after rewriting
// the file under -update.
func ExpectGolden(g Gomega, name string, got []byte) {
	path := GoldenPath(name)
	if *Update {
		g.ExpectWithOffset(1, os.MkdirAll("testdata", 0o755)).To(Succeed())
		g.ExpectWithOffset(1, os.WriteFile(path, got, 0o644)).To(Succeed())
	}
	want, err := os.ReadFile(path)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred(), "missing golden file; run go test -run TestBuildGolden -update")
	g.ExpectWithOffset(1, string(got)).To(Equal(string(want)), "rendering of %s differs from %s; if intended, rerun with -update and review the diff", name, path)
}

// ExpectGoldenInBuildOrder checks that the golden file of a case parses
// into objects of the same kinds and names as objs, in the same order: what
// is committed is what a client would apply. A non-empty label prefixes
// the failure messages.
func ExpectGoldenInBuildOrder(g Gomega, name string, objs []*unstructured.Unstructured, label string) {
	raw, err := os.ReadFile(GoldenPath(name))
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	docs := bytes.Split(raw, []byte("---\n"))
	if label == "" {
		g.ExpectWithOffset(1, docs).To(HaveLen(len(objs)))
	} else {
		g.ExpectWithOffset(1, docs).To(HaveLen(len(objs)), label)
	}
	for i, doc := range docs {
		var u unstructured.Unstructured
		g.ExpectWithOffset(1, yaml.Unmarshal(doc, &u.Object)).To(Succeed())
		if label == "" {
			g.ExpectWithOffset(1, provisioners.RefOf(&u)).To(Equal(provisioners.RefOf(objs[i])), "document %d", i)
		} else {
			g.ExpectWithOffset(1, provisioners.RefOf(&u)).To(Equal(provisioners.RefOf(objs[i])), "%s document %d", label, i)
		}
	}
}

// Plan is the service's named plan, failing the test when there is none.
func Plan(t testing.TB, svc *catalog.Service, name string) *catalog.Plan {
	t.Helper()
	p := svc.PlanByName(name)
	if p == nil {
		t.Fatalf("plan %q is not in the catalog", name)
	}
	return p
}

// Instance is an instance of the service's named plan, its objects named
// namePrefix + id.
func Instance(t testing.TB, svc *catalog.Service, plan, namePrefix, id, namespace string, params map[string]any) provisioners.Instance {
	t.Helper()
	p := Plan(t, svc, plan)
	return provisioners.Instance{
		ID:        id,
		Name:      provisioners.ResourceName(namePrefix, id),
		Namespace: namespace,
		Service:   svc,
		Plan:      p,
		Params:    params,
	}
}

// Builder is the part of a provisioner the tests build with.
type Builder interface {
	Build(inst provisioners.Instance) ([]*unstructured.Unstructured, error)
}

// Build renders the instance's objects, failing the test on an error.
func Build(t testing.TB, p Builder, inst provisioners.Instance) []*unstructured.Unstructured {
	t.Helper()
	objs, err := p.Build(inst)
	if err != nil {
		t.Fatalf("Build(%s): %v", inst.Plan.Name, err)
	}
	return objs
}

// ByKind returns the objects of one kind, in build order.
func ByKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// One returns the single object of a kind, failing the test otherwise.
func One(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := ByKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(found))
	}
	return found[0]
}

// UUIDFor makes the i-th distinct, UUID-shaped instance id.
func UUIDFor(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

// BenchBuild builds every instance per iteration and reports the objects
// built per iteration.
func BenchBuild(b *testing.B, p Builder, insts []provisioners.Instance) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	objects := 0
	for b.Loop() {
		objects = 0
		for _, inst := range insts {
			objs, err := p.Build(inst)
			if err != nil {
				b.Fatal(err)
			}
			objects += len(objs)
		}
	}
	b.ReportMetric(float64(objects), "objects/op")
}

// ExpectDeterministic renders five more times and expects each rendering
// to equal the first: output must not depend on map iteration order or on
// earlier calls.
func ExpectDeterministic(g Gomega, render func() ([]byte, error)) {
	first, err := render()
	g.Expect(err).NotTo(HaveOccurred())
	for range 5 {
		again, err := render()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again).To(Equal(first))
	}
}
