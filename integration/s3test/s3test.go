// Package s3test runs a real S3 server for the tests: versitygw, the S3
// the platform runs (internal/platform/s3.go), at the same version, with
// its posix backend in a temporary directory, on a free loopback port.
// The binary is built once from its Go module into
// <repo>/.cache/bin/versitygw-v<Version> (or taken from $STRATA_VERSITYGW).
package s3test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strata-dev/strata/integration/kubeenv"
)

// Version is the platform's versitygw (platform.VersityGWVersion; a test
// keeps the two equal).
const Version = "1.8.0"

const module = "github.com/versity/versitygw"

// Region is the region versitygw signs for by default.
const Region = "us-east-1"

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// Binary returns versitygw: $STRATA_VERSITYGW, else the cached build,
// else it builds it (go mod download and go build of the pinned module;
// minutes the first time, then cached).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STRATA_VERSITYGW"); p != "" {
		return p
	}
	buildOnce.Do(func() { buildOnce.path, buildOnce.err = build() })
	if buildOnce.err != nil {
		t.Fatalf("versitygw %s (the tests' S3) is not installed and could not be built: %v\n"+
			"build it with: go mod download %s@v%s and, in that module's directory, go build -o <repo>/.cache/bin/versitygw-v%s ./cmd/versitygw (or set STRATA_VERSITYGW to a versitygw binary)",
			Version, buildOnce.err, module, Version, Version)
	}
	return buildOnce.path
}

func build() (string, error) {
	root, err := kubeenv.RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, ".cache", "bin", "versitygw-v"+Version)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@v"+Version)
	dl.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	dl.Dir = os.TempDir()
	raw, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@v%s: %w (%s)", module, Version, err, raw)
	}
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(raw, &info); jerr != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@v%s gave no directory: %s", module, Version, info.Error)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	// Built beside the target and renamed: parallel test packages never
	// run a half-written binary.
	tmp := out + ".tmp" + strconv.Itoa(os.Getpid())
	var stderr bytes.Buffer
	// The version flag as the platform's build sets it.
	b := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.Version=v"+Version, "-o", tmp, "./cmd/versitygw")
	b.Dir = info.Dir
	b.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	b.Stderr = &stderr
	if err := b.Run(); err != nil {
		return "", fmt.Errorf("go build %s/cmd/versitygw: %w: %s", module, err, stderr.String())
	}
	return out, os.Rename(tmp, out)
}

// Server is a running versitygw.
type Server struct {
	Endpoint                     string
	AccessKeyID, SecretAccessKey string
	Dir                          string
	// CAPEM is, for a server started with StartTLS, the certificate of the
	// throwaway CA that signed its certificate (for 127.0.0.1).
	CAPEM []byte
}

// Start runs versitygw over plain HTTP until the test ends.
func Start(t testing.TB) *Server { return start(t, false) }

// StartTLS runs versitygw over TLS, with a certificate for 127.0.0.1
// signed by a CA of its own (Server.CAPEM), as an S3-compatible store
// with a private CA serves.
func StartTLS(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Endpoint: "http://" + addr, AccessKeyID: "STRATATESTKEY", SecretAccessKey: "strata-test-secret-key", Dir: dir}
	args := []string{"--port", addr, "--health", "/health"}
	health := http.DefaultClient
	if withTLS {
		caPEM, certPEM, keyPEM, err := loopbackCert()
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--cert", certFile, "--key", keyFile)
		s.Endpoint, s.CAPEM = "https://"+addr, caPEM
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		health = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	log, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(args, "posix", data)...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKeyID, "ROOT_SECRET_ACCESS_KEY="+s.SecretAccessKey)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = log.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := health.Get(s.Endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
			t.Fatalf("versitygw on %s did not answer: %v\n%s", addr, err, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client is an S3 client of the server with its root keys (trusting its
// CA when it serves TLS).
func (s *Server) Client() *s3.Client {
	o := s3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
	}
	if s.CAPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.CAPEM)
		o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	return s3.New(o)
}

// loopbackCert makes a throwaway CA and a serving certificate for
// 127.0.0.1 signed by it.
func loopbackCert() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s3test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Env sets the AWS SDK's environment to the server's keys for the test.
func (s *Server) Env(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
}
