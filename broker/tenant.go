package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	// create is the namespace of a Cloud Foundry space seen for the first
	// time: Ensure creates it once every check of the request has passed,
	// so a refused request creates nothing.
	create *corev1.Namespace
}

// CFSpace is what a Cloud Foundry namespace template can use.
type CFSpace struct{ OrgGUID, OrgName, SpaceGUID, SpaceName string }

// The labels naming the Cloud Foundry org and space a namespace the broker
// created belongs to: a namespace claimed by one space is refused to
// every other.
const (
	LabelCFOrganization = "strata.dev/cf-organization-guid"
	LabelCFSpace        = "strata.dev/cf-space-guid"
)

// TenancyOptions configure which namespaces may be tenants.
type TenancyOptions struct {
	// CFNamespaceTemplate names a Cloud Foundry space's namespace.
	CFNamespaceTemplate string
	// Reserved maps the namespaces the platform itself runs in (the
	// broker's, the shared clusters', the operators') to why they are
	// reserved; kube-* and default are always reserved.
	Reserved map[string]string
	// Denied are more namespaces no tenant may use (tenancy.deniedNamespaces).
	Denied []string
	// AllowedSelector, when set, is a label selector a namespace the broker
	// did not create must match to be a tenant
	// (tenancy.allowedNamespaceSelector).
	AllowedSelector string
}

// Tenancy maps request contexts to namespaces.
type Tenancy struct {
	client   kubernetes.Interface
	template *template.Template
	reserved map[string]string
	allowed  labels.Selector
}

// NewTenancy parses the Cloud Foundry namespace template and the allow-list
// selector.
func NewTenancy(client kubernetes.Interface, o TenancyOptions) (*Tenancy, error) {
	if o.CFNamespaceTemplate == "" {
		o.CFNamespaceTemplate = DefaultCFNamespaceTemplate
	}
	t, err := template.New("namespace").Option("missingkey=error").Parse(o.CFNamespaceTemplate)
	if err != nil {
		return nil, fmt.Errorf("tenancy.cloudFoundryNamespaceTemplate: %w", err)
	}
	ten := &Tenancy{client: client, template: t, reserved: map[string]string{"default": "the cluster's default namespace"}}
	for ns, why := range o.Reserved {
		if ns != "" {
			ten.reserved[ns] = why
		}
	}
	for _, ns := range o.Denied {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("tenancy.deniedNamespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
		ten.reserved[ns] = "denied by the broker's configuration (tenancy.deniedNamespaces)"
	}
	if o.AllowedSelector != "" {
		if ten.allowed, err = labels.Parse(o.AllowedSelector); err != nil {
			return nil, fmt.Errorf("tenancy.allowedNamespaceSelector: %w", err)
		}
	}
	return ten, nil
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

// Refusals are 400 Bad Request: the namespace is data of the request
// that the broker will not act on (OSB: 400 "MAY be returned if the
// request contains invalid data"); 422 is kept for what the spec names
// (AsyncRequired, MaintenanceInfoConflict, ConcurrencyError, the state of
// an instance), and nothing about the namespace changes on a retry.
func namespaceNotAllowed(field, ns, why string) error {
	return failure(http.StatusBadRequest, "NamespaceNotAllowed",
		fmt.Sprintf("%s %q cannot hold service instances: %s; use a namespace of your own", field, ns, why))
}

// refusal says why a namespace may not be a tenant, or "" if it may.
func (t *Tenancy) refusal(ns string) string {
	if strings.HasPrefix(ns, "kube-") {
		return "kube-* namespaces belong to Kubernetes itself"
	}
	return t.reserved[ns]
}

// selected applies the allow-list to a namespace the broker did not create.
func (t *Tenancy) selected(ns *corev1.Namespace) bool {
	return t.allowed == nil || t.allowed.Matches(labels.Set(ns.Labels))
}

// Resolve finds the tenant of a request without changing anything. A
// Kubernetes platform names the namespace, which must exist; a Cloud
// Foundry space maps to a namespace by the template, which Ensure creates
// on first use.
func (t *Tenancy) Resolve(ctx context.Context, raw json.RawMessage, orgGUID, spaceGUID string) (Tenant, error) {
	var rc requestContext
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rc); err != nil {
			return Tenant{}, badRequest("context must be a JSON object whose platform, namespace, organization_guid and space_guid are strings")
		}
	}
	switch {
	case rc.Platform == "kubernetes" || (rc.Platform == "" && rc.Namespace != ""):
		// The top-level organization_guid and space_guid mean nothing
		// here (Kubernetes platforms fill them with placeholders, e.g.
		// Crossplane's provider), so they are not checked.
		return t.resolveKubernetes(ctx, rc.Namespace)
	case rc.Platform == "cloudfoundry" || rc.Platform == "" && (orgGUID != "" || rc.OrganizationGUID != ""):
		space, err := cfSpace(rc, orgGUID, spaceGUID)
		if err != nil {
			return Tenant{}, err
		}
		return t.resolveCloudFoundry(ctx, space)
	default:
		return Tenant{}, badRequest(fmt.Sprintf("context.platform %s is not supported: send platform \"kubernetes\" with a namespace, or \"cloudfoundry\" with organization_guid and space_guid", brief(rc.Platform)))
	}
}

