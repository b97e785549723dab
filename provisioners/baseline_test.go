package provisioners_test

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

func TestBaseline(t *testing.T) {
	conf := provisioners.BaselineConfig{MeshIdentityNamespaces: []string{"openbao"}, PlaintextPorts: []int{8000, 9187}}
	kinds := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetKind())
		}
		return out
	}
	for _, c := range []struct {
		name   string
		meshed bool
		kinds  []string
	}{
		{"not meshed: the default-deny policy only", false, []string{"NetworkPolicy"}},
		{"meshed: and Istio's mTLS and authorization", true, []string{"NetworkPolicy", "PeerAuthentication", "AuthorizationPolicy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := provisioners.Baseline(conf, provisioners.BaselineTenant{Namespace: "team-a", Meshed: c.meshed})
			g.Expect(kinds(objs)).To(Equal(c.kinds))
			refs := map[provisioners.Ref]bool{}
			for _, r := range provisioners.BaselineRefs("team-a") {
				refs[r] = true
			}
			for _, o := range objs {
				g.Expect(o.GetNamespace()).To(Equal("team-a"))
				g.Expect(o.GetLabels()).To(Equal(provisioners.BaselineLabels("team-a")))
				g.Expect(refs).To(HaveKey(provisioners.RefOf(o)), "removal must find %s", o.GetKind())
			}

			np := objs[0].Object["spec"].(map[string]any)
			g.Expect(np["ingress"]).To(BeNil(), "the baseline admits nothing itself")
			g.Expect(np["policyTypes"]).To(Equal([]any{"Ingress"}))
			g.Expect(np["podSelector"]).To(Equal(map[string]any{"matchExpressions": []any{
				map[string]any{"key": "strata.dev/instance-id", "operator": "Exists"},
			}}), "every data pod and nothing else")
			if !c.meshed {
				return
			}
			pa := objs[1].Object["spec"].(map[string]any)
			g.Expect(pa).To(Equal(map[string]any{"mtls": map[string]any{"mode": "STRICT"}}), "namespace-wide: no selector")
			ap := objs[2].Object["spec"].(map[string]any)
			g.Expect(ap["action"]).To(Equal("ALLOW"))
			g.Expect(ap["selector"]).To(Equal(map[string]any{"matchLabels": map[string]any{"strata.dev/tenant": "team-a"}}))
			g.Expect(ap["rules"]).To(Equal([]any{
				map[string]any{"from": []any{map[string]any{"source": map[string]any{"namespaces": []any{"team-a", "openbao"}}}}},
				map[string]any{"to": []any{map[string]any{"operation": map[string]any{"ports": []any{"8000", "9187"}}}}},
			}))
		})
	}
}
