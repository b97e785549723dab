//go:build linux

package platform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// clientIdentity is a client certificate the platform issues.
type clientIdentity struct {
	file       string // pki/<file>.crt and .key
	user       string // certificate CN: the Kubernetes user
	groups     []string
	kubeconfig string // kubeconfig name, "" for none
	fromHost   bool   // the kubeconfig talks to the node address (from the host) rather than loopback
}

var clientIdentities = []clientIdentity{
	{file: "admin", user: AdminUser, groups: []string{"system:masters"}, kubeconfig: "admin"},
	{file: "admin", user: AdminUser, groups: []string{"system:masters"}, kubeconfig: "admin-host", fromHost: true},
	{file: "apiserver-kubelet-client", user: "kube-apiserver-kubelet-client", groups: []string{"system:masters"}},
	{file: "controller-manager", user: "system:kube-controller-manager", kubeconfig: "controller-manager"},
	{file: "scheduler", user: "system:kube-scheduler", kubeconfig: "scheduler"},
	{file: "kubelet", user: "system:node:" + NodeName, groups: []string{"system:nodes"}, kubeconfig: "kubelet"},
	{file: "kube-proxy", user: "system:kube-proxy", kubeconfig: "kube-proxy"},
}

// writePKI creates the cluster CA, the serving certificates of the API
// server and kubelet, every component's client certificate and kubeconfig
// and the service-account signing key. Existing files are kept, so a second
// Start reuses them (running components hold them).
func (p *Platform) writePKI() error {
	if fileExists(filepath.Join(p.pkiDir(), "done")) {
		return nil
	}
	if err := os.MkdirAll(p.pkiDir(), 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "strata-platform-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := p.writeKeyPair("ca", caDER, caKey); err != nil {
		return err
	}
	issue := func(file, cn string, orgs []string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) error {
		return p.issueCert(ca, caKey, file, cn, orgs, usage, dns, ips)
	}
	loopback := net.ParseIP("127.0.0.1")
	if err := issue("apiserver", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		[]net.IP{loopback, p.nodeIP, p.apiServiceIP}); err != nil {
		return err
	}
	if err := issue("kubelet-serving", "system:node:"+NodeName, []string{"system:nodes"}, x509.ExtKeyUsageServerAuth,
		[]string{NodeName, "localhost"}, []net.IP{loopback, p.nodeIP}); err != nil {
		return err
	}
	done := map[string]bool{}
	for _, id := range clientIdentities {
		if !done[id.file] {
			if err := issue(id.file, id.user, id.groups, x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
				return err
			}
			done[id.file] = true
		}
		if id.kubeconfig != "" {
			if err := p.writeKubeconfig(id); err != nil {
				return err
			}
		}
	}
	// The service accounts' token signing key.
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writePEMKey(filepath.Join(p.pkiDir(), "service-account.key"), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.pkiDir(), "service-account.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.pkiDir(), "done"), nil, 0o600)
}

// issueCert issues a certificate of the cluster CA into pki/<file>.crt
// and .key.
func (p *Platform) issueCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, file, cn string, orgs []string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return p.writeKeyPair(file, der, key)
}

func (p *Platform) pki(name string) string { return filepath.Join(p.pkiDir(), name) }

func (p *Platform) kubeconfigPath(name string) string {
	return filepath.Join(p.pkiDir(), name+".kubeconfig")
}

func (p *Platform) writeKubeconfig(id clientIdentity) error {
	server := fmt.Sprintf("https://127.0.0.1:%d", apiServerPort)
	if id.fromHost {
		server = fmt.Sprintf("https://%s:%d", p.nodeIP, apiServerPort)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["strata"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: p.pki("ca.crt")}
	cfg.AuthInfos[id.user] = &clientcmdapi.AuthInfo{
		ClientCertificate: p.pki(id.file + ".crt"),
		ClientKey:         p.pki(id.file + ".key"),
	}
	cfg.Contexts["strata"] = &clientcmdapi.Context{Cluster: "strata", AuthInfo: id.user}
	cfg.CurrentContext = "strata"
	return clientcmd.WriteToFile(*cfg, p.kubeconfigPath(id.kubeconfig))
}

func (p *Platform) writeKeyPair(name string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.WriteFile(p.pki(name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writePEMKey(p.pki(name+".key"), key)
}

func writePEMKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}
