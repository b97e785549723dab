package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// The instance page (docs/instance-page.md): each instance's
// dashboard_url is a capability URL,
//
//	<externalURL>/instances/<instance id>/page/<token>
//
// whose token is 256 random bits minted at provision and kept in the
// instance's record Secret. The platform shows dashboard_url to whoever
// may see the instance (a Cloud Foundry space's developers, those who may
// read the Kubernetes ServiceInstance), so the URL is exactly as secret as
// the platform's view of the instance: no tenant ever needs, or gets, the
// platform's basic-auth credentials. The token opens only the page of the
// instance whose record holds it, and an unknown instance, a missing
// token and a wrong one all answer the same 404, so the page tells
// nothing about which instances exist.

// InstancePage configures the page.
type InstancePage struct {
	// ExternalURL is the broker's address as browsers reach it; every
	// dashboard_url starts with it.
	ExternalURL *url.URL
	// Prometheus is nil when none is configured.
	Prometheus *Prometheus
}

// pageTokenBytes is the token's entropy: guessing is hopeless, so there
// is nothing to rate-limit.
const pageTokenBytes = 32

func newPageToken() string {
	b := make([]byte, pageTokenBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageURL is the instance's dashboard_url, minting its token on first use.
func (p *InstancePage) pageURL(r *InstanceRecord) string {
	if r.PageToken == "" {
		r.PageToken = newPageToken()
	}
	return p.ExternalURL.JoinPath("instances", r.ID, "page", r.PageToken).String()
}

// pagePath is the route of the page.
const pagePath = "/instances/{instance_id}/page/{token}"

// errNoPage is every refusal: unknown, deleted or tokenless instance,
// missing or wrong token.
var errNoPage = errors.New("no such page")

// pageCSS is the page's only style, inline: the page loads nothing else.
const pageCSS = `body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2937;background:#f8fafc}
header{background:#0f172a;color:#f8fafc;padding:16px 24px}header h1{margin:0;font-size:22px}
.plan{font-weight:400;color:#93c5fd}.sub{margin:4px 0 8px;color:#cbd5e1}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;padding:16px 24px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:12px 16px}
h2{font-size:16px;margin:0 0 8px}h3{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px 3px 0;vertical-align:top;border-bottom:1px solid #f1f5f9}
th{color:#475569;font-weight:600;white-space:nowrap}code,pre{font:12px ui-monospace,monospace}pre{background:#f1f5f9;padding:8px;overflow-x:auto}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
.ok{background:#dcfce7;color:#166534}.busy{background:#fef9c3;color:#854d0e}.bad{background:#fee2e2;color:#991b1b}
.bad-text{color:#b91c1c}.muted{color:#64748b}.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}
figcaption{font-size:12px;color:#475569}footer{padding:8px 24px}`

//go:embed page.html.tmpl
var pageTemplateText string

var pageTemplate = template.Must(template.New("page").Parse(
	strings.Replace(pageTemplateText, "<style>{{/* the CSS is inserted here when the template is parsed */}}</style>", "<style>"+pageCSS+"</style>", 1)))

// pageCSP allows nothing but the page's own style element (by its hash):
// no script, no image, no font, no frame, no form, no fetch.
var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// pageTimeout bounds the reads of one page (API server and Prometheus).
const pageTimeout = 20 * time.Second

// servePage answers the page route. Its log line names the instance,
// never the path (which holds the token).
func (b *Broker) servePage(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	vars := mux.Vars(req)
	ctx, cancel := context.WithTimeout(req.Context(), pageTimeout)
	defer cancel()
	v, err := b.instancePage(ctx, vars["instance_id"], vars["token"])
	status := writePage(w, v, err)
	level := zap.InfoLevel
	if status >= http.StatusInternalServerError {
		level = zap.ErrorLevel
	}
	fields := []zap.Field{zap.String("instance_id", clip(vars["instance_id"])), zap.Int("status", status), zap.Duration("duration", time.Since(start))}
	if err != nil && !errors.Is(err, errNoPage) {
		fields = append(fields, zap.Error(err))
	}
	b.Log.Log(level, "instance page", fields...)
}

// writePage renders the page or maps the error: the one place errors
// become statuses.
func writePage(w http.ResponseWriter, v pageView, err error) int {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
	status := http.StatusOK
	var body bytes.Buffer
	switch {
	case errors.Is(err, errNoPage):
		status = http.StatusNotFound
		body.WriteString("<!DOCTYPE html><title>Not found</title><p>No such page. Open the instance's dashboard link from the platform again.</p>\n")
	case err != nil:
		status = http.StatusInternalServerError
		body.WriteString("<!DOCTYPE html><title>Unavailable</title><p>The instance page could not be built; try again shortly.</p>\n")
	default:
		if rerr := pageTemplate.Execute(&body, v); rerr != nil {
			status = http.StatusInternalServerError
			body.Reset()
			body.WriteString("<!DOCTYPE html><title>Unavailable</title><p>The instance page could not be rendered.</p>\n")
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
	return status
}

// tokenMatches compares digests in constant time, so neither the token's
// content nor its length leaks through timing.
func tokenMatches(want, got string) bool {
	if want == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// instancePage authenticates the request and reads what the page shows.
func (b *Broker) instancePage(ctx context.Context, id, token string) (pageView, error) {
	if b.Page == nil {
		return pageView{}, errNoPage
	}
	rec, err := b.Store.GetInstance(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return pageView{}, errNoPage
	case err != nil:
		return pageView{}, err
	}
	// The token is checked before anything else of the record is used.
	if !tokenMatches(rec.PageToken, token) || rec.Deleted {
		return pageView{}, errNoPage
	}
	svc, plan, err := b.Catalog.Find(rec.ServiceID, rec.PlanID)
	if err != nil {
		return pageView{}, err
	}
	in := pageInputs{Record: rec, Service: svc, Plan: plan, Now: b.now(), Objects: map[ObjectRef]*unstructured.Unstructured{}}
	if svc.Engine == catalog.EngineKafka {
		if eng, ok := b.Engines[catalog.EngineKafka]; ok {
			if kp, ok := eng.Provisioner.(*kafka.Provisioner); ok {
				inst := pageInstance(rec)
				inst.Plan = plan
				in.KafkaBootstrap = kp.TargetOf(inst).BootstrapServers
			}
		}
	}
	var refs []provisioners.Ref
	var shown []ObjectRef
	for _, o := range rec.Objects {
		switch o.Kind {
		case "ScheduledBackup", "ObjectStore", "Pooler":
			refs, shown = append(refs, o.Ref()), append(shown, o)
		}
	}
	if len(refs) > 0 {
		// Best effort, object by object: an object the broker may not
		// read (an ObjectStore without RBAC's get) leaves its part of the
		// page empty rather than failing it.
		for i, ref := range refs {
			o, err := b.Kube.Get(ctx, ref)
			if err != nil {
				b.logger(ctx).Warn("instance page: read an object", zap.String("kind", ref.GVK.Kind), zap.Error(err))
				continue
			}
			in.Objects[shown[i]] = o
		}
	}
	if svc.Engine == catalog.EnginePostgres && plan.Postgres != nil && plan.Postgres.Backup != nil {
		if l, ok := b.Kube.(objectLister); ok {
			backups, err := l.List(ctx, backupGVK, rec.Namespace)
			if err != nil {
				b.logger(ctx).Warn("instance page: list backups", zap.Error(err))
			}
			for _, o := range backups {
				// CloudNativePG's Backup names its cluster in spec.
				if c, _, _ := unstructured.NestedString(o.Object, "spec", "cluster", "name"); c == rec.Name {
					in.Backups = append(in.Backups, o)
				}
			}
		}
	}
	if in.Bindings, err = b.Store.BindingsOf(ctx, rec.ID); err != nil {
		return pageView{}, err
	}
	if p := b.Page.Prometheus; p != nil {
		in.Prometheus = p.readPrometheus(ctx, pageQueries(svc, plan, rec), in.Now)
	}
	return buildPage(in), nil
}

// objectLister lists a namespace's objects of a kind (provisioners.Kube).
type objectLister interface {
	List(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error)
}

var backupGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Backup"}
