package binding

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/redis"
)

// KVStore keeps per-instance secrets (OpenBaoSource has it, on OpenBao's
// KV version 2 engine).
type KVStore interface {
	KVPut(ctx context.Context, mount, path string, data map[string]any) error
	KVGet(ctx context.Context, mount, path string) (map[string]any, error)
	KVDelete(ctx context.Context, mount, path string) error
}

var _ KVStore = (*OpenBaoSource)(nil)

// RedisBinder binds Redis instances. An instance has one password (the
// redis-operator supports no other users): Prepare generates it once into
// the auth Secret the RedisFailover names and, with OpenBao, into KV,
// where bindings read it. Every binding of an instance gets the same
// password; unbinding deletes only the binding Secret.
type RedisBinder struct {
	Kube Kube
	// KV is OpenBao's KV engine; nil when OpenBao is not configured (the
	// password is then read from the auth Secret).
	KV KVStore
	// KVMount is the KV v2 mount; empty means DefaultKVMount.
	KVMount string
}

var _ Binder = (*RedisBinder)(nil)

// Prepare creates the auth Secret with a random password once (a repeated
// Prepare keeps the first password) and stores the password in OpenBao.
func (b *RedisBinder) Prepare(ctx context.Context, inst provisioners.Instance) error {
	pw := newPassword()
	created, err := b.Kube.Create(ctx, redis.AuthSecret(inst, pw))
	if err != nil {
		return fmt.Errorf("create the Redis auth Secret: %w", err)
	}
	if !created {
		if pw, err = b.secretPassword(ctx, inst); err != nil {
			return err
		}
	}
	if b.KV != nil {
		return b.KV.KVPut(ctx, b.KVMount, KVPath(inst), map[string]any{redis.PasswordKey: pw})
	}
	return nil
}

// Configure has nothing to do: the operator applies the password.
func (b *RedisBinder) Configure(context.Context, provisioners.Instance) error { return nil }

// Teardown deletes the password from OpenBao and the auth Secret.
func (b *RedisBinder) Teardown(ctx context.Context, inst provisioners.Instance) error {
	var errs []error
	if b.KV != nil {
		errs = append(errs, b.KV.KVDelete(ctx, b.KVMount, KVPath(inst)))
	}
	errs = append(errs, b.Kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: redis.NamesOf(inst).AuthSecret}))
	return errors.Join(errs...)
}

func (b *RedisBinder) secretPassword(ctx context.Context, inst provisioners.Instance) (string, error) {
	name := redis.NamesOf(inst).AuthSecret
	o, err := b.Kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: name})
	if err != nil {
		return "", err
	}
	pw := secretValue(o, redis.PasswordKey)
	if pw == "" {
		return "", &NotReadyError{"the instance's password (Secret " + name + ") does not exist yet; retry once the instance is ready"}
	}
	return pw, nil
}

func (b *RedisBinder) password(ctx context.Context, inst provisioners.Instance) (string, error) {
	if b.KV == nil {
		return b.secretPassword(ctx, inst)
	}
	data, err := b.KV.KVGet(ctx, b.KVMount, KVPath(inst))
	if err != nil {
		return "", err
	}
	pw, _ := data[redis.PasswordKey].(string)
	if pw == "" {
		return "", &NotReadyError{"OpenBao has no password for this instance yet; retry once the instance is ready"}
	}
	return pw, nil
}

// Bind writes the binding Secret: the master's TLS Service, the password
// and the CA of the TLS certificate.
func (b *RedisBinder) Bind(ctx context.Context, inst provisioners.Instance, bindingID string, _ map[string]any) (Result, error) {
	pw, err := b.password(ctx, inst)
	if err != nil {
		return Result{}, err
	}
	ca, err := b.caPEM(ctx, inst)
	if err != nil {
		return Result{}, err
	}
	n := redis.NamesOf(inst)
	conn := RedisConn{
		SecretName: SecretName(bindingID),
		Host:       n.TLSService + "." + inst.Namespace + ".svc", Port: redis.TLSPort,
		Password: pw, CAPEM: ca,
	}
	data := RedisSecret(conn)
	if err := writeSecret(ctx, b.Kube, inst, bindingID, conn.SecretName, "redis", data); err != nil {
		return Result{}, err
	}
	creds := make(map[string]any, len(data))
	for k, v := range data {
		creds[k] = v
	}
	return Result{Credentials: creds, SecretName: conn.SecretName}, nil
}

// caPEM reads the CA of the TLS certificate from cert-manager's Secret.
func (b *RedisBinder) caPEM(ctx context.Context, inst provisioners.Instance) (string, error) {
	return secretCA(ctx, b.Kube, inst.Namespace, redis.NamesOf(inst).Certificate, "instance's TLS certificate")
}

// Ready is true at once: the binding's password is the instance's.
func (b *RedisBinder) Ready(context.Context, provisioners.Instance, Result) (provisioners.Progress, error) {
	return provisioners.Progress{State: provisioners.Succeeded, Description: "credentials ready"}, nil
}

// Unbind deletes the binding Secret; the instance's password stays (other
// bindings use it).
func (b *RedisBinder) Unbind(ctx context.Context, inst provisioners.Instance, r Result) error {
	if r.SecretName == "" {
		return nil
	}
	return b.Kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: r.SecretName})
}

// Forget deletes the binding Secret (the only object a Redis bind makes).
func (b *RedisBinder) Forget(ctx context.Context, inst provisioners.Instance, bindingID string) error {
	return b.Unbind(ctx, inst, Result{SecretName: SecretName(bindingID)})
}

// RevokeUnrecorded has nothing to do: a Redis bind issues no credential of
// its own.
func (b *RedisBinder) RevokeUnrecorded(context.Context, provisioners.Instance, string) error {
	return nil
}

// RedisConn is everything the Redis binding Secret says.
type RedisConn struct {
	// SecretName names the Secret and the SSL bundle.
	SecretName string
	// Host and Port are the master's TLS Service.
	Host     string
	Port     int
	Password string
	CAPEM    string
}

// RedisSecret renders the binding Secret's keys: Spring Boot properties
// (read by spring.config.import=optional:configtree:<mount>/) and
// servicebinding.io keys.
//
// Clients connect to the master through its TLS Service, not through
// Sentinel: the operator's Sentinels report the master's plaintext port
// (the only one the operator speaks), and Lettuce, like other Sentinel
// clients, uses TLS to the reported address when TLS is on. So the keys
// name no Sentinel (spring.data.redis.sentinel.*, sentinel.*): a client
// that saw them would switch to Sentinel discovery and fail.
func RedisSecret(c RedisConn) map[string]string {
	port := strconv.Itoa(c.Port)
	uri := (&url.URL{Scheme: "rediss", User: url.UserPassword("default", c.Password), Host: c.Host + ":" + port}).String()
	return map[string]string{
		// servicebinding.io
		"type":     "redis",
		"provider": "strata",
		"host":     c.Host,
		"port":     port,
		"password": c.Password,
		"ssl":      "true",
		"ca.crt":   c.CAPEM,
		"uri":      uri,

		// Spring Boot
		"spring.data.redis.host":                                            c.Host,
		"spring.data.redis.port":                                            port,
		"spring.data.redis.password":                                        c.Password,
		"spring.data.redis.ssl.enabled":                                     "true",
		"spring.data.redis.ssl.bundle":                                      c.SecretName,
		"spring.data.redis.timeout":                                         "5s",
		"spring.data.redis.connect-timeout":                                 "5s",
		"spring.ssl.bundle.pem." + c.SecretName + ".truststore.certificate": c.CAPEM,
	}
}
