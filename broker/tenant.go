package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/strata-dev/strata/provisioners"
)

// DefaultCFNamespaceTemplate names a Cloud Foundry space's namespace by the
// space GUID: unique and stable under renames. A template built from names
// ("cf-{{.OrgName}}-{{.SpaceName}}") is friendlier but two org/space pairs
// can map to one namespace ("a-b"/"c" and "a"/"b-c"), which would put two
// tenants together; choose it only where names are unique by policy.
const DefaultCFNamespaceTemplate = "cf-{{.SpaceGUID}}"

// Tenant is who an instance belongs to: a Kubernetes namespace.
type Tenant struct {
	Platform  string
	Namespace string
	Meshed    bool
}

// CFSpace is what a Cloud Foundry namespace template can use.
type CFSpace struct{ OrgGUID, OrgName, SpaceGUID, SpaceName string }

// Tenancy maps request contexts to namespaces.
type Tenancy struct {
	client   kubernetes.Interface
	template *template.Template
}

// NewTenancy parses the Cloud Foundry namespace template.
func NewTenancy(client kubernetes.Interface, cfTemplate string) (*Tenancy, error) {
	if cfTemplate == "" {
		cfTemplate = DefaultCFNamespaceTemplate
	}
	t, err := template.New("namespace").Option("missingkey=error").Parse(cfTemplate)
	if err != nil {
		return nil, fmt.Errorf("tenancy.cloudFoundryNamespaceTemplate: %w", err)
	}
	return &Tenancy{client: client, template: t}, nil
}

// requestContext accepts both spellings of the Kubernetes profile keys: the
// profile's (clusterid, instance_name) and Crossplane provider-osb's
// (clusterId, instanceName).
type requestContext struct {
	Platform         string `json:"platform"`
	Namespace        string `json:"namespace"`
	OrganizationGUID string `json:"organization_guid"`
	OrganizationName string `json:"organization_name"`
	SpaceGUID        string `json:"space_guid"`
	SpaceName        string `json:"space_name"`
}

// Resolve finds the tenant of a request. A Kubernetes platform names the
// namespace, which must exist; a Cloud Foundry space maps to a namespace by
// the template, which the broker creates on first use.
func (t *Tenancy) Resolve(ctx context.Context, raw json.RawMessage, orgGUID, spaceGUID string) (Tenant, error) {
	var rc requestContext
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rc); err != nil {
			return Tenant{}, badRequest("context: not a JSON object: " + err.Error())
		}
	}
	switch {
	case rc.Platform == "kubernetes" || (rc.Platform == "" && rc.Namespace != ""):
		if rc.Namespace == "" {
			return Tenant{}, badRequest("context.namespace is required for platform kubernetes: it names the tenant namespace the instance is created in")
		}
		if errs := validation.IsDNS1123Label(rc.Namespace); len(errs) > 0 {
			return Tenant{}, badRequest(fmt.Sprintf("context.namespace %q is not a namespace name: %s", rc.Namespace, strings.Join(errs, "; ")))
		}
		ns, err := t.client.CoreV1().Namespaces().Get(ctx, rc.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return Tenant{}, badRequest(fmt.Sprintf("context.namespace %q does not exist; create the namespace first", rc.Namespace))
		}
		if err != nil {
			return Tenant{}, fmt.Errorf("read namespace %s: %w", rc.Namespace, err)
		}
		return Tenant{Platform: "kubernetes", Namespace: rc.Namespace, Meshed: meshed(ns)}, nil
	case rc.Platform == "cloudfoundry" || rc.Platform == "" && (orgGUID != "" || rc.OrganizationGUID != ""):
		space := CFSpace{OrgGUID: first(rc.OrganizationGUID, orgGUID), OrgName: rc.OrganizationName,
			SpaceGUID: first(rc.SpaceGUID, spaceGUID), SpaceName: rc.SpaceName}
		if space.OrgGUID == "" || space.SpaceGUID == "" {
			return Tenant{}, badRequest("context.organization_guid and context.space_guid are required for platform cloudfoundry")
		}
		name, err := t.cfNamespace(space)
		if err != nil {
			return Tenant{}, badRequest(err.Error())
		}
		ns, err := t.ensureNamespace(ctx, name, space)
		if err != nil {
			return Tenant{}, err
		}
		return Tenant{Platform: "cloudfoundry", Namespace: name, Meshed: meshed(ns)}, nil
	default:
		return Tenant{}, badRequest(fmt.Sprintf("context.platform %q is not supported: send platform \"kubernetes\" with a namespace, or \"cloudfoundry\" with organization_guid and space_guid", rc.Platform))
	}
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// cfNamespace renders the template and makes the result a namespace name;
// a result too long is cut and suffixed with a hash of the whole, so it
// stays unique.
func (t *Tenancy) cfNamespace(space CFSpace) (string, error) {
	var buf bytes.Buffer
	if err := t.template.Execute(&buf, space); err != nil {
		return "", fmt.Errorf("cloud foundry namespace template: %w", err)
	}
	name := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(buf.String()), "-"), "-")
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(name))
		name = strings.Trim(name[:52], "-") + "-" + hex.EncodeToString(sum[:])[:10]
	}
	if name == "" {
		return "", fmt.Errorf("the cloud foundry namespace template gave an empty name for org %s space %s", space.OrgGUID, space.SpaceGUID)
	}
	return name, nil
}

func (t *Tenancy) ensureNamespace(ctx context.Context, name string, space CFSpace) (*corev1.Namespace, error) {
	ns, err := t.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return ns, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read namespace %s: %w", name, err)
	}
	ns, err = t.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			provisioners.LabelManagedBy:       provisioners.ManagedByStrata,
			"strata.dev/cf-organization-guid": provisioners.LabelValue(space.OrgGUID),
			"strata.dev/cf-space-guid":        provisioners.LabelValue(space.SpaceGUID),
		},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return t.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	return ns, err
}

// meshed says whether pods of the namespace join an Istio mesh, with
// sidecars (injection label or revision) or in ambient mode.
func meshed(ns *corev1.Namespace) bool {
	l := ns.Labels
	return l["istio-injection"] == "enabled" || l["istio.io/rev"] != "" || l["istio.io/dataplane-mode"] == "ambient"
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
