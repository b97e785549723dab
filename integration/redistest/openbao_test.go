package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	vault "github.com/hashicorp/vault/api"
	. "github.com/onsi/gomega"
	goredis "github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/baotest"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

// memKube is the Kubernetes I/O of the binder, in memory, turning a
// Secret's stringData into data as the API server does.
type memKube struct {
	objs map[provisioners.Ref]*unstructured.Unstructured
}

func (k *memKube) put(o *unstructured.Unstructured) {
	o = o.DeepCopy()
	if sd, ok := o.Object["stringData"].(map[string]any); ok {
		data := map[string]any{}
		for key, v := range sd {
			data[key] = base64.StdEncoding.EncodeToString([]byte(v.(string)))
		}
		o.Object["data"] = data
		delete(o.Object, "stringData")
	}
	k.objs[provisioners.RefOf(o)] = o
}

func (k *memKube) Apply(_ context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		k.put(o)
	}
	return nil
}

func (k *memKube) Create(_ context.Context, o *unstructured.Unstructured) (bool, error) {
	if _, ok := k.objs[provisioners.RefOf(o)]; ok {
		return false, nil
	}
	k.put(o)
	return true, nil
}

func (k *memKube) Get(_ context.Context, ref provisioners.Ref) (*unstructured.Unstructured, error) {
	if o, ok := k.objs[ref]; ok {
		return o.DeepCopy(), nil
	}
	return nil, nil
}

func (k *memKube) Update(_ context.Context, o *unstructured.Unstructured) error {
	k.put(o)
	return nil
}

func (k *memKube) Delete(_ context.Context, ref provisioners.Ref) error {
	delete(k.objs, ref)
	return nil
}

