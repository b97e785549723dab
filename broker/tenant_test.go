package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	orgA   = "6f1c0d6e-2a1b-4c3d-9e8f-0a1b2c3d4e5f"
	spaceA = "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	orgB   = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	spaceB = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f"
)

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func testTenancy(t *testing.T, o TenancyOptions, objs ...*corev1.Namespace) (*Tenancy, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	for _, ns := range objs {
		if _, err := client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if o.Reserved == nil {
		o.Reserved = map[string]string{"strata-system": "it is the broker's own namespace", "kafka": "it holds the shared Kafka cluster"}
	}
	ten, err := NewTenancy(client, o)
	if err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	return ten, client
}

func k8sContext(ns string) json.RawMessage {
	raw, _ := json.Marshal(map[string]any{"platform": "kubernetes", "namespace": ns})
	return raw
}

func cfContext(org, space string) json.RawMessage {
	raw, _ := json.Marshal(map[string]any{"platform": "cloudfoundry", "organization_guid": org, "space_guid": space})
	return raw
}

// failureOf is the status, error code and description a refusal answers.
func failureOf(g Gomega, err error) (int, string, string) {
	var fr *apiresponses.FailureResponse
	g.Expect(errors.As(err, &fr)).To(BeTrue(), "%T %v is an OSB failure", err, err)
	return fr.ValidatedStatusCode(nil), fr.ErrorResponse().(apiresponses.ErrorResponse).Error, fr.ErrorResponse().(apiresponses.ErrorResponse).Description
}

func TestTenancyRefusesReservedNamespaces(t *testing.T) {
	existing := []*corev1.Namespace{
		namespace("kube-system", nil), namespace("kube-public", nil), namespace("default", nil),
		namespace("strata-system", nil), namespace("kafka", nil), namespace("secrets", nil),
		namespace("team-a", map[string]string{"strata.dev/tenant": "true"}), namespace("team-x", nil),
	}
	tests := []struct {
		name, ns, selector, code, mention string
	}{
		{"kube-system", "kube-system", "", "NamespaceNotAllowed", "kube-*"},
		{"kube-public", "kube-public", "", "NamespaceNotAllowed", "kube-*"},
		{"kube-anything, even missing", "kube-whatever", "", "NamespaceNotAllowed", "kube-*"},
		{"default", "default", "", "NamespaceNotAllowed", "default namespace"},
		{"the broker's own", "strata-system", "", "NamespaceNotAllowed", "broker's own"},
		{"the shared Kafka namespace", "kafka", "", "NamespaceNotAllowed", "shared Kafka"},
		{"configured deny list", "secrets", "", "NamespaceNotAllowed", "tenancy.deniedNamespaces"},
		{"not selected by the allow-list", "team-x", "strata.dev/tenant=true", "NamespaceNotAllowed", "allowedNamespaceSelector"},
		{"missing namespace", "team-missing", "", "BadRequest", "does not exist"},
		{"not a namespace name", "Team_A", "", "BadRequest", "not a namespace name"},
		{"selected by the allow-list", "team-a", "strata.dev/tenant=true", "", ""},
		{"an ordinary namespace", "team-x", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ten, client := testTenancy(t, TenancyOptions{Denied: []string{"secrets"}, AllowedSelector: tc.selector}, existing...)
			tenant, err := ten.Resolve(context.Background(), k8sContext(tc.ns), "", "")
			if tc.code == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(tenant.Namespace).To(Equal(tc.ns))
				return
			}
			status, code, desc := failureOf(g, err)
			g.Expect(status).To(Equal(http.StatusBadRequest))
			g.Expect(code).To(Equal(tc.code))
			g.Expect(desc).To(ContainSubstring("context.namespace"))
			g.Expect(desc).To(ContainSubstring(tc.ns))
			g.Expect(desc).To(ContainSubstring(tc.mention))
			g.Expect(client.Actions()).NotTo(ContainElement(HaveField("Verb", "create")), "a refusal creates nothing")
		})
	}
}

