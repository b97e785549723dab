// Package binding issues the credentials of a service binding and renders
// the Spring-Boot-ready connection Secret that carries them
// (docs/bindings.md is the contract).
package binding

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/strata-dev/strata/provisioners"
)

// Access is a binding's level of rights.
type Access string

const (
	// ReadWrite reads and writes data, without DDL: what an application
	// runs as.
	ReadWrite Access = "readwrite"
	// ReadOnly reads data.
	ReadOnly Access = "readonly"
	// Owner may change the schema: what migrations run as.
	Owner Access = "owner"
)

// Login is one database login issued for a binding.
type Login struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// Handle is what the credential source needs to revoke the login
	// (object names, a lease id). It is never shown to users.
	Handle string `json:"handle"`
	// Expires is when the login stops working; zero if it does not.
	Expires time.Time `json:"expires,omitzero"`
}

// CredentialSource issues and revokes the database logins of bindings. The
// first source is CloudNativePG's DatabaseRole; OpenBao's database secrets
// engine replaces it behind this interface.
type CredentialSource interface {
	// Issue creates a login with the rights of the access level.
	Issue(ctx context.Context, inst provisioners.Instance, bindingID string, access Access) (Login, error)
	// Ready says whether the login can be used yet, and if not, why.
	Ready(ctx context.Context, inst provisioners.Instance, login Login) (bool, string, error)
	// Revoke removes the login; revoking a login that is already gone
	// succeeds.
	Revoke(ctx context.Context, inst provisioners.Instance, login Login) error
}

// InstanceSetup is the per-instance side of a credential source that keeps
// state of its own about each instance (OpenBao's connection and roles).
type InstanceSetup interface {
	// Prepare runs before the instance's objects are first applied.
	Prepare(ctx context.Context, inst provisioners.Instance) error
	// Configure runs once the instance is ready, on every poll until it
	// succeeds; it is idempotent.
	Configure(ctx context.Context, inst provisioners.Instance) error
	// Teardown runs at deprovision, before the instance's objects are
	// deleted; it is idempotent.
	Teardown(ctx context.Context, inst provisioners.Instance) error
}

// Result is what a bind produces.
type Result struct {
	// Credentials go into the OSB bind response; they are the Secret's keys.
	Credentials map[string]any
	// SecretName is the Spring-Boot-ready Secret in the tenant namespace.
	SecretName string
	// Logins are what Unbind revokes.
	Logins map[string]Login
}

// Expires is when the first of the logins stops working; zero if none
// expires.
func (r Result) Expires() time.Time {
	var first time.Time
	for _, l := range r.Logins {
		if !l.Expires.IsZero() && (first.IsZero() || l.Expires.Before(first)) {
			first = l.Expires
		}
	}
	return first
}

// Binder binds one engine's instances and sets up and tears down what its
// credential source keeps per instance.
type Binder interface {
	InstanceSetup
	// Bind issues credentials and writes the binding Secret. On error
	// nothing it created is left behind.
	Bind(ctx context.Context, inst provisioners.Instance, bindingID string, params map[string]any) (Result, error)
	// Ready reports whether the binding's logins work yet.
	Ready(ctx context.Context, inst provisioners.Instance, r Result) (provisioners.Progress, error)
	// Unbind revokes the logins and deletes the Secret; it is idempotent.
	Unbind(ctx context.Context, inst provisioners.Instance, r Result) error
	// Forget deletes every object a bind of bindingID may have created,
	// found by the names derived from the binding id alone: it cleans up
	// a bind that was interrupted before its Result was recorded. It is
	// idempotent.
	Forget(ctx context.Context, inst provisioners.Instance, bindingID string) error
	// RevokeUnrecorded revokes what a bind of bindingID may have issued
	// that running Bind again would not replace (OpenBao leases; objects
	// named from the binding id are simply applied again): what a repeat
	// or the reconcile loop does before finishing an interrupted bind.
	RevokeUnrecorded(ctx context.Context, inst provisioners.Instance, bindingID string) error
}

// ParameterError is a bind request whose parameters cannot be honoured;
// it names the parameter (the engines' error type).
type ParameterError = provisioners.ParameterError

// UnsupportedError is a bind this broker's configuration cannot serve
// (a shared PostgreSQL instance without OpenBao); the request cannot
// succeed until the platform team changes the configuration.
type UnsupportedError struct{ Msg string }

func (e *UnsupportedError) Error() string { return e.Msg }

// NotReadyError says the instance cannot take bindings yet (for example its
// CA certificate does not exist yet); the platform may retry.
type NotReadyError struct{ Msg string }

func (e *NotReadyError) Error() string { return e.Msg }

// newPassword returns 32 random bytes, URL-safe base64 (no characters that
// need quoting in URLs, JAAS configs or connection strings).
func newPassword() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