func (t *Tenancy) resolveKubernetes(ctx context.Context, name string) (Tenant, error) {
	if name == "" {
		return Tenant{}, badRequest("context.namespace is required for platform kubernetes: it names the tenant namespace the instance is created in")
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return Tenant{}, badRequest(fmt.Sprintf("context.namespace %s is not a namespace name: %s", brief(name), strings.Join(errs, "; ")))
	}
	if why := t.refusal(name); why != "" {
		return Tenant{}, namespaceNotAllowed("context.namespace", name, why)
	}
	ns, err := t.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Tenant{}, badRequest(fmt.Sprintf("context.namespace %q does not exist; create the namespace first", name))
	}
	if err != nil {
		return Tenant{}, internal(fmt.Sprintf("could not read namespace %s: %v", name, err))
	}
	if ns.DeletionTimestamp != nil {
		return Tenant{}, namespaceNotAllowed("context.namespace", name, "it is being deleted")
	}
	if !t.selected(ns) {
		return Tenant{}, namespaceNotAllowed("context.namespace", name, "its labels do not match the broker's tenancy.allowedNamespaceSelector")
	}
	return Tenant{Platform: "kubernetes", Namespace: name, Meshed: meshed(ns)}, nil
}

// guid is a Cloud Foundry GUID (Cloud Controller's are RFC 4122 UUIDs).
var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// cfSpace reads a Cloud Foundry request's org and space: both GUIDs,
// from the context or the (older) top-level fields, which must agree
// when both are sent. GUIDs are compared and used in lower case (RFC
// 4122: case does not matter).
func cfSpace(rc requestContext, orgGUID, spaceGUID string) (CFSpace, error) {
	pick := func(name, inContext, topLevel string) (string, error) {
		for _, f := range []struct{ field, value string }{{"context." + name, inContext}, {name, topLevel}} {
			if f.value != "" && !guid.MatchString(f.value) {
				return "", badRequest(fmt.Sprintf("%s %s is not a GUID (8-4-4-4-12 hexadecimal digits)", f.field, brief(f.value)))
			}
		}
		if inContext != "" && topLevel != "" && !strings.EqualFold(inContext, topLevel) {
			return "", badRequest(fmt.Sprintf("context.%s and %s differ; send the same GUID in both", name, name))
		}
		return strings.ToLower(first(inContext, topLevel)), nil
	}
	org, err := pick("organization_guid", rc.OrganizationGUID, orgGUID)
	if err != nil {
		return CFSpace{}, err
	}
	space, err := pick("space_guid", rc.SpaceGUID, spaceGUID)
	if err != nil {
		return CFSpace{}, err
	}
	if org == "" || space == "" {
		return CFSpace{}, badRequest("context.organization_guid and context.space_guid are required for platform cloudfoundry")
	}
	return CFSpace{OrgGUID: org, OrgName: rc.OrganizationName, SpaceGUID: space, SpaceName: rc.SpaceName}, nil
}