func (k *memKube) secretValue(t *testing.T, ns, name, key string) string {
	t.Helper()
	o := k.objs[provisioners.Ref{GVK: secretGVK, Namespace: ns, Name: name}]
	if o == nil {
		t.Fatalf("no Secret %s/%s", ns, name)
	}
	enc, _, _ := unstructured.NestedString(o.Object, "data", key)
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

var secretGVK = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

// openBaoWithBrokerPolicy starts OpenBao and returns a source that logs in
// with an AppRole holding only the broker's policy
// (binding/openbao-policy.hcl), so every KV call is checked against it.
func openBaoWithBrokerPolicy(t *testing.T) (*binding.OpenBaoSource, *vault.Client) {
	t.Helper()
	bao := baotest.Start(t)
	root := bao.Root(t)
	mounts, err := root.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts[binding.DefaultKVMount+"/"]; !ok {
		if err := root.Sys().Mount(binding.DefaultKVMount, &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.Sys().PutPolicy("strata-broker", binding.OpenBaoPolicy); err != nil {
		t.Fatalf("OpenBao refuses binding/openbao-policy.hcl: %v", err)
	}
	if err := root.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/strata-broker", map[string]any{"token_policies": []string{"strata-broker"}, "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/strata-broker/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/strata-broker/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ridFile, sidFile := filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	_ = os.WriteFile(ridFile, []byte(rid.Data["role_id"].(string)), 0o600)
	_ = os.WriteFile(sidFile, []byte(sid.Data["secret_id"].(string)), 0o600)
	src, err := binding.NewOpenBaoSource(binding.OpenBaoConfig{
		Address: bao.Addr, CACertFile: bao.CAFile, Namespace: "openbao", PostgresCAFile: "/unused/ca.crt",
		Auth: binding.OpenBaoAuth{Method: "approle", RoleIDFile: ridFile, SecretIDFile: sidFile},
	}, &memKube{objs: map[provisioners.Ref]*unstructured.Unstructured{}})
	if err != nil {
		t.Fatal(err)
	}
	return src, root
}

// KV under strata/ works with the broker's policy, and only there.
func TestOpenBaoKVWithTheBrokerPolicy(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	src, root := openBaoWithBrokerPolicy(t)
	path := "strata/team-a/rd-x"
	got, err := src.KVGet(ctx, "", path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(BeNil())
	g.Expect(src.KVPut(ctx, "", path, map[string]any{"password": "one"})).To(Succeed())
	g.Expect(src.KVPut(ctx, "secret", path, map[string]any{"password": "two"})).To(Succeed())
	got, err = src.KVGet(ctx, "", path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(map[string]any{"password": "two"}))
	g.Expect(src.KVDelete(ctx, "", path)).To(Succeed())
	// All versions are gone, not only the current one.
	meta, err := root.Logical().Read("secret/metadata/" + path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(meta).To(BeNil())
	g.Expect(src.KVDelete(ctx, "", path)).To(Succeed(), "deleting what is gone succeeds")
	// Nothing outside strata/.
	g.Expect(src.KVPut(ctx, "", "other/team", map[string]any{"x": "y"})).To(MatchError(ContainSubstring("permission denied")))
	_, err = src.KVGet(ctx, "", "other/team")
	g.Expect(err).To(MatchError(ContainSubstring("permission denied")))
}

// The whole credential path on real components: Prepare puts the password
// in the auth Secret and OpenBao; a real redis-server runs with the
// rendered command and that password (as the operator would configure it);
// Bind reads the password back from OpenBao; a client using only the
// binding's password and ca.crt gets in over TLS; Teardown removes the
// password from OpenBao.
func TestRedisBindingCredentialsWork(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	src, root := openBaoWithBrokerPolicy(t)
	k := &memKube{objs: map[provisioners.Ref]*unstructured.Unstructured{}}
	b := &binding.RedisBinder{Kube: k, KV: src}
	svc := catalog.RedisService()
	inst := provisioners.Instance{
		ID: "4b8c2d1e-7f6a-4e5d-9c8b-3a2f1e0d9c8b", Name: "rd-4b8c2d1e-7f6a-4e5d-9c8b-3a2f1e0d9c8b",
		Namespace: "team-b", Service: &svc, Plan: svc.PlanByName("standard"),
	}
	g.Expect(b.Prepare(ctx, inst)).To(Succeed())
	n := rd.NamesOf(inst)
	pw := k.secretValue(t, inst.Namespace, n.AuthSecret, rd.PasswordKey)
	kv, err := root.Logical().Read("secret/data/" + binding.KVPath(inst))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kv.Data["data"]).To(HaveKeyWithValue("password", pw))

	cfg := rd.DefaultConfig()
	cfg.ServerCertificates.IssuerName = "test-ca"
	objs, err := (&rd.Provisioner{Config: cfg}).Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	var rf *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "RedisFailover" {
			rf = o
		}
	}
	dir := t.TempDir()
	certs := NewCerts(t, filepath.Join(dir, "tls"))
	s := StartServer(t, ServerOptions{Command: CommandOf(t, rf), Certs: certs, Password: pw, Dir: filepath.Join(dir, "pod-0")})
	// cert-manager's Secret, with the CA that signed the server certificate.
	k.put(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": n.Certificate, "namespace": inst.Namespace},
		"stringData": map[string]any{"ca.crt": string(certs.CAPEM)},
	}})

	r, err := b.Bind(ctx, inst, "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", nil)
	g.Expect(err).NotTo(HaveOccurred())
	creds := r.Credentials
	g.Expect(creds["port"]).To(Equal(fmt.Sprint(rd.TLSPort)))
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM([]byte(creds["ca.crt"].(string)))).To(BeTrue())
	// The harness's certificate is for localhost; in a cluster it is for
	// the TLS Service's names, which the binding's host is one of.
	c := goredis.NewClient(&goredis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", s.TLSPort), Password: creds["password"].(string),
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
	})
	defer c.Close()
	g.Expect(c.Set(ctx, "bound", "yes", 0).Err()).To(Succeed())
	g.Expect(c.Get(ctx, "bound").Val()).To(Equal("yes"))

	g.Expect(b.Unbind(ctx, inst, r)).To(Succeed())
	g.Expect(b.Teardown(ctx, inst)).To(Succeed())
	kv, err = root.Logical().Read("secret/data/" + binding.KVPath(inst))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kv).To(BeNil())
}
