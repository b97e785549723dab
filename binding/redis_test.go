package binding

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/testkube"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/redis"
)

// newRedisKube is memKube whose Apply replaces the object, status and all.
func newRedisKube() *memKube {
	k := testkube.New(false)
	return &memKube{Kube: k, objs: k.Objs}
}

type memKV map[string]map[string]any

func (m memKV) KVPut(_ context.Context, mount, path string, data map[string]any) error {
	m[kvMount(mount)+"/"+path] = data
	return nil
}

func (m memKV) KVGet(_ context.Context, mount, path string) (map[string]any, error) {
	return m[kvMount(mount)+"/"+path], nil
}

func (m memKV) KVDelete(_ context.Context, mount, path string) error {
	delete(m, kvMount(mount)+"/"+path)
	return nil
}

const redisTestCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func redisInstance(t *testing.T) provisioners.Instance {
	t.Helper()
	svc := catalog.RedisService()
	return provisioners.Instance{
		ID: "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", Name: "rd-9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
		Namespace: "team-cache", Service: &svc, Plan: svc.PlanByName("standard"),
	}
}

func secretRef(inst provisioners.Instance, name string) provisioners.Ref {
	return provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: name}
}

// issueCert stands in for cert-manager: the Certificate's Secret with ca.crt.
func issueCert(k *memKube, inst provisioners.Instance) {
	k.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": redis.NamesOf(inst).Certificate, "namespace": inst.Namespace},
		"stringData": map[string]any{"ca.crt": redisTestCA, "tls.crt": "x", "tls.key": "y"},
	}})
}

func TestRedisSecretKeys(t *testing.T) {
	g := NewWithT(t)
	s := RedisSecret(RedisConn{SecretName: "binding-b1", Host: "rd-x-tls.team.svc", Port: 6380, Password: "p@ss/w:rd", CAPEM: redisTestCA})
	g.Expect(s).To(Equal(map[string]string{
		"type": "redis", "provider": "strata", "host": "rd-x-tls.team.svc", "port": "6380",
		"password": "p@ss/w:rd", "ssl": "true", "ca.crt": redisTestCA,
		"uri":                               "rediss://default:p%40ss%2Fw%3Ard@rd-x-tls.team.svc:6380",
		"spring.data.redis.host":            "rd-x-tls.team.svc",
		"spring.data.redis.port":            "6380",
		"spring.data.redis.password":        "p@ss/w:rd",
		"spring.data.redis.ssl.enabled":     "true",
		"spring.data.redis.ssl.bundle":      "binding-b1",
		"spring.data.redis.timeout":         "5s",
		"spring.data.redis.connect-timeout": "5s",
		"spring.ssl.bundle.pem.binding-b1.truststore.certificate": redisTestCA,
	}))
	for k := range s {
		g.Expect(k).NotTo(ContainSubstring("sentinel"), "Sentinel discovery would lead TLS clients to the plaintext port")
	}
}

func TestRedisBinderLifecycle(t *testing.T) {
	for _, withBao := range []bool{false, true} {
		name := "secret only"
		if withBao {
			name = "with OpenBao KV"
		}
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			k := newRedisKube()
			kv := memKV{}
			b := &RedisBinder{Kube: k}
			if withBao {
				b.KV = kv
			}
			inst := redisInstance(t)
			auth := secretRef(inst, redis.NamesOf(inst).AuthSecret)

			// Before Prepare there is nothing to bind to.
			_, err := b.Bind(ctx, inst, "b-1", nil)
			var nr *NotReadyError
			g.Expect(err).To(BeAssignableToTypeOf(nr))

			g.Expect(b.Prepare(ctx, inst)).To(Succeed())
			pw := secretValue(k.objs[auth], redis.PasswordKey)
			g.Expect(len(pw)).To(BeNumerically(">=", 40))
			// Prepare again keeps the first password, in the Secret and in KV.
			g.Expect(b.Prepare(ctx, inst)).To(Succeed())
			g.Expect(secretValue(k.objs[auth], redis.PasswordKey)).To(Equal(pw))
			if withBao {
				g.Expect(kv["secret/strata/team-cache/"+inst.Name]).To(Equal(map[string]any{"password": pw}))
			}
			g.Expect(b.Configure(ctx, inst)).To(Succeed())

			// No CA yet: not ready.
			_, err = b.Bind(ctx, inst, "b-1", nil)
			g.Expect(err).To(BeAssignableToTypeOf(nr))
			issueCert(k, inst)

			r, err := b.Bind(ctx, inst, "b-1", nil)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.SecretName).To(Equal(SecretName("b-1")))
			g.Expect(r.Credentials).To(HaveKeyWithValue("password", pw))
			g.Expect(r.Credentials).To(HaveKeyWithValue("host", redis.NamesOf(inst).TLSService+".team-cache.svc"))
			g.Expect(r.Credentials).To(HaveKeyWithValue("ca.crt", redisTestCA))
			sec := k.objs[secretRef(inst, r.SecretName)]
			g.Expect(sec).NotTo(BeNil())
			g.Expect(sec.Object["type"]).To(Equal("servicebinding.io/redis"))
			g.Expect(sec.GetLabels()).To(HaveKeyWithValue(provisioners.LabelBindingID, "b-1"))
			g.Expect(sec.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, inst.ID))
			g.Expect(secretValue(sec, "spring.data.redis.password")).To(Equal(pw))

			p, err := b.Ready(ctx, inst, r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.State).To(Equal(provisioners.Succeeded))

			g.Expect(b.Unbind(ctx, inst, r)).To(Succeed())
			g.Expect(k.objs).NotTo(HaveKey(secretRef(inst, r.SecretName)))
			g.Expect(b.Unbind(ctx, inst, r)).To(Succeed(), "idempotent")
			g.Expect(k.objs).To(HaveKey(auth), "unbind keeps the instance's password")

			g.Expect(b.Teardown(ctx, inst)).To(Succeed())
			g.Expect(k.objs).NotTo(HaveKey(auth))
			g.Expect(kv).To(BeEmpty())
			g.Expect(b.Teardown(ctx, inst)).To(Succeed(), "idempotent")
		})
	}
}

// With OpenBao, the password bindings get is OpenBao's.
func TestRedisBinderReadsThePasswordFromOpenBao(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	k, kv := newRedisKube(), memKV{}
	b := &RedisBinder{Kube: k, KV: kv, KVMount: "/kv/"}
	inst := redisInstance(t)
	g.Expect(b.Prepare(ctx, inst)).To(Succeed())
	issueCert(k, inst)
	g.Expect(kv).To(HaveKey("kv/" + KVPath(inst)))
	kv["kv/"+KVPath(inst)] = map[string]any{"password": "from-openbao"}
	r, err := b.Bind(ctx, inst, "b-2", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.Credentials["password"]).To(Equal("from-openbao"))
	g.Expect(strings.HasPrefix(r.Credentials["uri"].(string), "rediss://")).To(BeTrue())
}