func (t *Tenancy) resolveCloudFoundry(ctx context.Context, space CFSpace) (Tenant, error) {
	name, err := t.cfNamespace(space)
	if err != nil {
		return Tenant{}, badRequest(err.Error())
	}
	const field = "the namespace of this Cloud Foundry space"
	if why := t.refusal(name); why != "" {
		return Tenant{}, namespaceNotAllowed(field, name, why+" (check tenancy.cloudFoundryNamespaceTemplate)")
	}
	ns, err := t.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Tenant{Platform: "cloudfoundry", Namespace: name, create: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				provisioners.LabelManagedBy: provisioners.ManagedByStrata,
				LabelCFOrganization:         space.OrgGUID,
				LabelCFSpace:                space.SpaceGUID,
			},
		}}}, nil
	}
	if err != nil {
		return Tenant{}, internal(fmt.Sprintf("could not read namespace %s: %v", name, err))
	}
	if err := checkClaim(ns, space); err != nil {
		return Tenant{}, err
	}
	if _, claimed := ns.Labels[LabelCFSpace]; !claimed && !t.selected(ns) {
		return Tenant{}, namespaceNotAllowed(field, name, "its labels do not match the broker's tenancy.allowedNamespaceSelector")
	}
	return Tenant{Platform: "cloudfoundry", Namespace: name, Meshed: meshed(ns)}, nil
}

// checkClaim refuses a namespace that belongs to another org or space.
func checkClaim(ns *corev1.Namespace, space CFSpace) error {
	org, hasOrg := ns.Labels[LabelCFOrganization]
	sp, hasSpace := ns.Labels[LabelCFSpace]
	if (hasOrg && !strings.EqualFold(org, space.OrgGUID)) || (hasSpace && !strings.EqualFold(sp, space.SpaceGUID)) {
		return failure(http.StatusBadRequest, "NamespaceClaimed", fmt.Sprintf(
			"namespace %q, which tenancy.cloudFoundryNamespaceTemplate gives space %s of organization %s, already belongs to another Cloud Foundry space; the template must give each space its own namespace (the default cf-{{.SpaceGUID}} does)",
			ns.Name, space.SpaceGUID, space.OrgGUID))
	}
	if ns.DeletionTimestamp != nil {
		return namespaceNotAllowed("the namespace of this Cloud Foundry space", ns.Name, "it is being deleted; retry once it is gone")
	}
	return nil
}

// Ensure creates the namespace of a Cloud Foundry space seen for the first
// time; call it once every check of the request has passed. Another
// replica may create it at the same moment: then its claim is checked.
func (t *Tenancy) Ensure(ctx context.Context, tenant Tenant) error {
	if tenant.create == nil {
		return nil
	}
	_, err := t.client.CoreV1().Namespaces().Create(ctx, tenant.create.DeepCopy(), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	ns, err := t.client.CoreV1().Namespaces().Get(ctx, tenant.Namespace, metav1.GetOptions{})
	if err != nil {
		return err
	}
	l := tenant.create.Labels
	return checkClaim(ns, CFSpace{OrgGUID: l[LabelCFOrganization], SpaceGUID: l[LabelCFSpace]})
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// cfNamespace renders the template and makes the result a namespace name,
// injectively: a rendering that is already a namespace name is used as
// it is; any other (upper case, other characters, too long, empty) is
// made one and suffixed with a hash of the whole rendering, so two
// different renderings never give one name (up to the hash; and a
// namespace claimed by another space is refused anyway). The default
// template renders "cf-" and a lower-case GUID, a name as it is.
func (t *Tenancy) cfNamespace(space CFSpace) (string, error) {
	var buf bytes.Buffer
	if err := t.template.Execute(&buf, space); err != nil {
		return "", fmt.Errorf("cloud foundry namespace template: %w", err)
	}
	return namespaceName(buf.String()), nil
}

func namespaceName(rendered string) string {
	if len(validation.IsDNS1123Label(rendered)) == 0 {
		return rendered
	}
	sum := sha256.Sum256([]byte(rendered))
	suffix := hex.EncodeToString(sum[:])[:10]
	base := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(rendered), "-"), "-")
	if len(base) > 52 {
		base = strings.Trim(base[:52], "-")
	}
	if base == "" {
		return "cf-" + suffix
	}
	return base + "-" + suffix
}

// brief quotes a value for an error description, cut short: a hostile
// request must not make the answer (or the log line) huge.
func brief(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
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

func validationErrors(name string) []string { return validation.IsDNS1123Label(name) }
