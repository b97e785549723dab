// Package binding issues the credentials of a service binding and renders
// the Spring-Boot-ready connection Secret that carries them
// (docs/bindings.md is the contract).
package binding

import (
	"context"
	"crypto/rand"
	"encoding/base64"

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

// Result is what a bind produces.
type Result struct {
	// Credentials go into the OSB bind response; they are the Secret's keys.
	Credentials map[string]any
	// SecretName is the Spring-Boot-ready Secret in the tenant namespace.
	SecretName string
	// Logins are what Unbind revokes.
	Logins map[string]Login
}

// Binder binds one engine's instances.
type Binder interface {
	// Bind issues credentials and writes the binding Secret. On error
	// nothing it created is left behind.
	Bind(ctx context.Context, inst provisioners.Instance, bindingID string, params map[string]any) (Result, error)
	// Ready reports whether the binding's logins work yet.
	Ready(ctx context.Context, inst provisioners.Instance, r Result) (provisioners.Progress, error)
	// Unbind revokes the logins and deletes the Secret; it is idempotent.
	Unbind(ctx context.Context, inst provisioners.Instance, r Result) error
}

// ParameterError is a bind request whose parameters cannot be honoured.
type ParameterError struct{ Msg string }

func (e *ParameterError) Error() string { return e.Msg }

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
