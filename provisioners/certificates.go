package provisioners

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// CertificatesConfig names the cert-manager issuer of the server
// certificates of every engine.
type CertificatesConfig struct {
	IssuerName string `json:"issuerName"`
	// IssuerKind is ClusterIssuer (the default) or Issuer.
	IssuerKind  string `json:"issuerKind"`
	IssuerGroup string `json:"issuerGroup"`
}

// IssuerRef is the cert-manager issuerRef of the configured issuer, with
// the defaults filled in.
func (c CertificatesConfig) IssuerRef() map[string]any {
	kind, group := c.IssuerKind, c.IssuerGroup
	if kind == "" {
		kind = "ClusterIssuer"
	}
	if group == "" {
		group = "cert-manager.io"
	}
	return map[string]any{"name": c.IssuerName, "kind": kind, "group": group}
}

// ServerCertificate is a cert-manager Certificate of a server certificate
// for dnsNames, written to the Secret of the same name (tls.crt, tls.key,
// ca.crt): 90 days, renewed 15 days before expiry, a new ECDSA P-256 key at
// every renewal. secretLabels go on the Secret (nil for none).
func ServerCertificate(inst Instance, c CertificatesConfig, name, commonName string, dnsNames []any, secretLabels map[string]any) *unstructured.Unstructured {
	spec := map[string]any{
		"secretName":  name,
		"commonName":  commonName,
		"dnsNames":    dnsNames,
		"usages":      []any{"server auth"},
		"duration":    "2160h",
		"renewBefore": "360h",
		"privateKey":  map[string]any{"algorithm": "ECDSA", "size": int64(256), "rotationPolicy": "Always"},
		"issuerRef":   c.IssuerRef(),
	}
	if secretLabels != nil {
		spec["secretTemplate"] = map[string]any{"labels": secretLabels}
	}
	return NewObject(inst, "cert-manager.io/v1", "Certificate", name, spec)
}

// CertificateWait describes an instance waiting for its Certificate (nil
// when cert-manager has not seen it yet), naming what must exist for it
// to be issued: cert-manager itself and the configured issuer. A missing
// issuer or a stopped cert-manager looks the same from the Certificate's
// side (not Ready), so the description says what to check, and repeats
// cert-manager's own message when it has one.
func CertificateWait(cert *unstructured.Unstructured, name string, c CertificatesConfig) string {
	ref := c.IssuerRef()
	d := fmt.Sprintf("waiting for cert-manager to issue the TLS certificate %s from %s %s", name, ref["kind"], ref["name"])
	if msg := conditionMessage(cert, "Ready"); msg != "" {
		d += " (cert-manager: " + msg + ")"
	}
	kind := "clusterissuer"
	if ref["kind"] == "Issuer" {
		kind = "issuer -n <namespace>"
	}
	return d + fmt.Sprintf("; if it lasts, check that cert-manager runs and that `kubectl get %s %s` shows it Ready (docs/install.md)", kind, ref["name"])
}

func conditionMessage(o *unstructured.Unstructured, condType string) string {
	if o == nil {
		return ""
	}
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == condType {
			msg, _ := m["message"].(string)
			return msg
		}
	}
	return ""
}
