package provisioners

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