func TestTenancyCloudFoundry(t *testing.T) {
	claimed := namespace("cf-"+spaceB, map[string]string{LabelCFOrganization: orgB, LabelCFSpace: spaceB})
	tests := []struct {
		name             string
		template         string
		context          json.RawMessage
		topOrg, topSpace string
		code, mention    string
		namespace        string
	}{
		{name: "context GUIDs", context: cfContext(orgA, spaceA), namespace: "cf-" + spaceA},
		{name: "top-level GUIDs only", topOrg: orgA, topSpace: spaceA, namespace: "cf-" + spaceA},
		{name: "upper-case GUIDs are the same space", context: cfContext(orgA, "0B9A8C7D-6E5F-4A3B-8C2D-1E0F9A8B7C6D"), namespace: "cf-" + spaceA},
		{name: "space of the claimed namespace itself", context: cfContext(orgB, spaceB), namespace: "cf-" + spaceB},
		{name: "space GUID not a GUID", context: cfContext(orgA, "-"), code: "BadRequest", mention: "context.space_guid"},
		{name: "org GUID not a GUID", context: cfContext("o", spaceA), code: "BadRequest", mention: "context.organization_guid"},
		{name: "top-level space GUID not a GUID", context: cfContext(orgA, spaceA), topOrg: orgA, topSpace: "__", code: "BadRequest", mention: "space_guid"},
		{name: "context and top level disagree", context: cfContext(orgA, spaceA), topOrg: orgB, topSpace: spaceA, code: "BadRequest", mention: "differ"},
		{name: "missing space", context: json.RawMessage(`{"platform":"cloudfoundry","organization_guid":"` + orgA + `"}`), code: "BadRequest", mention: "space_guid"},
		{name: "template by name lands in a reserved namespace", template: "{{.SpaceName}}",
			context: json.RawMessage(`{"platform":"cloudfoundry","organization_guid":"` + orgA + `","space_guid":"` + spaceA + `","space_name":"kube-system"}`),
			code:    "NamespaceNotAllowed", mention: "kube-system"},
		{name: "namespace claimed by another space", template: "cf-" + spaceB, context: cfContext(orgA, spaceA),
			code: "NamespaceClaimed", mention: "another Cloud Foundry space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ten, client := testTenancy(t, TenancyOptions{CFNamespaceTemplate: tc.template}, claimed.DeepCopy())
			tenant, err := ten.Resolve(context.Background(), tc.context, tc.topOrg, tc.topSpace)
			g.Expect(client.Actions()).NotTo(ContainElement(HaveField("Verb", "create")), "Resolve creates nothing")
			if tc.code != "" {
				status, code, desc := failureOf(g, err)
				g.Expect(status).To(Equal(http.StatusBadRequest))
				g.Expect(code).To(Equal(tc.code))
				g.Expect(desc).To(ContainSubstring(tc.mention))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tenant.Namespace).To(Equal(tc.namespace))
			g.Expect(ten.Ensure(context.Background(), tenant)).To(Succeed())
			ns, err := client.CoreV1().Namespaces().Get(context.Background(), tc.namespace, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred(), "Ensure creates the namespace")
			g.Expect(ns.Labels).To(HaveKey(LabelCFSpace))
		})
	}
}

// TestTenancyEnsureRace: a namespace another space created between Resolve
// and Ensure is refused.
func TestTenancyEnsureRace(t *testing.T) {
	g := NewWithT(t)
	ten, client := testTenancy(t, TenancyOptions{CFNamespaceTemplate: "cf-shared"})
	tenant, err := ten.Resolve(context.Background(), cfContext(orgA, spaceA), "", "")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.CoreV1().Namespaces().Create(context.Background(),
		namespace("cf-shared", map[string]string{LabelCFOrganization: orgB, LabelCFSpace: spaceB}), metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, code, _ := failureOf(g, ten.Ensure(context.Background(), tenant))
	g.Expect(code).To(Equal("NamespaceClaimed"))
}

// TestCFNamespaceNamesAreInjective: different renderings never share a
// name; the pairs (org "o" + space "-", org "other-org" + space
// "__") both became "cf".
func TestCFNamespaceNamesAreInjective(t *testing.T) {
	g := NewWithT(t)
	renderings := []string{"cf--", "cf-__", "cf", "cf-", "CF", "cf-a-b-c", "cf-a_b-c", "cf-a-b_c", "", "-",
		"cf-" + spaceA, "cf-" + spaceA + "-with-a-long-space-name-that-goes-past-sixty-three",
		"cf-" + spaceA + "-with-a-long-space-name-that-goes-past-sixty-three!"}
	seen := map[string]string{}
	for _, r := range renderings {
		name := namespaceName(r)
		g.Expect(validationErrors(name)).To(BeEmpty(), "%q gives a namespace name", r)
		g.Expect(seen).NotTo(HaveKey(name), "%q and %q give one name", r, seen[name])
		seen[name] = r
	}
	g.Expect(namespaceName("cf-"+spaceA)).To(Equal("cf-"+spaceA), "a valid rendering is kept as it is")
}

func TestNewTenancyRefusesBadConfiguration(t *testing.T) {
	g := NewWithT(t)
	_, err := NewTenancy(fake.NewClientset(), TenancyOptions{Denied: []string{"Not A Name"}})
	g.Expect(err).To(MatchError(ContainSubstring("tenancy.deniedNamespaces")))
	_, err = NewTenancy(fake.NewClientset(), TenancyOptions{AllowedSelector: "a in (b"})
	g.Expect(err).To(MatchError(ContainSubstring("tenancy.allowedNamespaceSelector")))
}

func TestReservedNamespacesOfTheConfiguration(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig(nil)
	g.Expect(err).NotTo(HaveOccurred())
	r := reservedNamespaces(Options{Namespace: "strata-system", Postgres: cfg.Postgres, Redis: cfg.Redis, Kafka: cfg.Kafka})
	g.Expect(r).To(HaveKey("strata-system"))
	g.Expect(r).To(HaveKey(cfg.Kafka.Shared.Namespace))
	g.Expect(r).To(HaveKey(cfg.Postgres.Shared.Namespace))
	g.Expect(r).To(HaveKey(cfg.Postgres.OperatorNamespace))
	g.Expect(r).To(HaveKey(cfg.Redis.OperatorNamespace))
}
