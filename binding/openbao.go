package binding

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// OpenBaoPolicy is the least-privilege OpenBao policy of the broker
// (openbao-policy.hcl; docs/openbao.md shows how to install it).
//
//go:embed openbao-policy.hcl
var OpenBaoPolicy string

// OpenBaoBindingPolicy is the policy of the tokens logins are issued under
// (openbao-binding-policy.hcl; the token role strata-binding grants it).
//
//go:embed openbao-binding-policy.hcl
var OpenBaoBindingPolicy string

// OpenBaoConfig is the broker configuration's openBao section.
type OpenBaoConfig struct {
	// Address is OpenBao's https:// address.
	Address string `json:"address"`
	// CACertFile is the PEM of the CA that signs OpenBao's certificate.
	CACertFile string `json:"caCertFile"`
	// Namespace is the Kubernetes namespace of OpenBao's pods; the
	// instances' NetworkPolicies let them reach PostgreSQL.
	Namespace string `json:"namespace"`
	// DatabaseMount is the path of the database secrets engine.
	DatabaseMount string `json:"databaseMount"`
	// PostgresCAFile is the path, on the OpenBao servers, of the CA of
	// postgres.serverCertificates' issuer: OpenBao verifies every instance
	// against it (verify-full). OpenBao's PostgreSQL plugin reads CAs only
	// from files.
	PostgresCAFile string `json:"postgresCAFile"`
	// CredentialTTL is how long a binding's credentials live (a Go
	// duration). Bindings are rotated (OSB predecessor_binding_id) before
	// then; the mount's max_lease_ttl must allow it.
	CredentialTTL string `json:"credentialTTL"`
	// BindingTokenRole is the token role (orphan, non-renewable) under
	// which each login is issued. OpenBao revokes a token's leases when
	// the token ends, so a login issued with the broker's own login token
	// would die with it (within the hour); a token of its own, as long as
	// the login, keeps the login alive for its whole lifetime.
	BindingTokenRole string      `json:"bindingTokenRole"`
	Auth             OpenBaoAuth `json:"auth"`
}

// OpenBaoAuth is how the broker logs in to OpenBao.
type OpenBaoAuth struct {
	// Method is kubernetes (in a cluster), approle or token.
	Method string `json:"method"`
	// Mount is the auth method's path; default: the method's name.
	Mount string `json:"mount"`
	// Role is the kubernetes auth role.
	Role string `json:"role"`
	// ServiceAccountTokenFile is the projected token kubernetes auth
	// presents.
	ServiceAccountTokenFile string `json:"serviceAccountTokenFile"`
	// RoleIDFile and SecretIDFile are AppRole's credentials.
	RoleIDFile   string `json:"roleIdFile"`
	SecretIDFile string `json:"secretIdFile"`
	// TokenFile holds a token (re-read at every login).
	TokenFile string `json:"tokenFile"`
}

const defaultSATokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Enabled says whether OpenBao issues the credentials.
func (c OpenBaoConfig) Enabled() bool { return c.Address != "" }

// withDefaults fills in the documented defaults and checks the rest.
func (c OpenBaoConfig) withDefaults() (OpenBaoConfig, time.Duration, error) {
	if c.DatabaseMount == "" {
		c.DatabaseMount = "database"
	}
	if c.CredentialTTL == "" {
		c.CredentialTTL = "720h"
	}
	if c.BindingTokenRole == "" {
		c.BindingTokenRole = "strata-binding"
	}
	if c.Auth.Method == "" {
		c.Auth.Method = "kubernetes"
	}
	if c.Auth.Mount == "" {
		c.Auth.Mount = c.Auth.Method
	}
	if c.Auth.Method == "kubernetes" && c.Auth.ServiceAccountTokenFile == "" {
		c.Auth.ServiceAccountTokenFile = defaultSATokenFile
	}
	ttl, err := time.ParseDuration(c.CredentialTTL)
	if err != nil || ttl < time.Hour {
		return c, 0, fmt.Errorf("openBao.credentialTTL: %q is not a duration of an hour or more (e.g. 720h)", c.CredentialTTL)
	}
	var missing []string
	if !strings.HasPrefix(c.Address, "https://") {
		missing = append(missing, "openBao.address must be an https:// address")
	}
	if c.PostgresCAFile == "" {
		missing = append(missing, "openBao.postgresCAFile (the platform CA's path on the OpenBao servers) is required")
	}
	if c.Namespace == "" {
		missing = append(missing, "openBao.namespace (where OpenBao's pods run) is required")
	}
	switch c.Auth.Method {
	case "kubernetes":
		if c.Auth.Role == "" {
			missing = append(missing, "openBao.auth.role is required for kubernetes auth")
		}
	case "approle":
		if c.Auth.RoleIDFile == "" || c.Auth.SecretIDFile == "" {
			missing = append(missing, "openBao.auth.roleIdFile and secretIdFile are required for approle auth")
		}
	case "token":
		if c.Auth.TokenFile == "" {
			missing = append(missing, "openBao.auth.tokenFile is required for token auth")
		}
	default:
		missing = append(missing, fmt.Sprintf("openBao.auth.method %q is not kubernetes, approle or token", c.Auth.Method))
	}
	if len(missing) > 0 {
		return c, 0, errors.New(strings.Join(missing, "; "))
	}
	return c, ttl, nil
}

// OpenBaoSource issues PostgreSQL logins as OpenBao dynamic credentials:
// per instance, a database secrets engine connection that logs in as the
// management role (postgres.ManagementRole, never a superuser; its first
// password is rotated by OpenBao at once, so only OpenBao knows it) and a
// role per access level whose creation statements grant exactly that
// level's group role. A binding's logins are leases; revoking one drops
// the login and ends its sessions.
type OpenBaoSource struct {
	cfg  OpenBaoConfig
	ttl  time.Duration
	kube Kube
	vc   *vault.Client
	// Address returns host:port of an instance's primary as OpenBao
	// reaches it; the default is the Cluster's -rw Service.
	Address func(inst provisioners.Instance) string
	// BrokerNamespace keeps the management roles' first passwords until
	// OpenBao has rotated them (never the tenant's namespace, whose
	// readers would otherwise hold a role that creates logins).
	BrokerNamespace string
	// Shared is the platform's shared cluster: its OpenBao connection is
	// the platform's, and the broker writes only roles that use it.
	Shared postgres.SharedConfig

	mu         sync.Mutex
	tokenUntil time.Time
}

var (
	_ CredentialSource = (*OpenBaoSource)(nil)
	_ InstanceSetup    = (*OpenBaoSource)(nil)
)

// NewOpenBaoSource checks the configuration and makes the client; it logs
// in lazily, at the first request.
func NewOpenBaoSource(cfg OpenBaoConfig, kube Kube) (*OpenBaoSource, error) {
	cfg, ttl, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	vcfg, err := clientConfig(cfg)
	if err != nil {
		return nil, err
	}
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, err
	}
	// Nor may the environment (VAULT_TOKEN, VAULT_NAMESPACE) decide who
	// the broker is or where it writes: only the configuration does.
	vc.ClearToken()
	vc.ClearNamespace()
	s := &OpenBaoSource{cfg: cfg, ttl: ttl, kube: kube, vc: vc}
	s.Address = func(inst provisioners.Instance) string {
		return postgres.NamesOf(inst).Cluster + "-rw." + inst.Namespace + ".svc:5432"
	}
	return s, nil
}

// clientConfig is the OpenBao client configuration from the broker's
// configuration alone. vault.DefaultConfig also reads VAULT_* variables
// (VAULT_SKIP_VERIFY, VAULT_CACERT, VAULT_AGENT_ADDR, proxies…); none of
// them may weaken or redirect the broker's connection, so everything they
// touch is set again here.
func clientConfig(cfg OpenBaoConfig) (*vault.Config, error) {
	vcfg := vault.DefaultConfig()
	vcfg.Error = nil
	vcfg.Address = cfg.Address
	vcfg.AgentAddress = ""
	vcfg.SRVLookup = false
	vcfg.MaxRetries = 1
	vcfg.Timeout = 30 * time.Second
	tr, ok := vcfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("the OpenBao client's transport is not an *http.Transport")
	}
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	tr.Proxy = http.ProxyFromEnvironment
	// An empty caCertFile means the system roots.
	if err := vcfg.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACertFile}); err != nil {
		return nil, fmt.Errorf("openBao.caCertFile: %w", err)
	}
	return vcfg, nil
}

// call runs f with a logged-in client. A 403 (a broker token OpenBao no
// longer knows: revoked, or expired early) makes it log in again and try
// once more.
func (s *OpenBaoSource) call(ctx context.Context, f func(*vault.Client) error) error {
	vc, err := s.client(ctx)
	if err != nil {
		return err
	}
	err = f(vc)
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		return err
	}
	s.mu.Lock()
	s.tokenUntil = time.Time{}
	s.mu.Unlock()
	if vc, err = s.client(ctx); err != nil {
		return err
	}
	return f(vc)
}

// client returns the client, logged in.
func (s *OpenBaoSource) client(ctx context.Context) (*vault.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vc.Token() != "" && time.Now().Before(s.tokenUntil) {
		return s.vc, nil
	}
	if err := s.login(ctx); err != nil {
		return nil, fmt.Errorf("OpenBao login (%s auth): %w", s.cfg.Auth.Method, err)
	}
	return s.vc, nil
}

// login gets a token with the configured method and keeps it for 80% of
// its lifetime (a token file is re-read every minute, so a rotated token
// is picked up).
func (s *OpenBaoSource) login(ctx context.Context) error {
	a := s.cfg.Auth
	if a.Method == "token" {
		tok, err := readTrimmed(a.TokenFile)
		if err != nil {
			return err
		}
		s.vc.SetToken(tok)
		s.tokenUntil = time.Now().Add(time.Minute)
		return nil
	}
	body := map[string]any{}
	switch a.Method {
	case "approle":
		roleID, err := readTrimmed(a.RoleIDFile)
		if err != nil {
			return err
		}
		secretID, err := readTrimmed(a.SecretIDFile)
		if err != nil {
			return err
		}
		body["role_id"], body["secret_id"] = roleID, secretID
	case "kubernetes":
		jwt, err := readTrimmed(a.ServiceAccountTokenFile)
		if err != nil {
			return err
		}
		body["role"], body["jwt"] = a.Role, jwt
	}
	// A login request carries no token.
	s.vc.ClearToken()
	sec, err := s.vc.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", body)
	if err != nil {
		return err
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return errors.New("the login answered no token")
	}
	s.vc.SetToken(sec.Auth.ClientToken)
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	if ttl <= 0 {
		ttl = time.Hour
	}
	s.tokenUntil = time.Now().Add(ttl * 8 / 10)
	return nil
}

func readTrimmed(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(raw))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// ConnectionName is the instance's database secrets engine connection.
func ConnectionName(inst provisioners.Instance) string {
	return "strata-" + inst.Namespace + "-" + postgres.NamesOf(inst).Cluster
}

// RoleName is the base name of an instance's OpenBao roles of an access
// level: every binding's role of that level starts with it, so revoking
// by the prefix database/creds/<RoleName> ends every login of the level.
func RoleName(inst provisioners.Instance, a Access) string {
	if inst.Plan.Postgres.Shared {
		return sharedRoleName(inst, a)
	}
	return ConnectionName(inst) + "-" + string(a)
}

// BindingRoleName is the OpenBao role a binding's logins of an access
// level are issued from: one role per binding, named from the binding id,
// so that a bind cut short after OpenBao issued a login (before the
// broker recorded its lease) is still found, and its logins revoked, by
// the binding id alone (revoke-prefix on the role's creds path).
func BindingRoleName(inst provisioners.Instance, bindingID string, a Access) string {
	sum := sha256.Sum256([]byte(bindingID))
	return RoleName(inst, a) + "-b" + hex.EncodeToString(sum[:])[:16]
}

// allowedRoles are the role names an instance's connection accepts: the
// instance's role of each access level (for services that take logins
// from OpenBao themselves, docs/openbao.md) and, by glob, the bindings'
// roles of that level.
func allowedRoles(inst provisioners.Instance) []string {
	var out []string
	for _, a := range accessLevels {
		out = append(out, RoleName(inst, a), RoleName(inst, a)+"-b*")
	}
	return out
}

var accessLevels = []Access{ReadWrite, ReadOnly, Owner}

// roleStatements are the creation statements of an access level's logins:
// a login in exactly one group role, valid until the lease ends. Owner
// logins act as strata_owner by default, so what migrations create
// belongs to the group and outlives the login.
func roleStatements(a Access) []string {
	group := groupRole(a)
	stmts := []string{fmt.Sprintf(`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE %s;`, group)}
	if a == Owner {
		stmts = append(stmts, fmt.Sprintf(`ALTER ROLE "{{name}}" SET role = '%s';`, group))
	}
	return stmts
}

// revocationStatements end the login's sessions and drop it. The
// management role is NOINHERIT (it holds no data privileges), so it acts
// as pg_signal_backend explicitly to end sessions, and as itself again to
// drop the login it created.
var revocationStatements = []string{
	`SET ROLE pg_signal_backend;`,
	`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';`,
	`RESET ROLE;`,
	`DROP ROLE IF EXISTS "{{name}}";`,
}

// firstPasswordRef is the Secret, in the broker's namespace, with the
// management role's first password.
func (s *OpenBaoSource) firstPasswordRef(inst provisioners.Instance) provisioners.Ref {
	return provisioners.Ref{GVK: secretGVK, Namespace: s.BrokerNamespace, Name: provisioners.ResourceName("strata-first-password-", inst.ID)}
}

const firstPasswordKey = "password"

// Prepare writes, once, the management role's first password (in the
// broker's namespace) and the bootstrap Secret from which the Cluster's
// initdb creates the role (in the tenant's, with a verifier only). The
// password Secret comes first and is the source of truth, so a repeat
// after a crash renders the same role.
func (s *OpenBaoSource) Prepare(ctx context.Context, inst provisioners.Instance) error {
	if inst.Plan.Postgres.Shared {
		return nil // the shared cluster's management role is the platform's
	}
	if s.BrokerNamespace == "" {
		return errors.New("OpenBaoSource.BrokerNamespace is not set")
	}
	// Once the bootstrap Secret exists, the role's password is settled
	// (kept below until OpenBao rotates it, then OpenBao's): a repeated or
	// retried provision must not mint another one.
	boot, err := s.kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: postgres.NamesOf(inst).Bootstrap})
	if err != nil || boot != nil {
		return err
	}
	ref := s.firstPasswordRef(inst)
	labels := provisioners.StringMap(map[string]string{
		provisioners.LabelManagedBy: provisioners.ManagedByStrata, provisioners.LabelInstanceID: provisioners.LabelValue(inst.ID),
	})
	if _, err := s.kube.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": ref.Name, "namespace": ref.Namespace, "labels": labels},
		"type":       "Opaque",
		"stringData": map[string]any{firstPasswordKey: newPassword()},
	}}); err != nil {
		return err
	}
	stored, err := s.kube.Get(ctx, ref)
	if err != nil {
		return err
	}
	password := secretValue(stored, firstPasswordKey)
	if password == "" {
		// OpenBao has rotated it already: the bootstrap Secret exists.
		return nil
	}
	if postgres.ManagementHandOver(inst) {
		// A restore or copy runs no initdb SQL: CloudNativePG sets the
		// role up from a DatabaseRole, whose Secret holds the verifier
		// (never the password) of the same first password. Both before
		// the bootstrap Secret, which marks Prepare as done.
		login, err := postgres.ManagementLoginSecret(inst, password)
		if err != nil {
			return err
		}
		if _, err := s.kube.Create(ctx, login); err != nil {
			return err
		}
		if _, err := s.kube.Create(ctx, postgres.ManagementDatabaseRole(inst)); err != nil {
			return err
		}
	}
	sec, err := postgres.ManagementRoleSecret(inst, password)
	if err != nil {
		return err
	}
	_, err = s.kube.Create(ctx, sec)
	return err
}

// managementLoginRefs are the DatabaseRole and Secret that set up the
// management role of a restore or copy (postgres.ManagementHandOver).
func managementLoginRefs(inst provisioners.Instance) (role, secret provisioners.Ref) {
	name := postgres.NamesOf(inst).ManagementLogin
	return provisioners.Ref{GVK: databaseRoleGVK, Namespace: inst.Namespace, Name: name},
		provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: name}
}

// managementRoleApplied says why OpenBao cannot log in yet on a restore or
// copy: CloudNativePG has not applied the management DatabaseRole.
func (s *OpenBaoSource) managementRoleApplied(ctx context.Context, inst provisioners.Instance) error {
	ref, _ := managementLoginRefs(inst)
	dr, err := s.kube.Get(ctx, ref)
	if err != nil {
		return err
	}
	if dr == nil {
		return fmt.Errorf("DatabaseRole %s/%s, which sets up the management role of a restore or copy, is missing: "+
			"deprovision the instance and provision it again", ref.Namespace, ref.Name)
	}
	if applied, _, _ := unstructured.NestedBool(dr.Object, "status", "applied"); applied {
		return nil
	}
	msg, _, _ := unstructured.NestedString(dr.Object, "status", "message")
	if msg == "" {
		msg = "not reconciled yet"
	}
	return fmt.Errorf("waiting for CloudNativePG to apply DatabaseRole %s/%s (the management role): %s", ref.Namespace, ref.Name, msg)
}

// handOverManagementRole deletes the management DatabaseRole (retained:
// the role stays) and its verifier Secret before OpenBao rotates the
// password. Left in place, the DatabaseRole would set the verifier again
// when reconciled (undoing the rotation) and would revoke the ADMIN
// memberships PostgreSQL gives the management role on each login it
// creates (so that OpenBao could no longer drop them). It answers an
// error while CloudNativePG still holds the DatabaseRole (its finalizer).
func (s *OpenBaoSource) handOverManagementRole(ctx context.Context, inst provisioners.Instance) error {
	role, secret := managementLoginRefs(inst)
	if err := s.kube.Delete(ctx, role); err != nil {
		return fmt.Errorf("delete the management DatabaseRole before the rotation: %w", err)
	}
	left, err := s.kube.Get(ctx, role)
	if err != nil {
		return err
	}
	if left != nil {
		return fmt.Errorf("waiting for CloudNativePG to release DatabaseRole %s/%s before OpenBao rotates the management role's password", role.Namespace, role.Name)
	}
	if err := s.kube.Delete(ctx, secret); err != nil {
		return fmt.Errorf("delete the management role's verifier Secret: %w", err)
	}
	return nil
}

// Configure points OpenBao at a ready instance: the connection (written
// once, then its password rotated so that only OpenBao knows it) and the
// access levels' roles. It is idempotent and resumes where it stopped.
func (s *OpenBaoSource) Configure(ctx context.Context, inst provisioners.Instance) error {
	return s.call(ctx, func(vc *vault.Client) error { return s.configure(ctx, vc, inst) })
}

func (s *OpenBaoSource) configure(ctx context.Context, vc *vault.Client, inst provisioners.Instance) error {
	if inst.Plan.Postgres.Shared {
		return s.writeRoles(ctx, vc, inst, postgres.Config{Shared: s.Shared}.SharedCluster().OpenBaoConnection, SharedRoleStatements)
	}
	conn := ConnectionName(inst)
	mount := s.cfg.DatabaseMount
	first, err := s.kube.Get(ctx, s.firstPasswordRef(inst))
	if err != nil {
		return err
	}
	password := secretValue(first, firstPasswordKey)

	existing, err := vc.Logical().ReadWithContext(ctx, mount+"/config/"+conn)
	if err != nil {
		return fmt.Errorf("read OpenBao connection %s: %w", conn, err)
	}
	if existing == nil {
		if password == "" {
			return fmt.Errorf("the management role's first password (Secret %s/%s) is gone and OpenBao has no connection %s: "+
				"re-create the connection by hand (docs/openbao.md, recovering a connection)", s.BrokerNamespace, s.firstPasswordRef(inst).Name, conn)
		}
		if postgres.ManagementHandOver(inst) {
			if err := s.managementRoleApplied(ctx, inst); err != nil {
				return err
			}
		}
		s, err := s.connectionConfig(inst, password)
		if err != nil {
			return err
		}
		if _, err := vc.Logical().WriteWithContext(ctx, mount+"/config/"+conn, s); err != nil {
			return fmt.Errorf("write OpenBao connection %s: %w", conn, err)
		}
	} else if !slices.Equal(stringsOf(existing.Data["allowed_roles"]), allowedRoles(inst)) {
		// A connection made before bindings had roles of their own: an
		// update changes only the fields it names (OpenBao keeps the
		// rotated password).
		if _, err := vc.Logical().WriteWithContext(ctx, mount+"/config/"+conn, map[string]any{"allowed_roles": allowedRoles(inst)}); err != nil {
			return fmt.Errorf("update the allowed roles of OpenBao connection %s: %w", conn, err)
		}
	}
	if password != "" {
		if postgres.ManagementHandOver(inst) {
			// OpenBao has logged in (verify_connection): the role is its
			// own from now on.
			if err := s.handOverManagementRole(ctx, inst); err != nil {
				return err
			}
		}
		// Rotate, then forget the first password. A crash in between only
		// means one more rotation on the next poll.
		if _, err := vc.Logical().WriteWithContext(ctx, mount+"/rotate-root/"+conn, nil); err != nil {
			return fmt.Errorf("rotate the management role's password of connection %s: %w", conn, err)
		}
		if err := s.kube.Delete(ctx, s.firstPasswordRef(inst)); err != nil {
			return fmt.Errorf("delete the first password after its rotation: %w", err)
		}
	}
	return s.writeRoles(ctx, vc, inst, conn, func(_ provisioners.Instance, a Access) []string { return roleStatements(a) })
}

// writeRoles writes the instance's role of every access level, on
// connection conn, with the level's creation statements and the common
// revocation statements: the roles services that take their logins from
// OpenBao themselves use (bindings have roles of their own).
func (s *OpenBaoSource) writeRoles(ctx context.Context, vc *vault.Client, inst provisioners.Instance, conn string, creation func(provisioners.Instance, Access) []string) error {
	for _, a := range accessLevels {
		if err := s.writeRole(ctx, vc, RoleName(inst, a), conn, creation(inst, a)); err != nil {
			return err
		}
	}
	return nil
}

func stringsOf(v any) []string {
	xs, _ := v.([]any)
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// writeBindingRole writes a binding's role of an access level: on the
// instance's connection (or the platform's shared one), with the level's
// creation statements and the common revocation statements.
func (s *OpenBaoSource) writeBindingRole(ctx context.Context, vc *vault.Client, inst provisioners.Instance, bindingID string, a Access) error {
	conn, creation := ConnectionName(inst), roleStatements(a)
	if inst.Plan.Postgres.Shared {
		conn, creation = postgres.Config{Shared: s.Shared}.SharedCluster().OpenBaoConnection, SharedRoleStatements(inst, a)
	}
	return s.writeRole(ctx, vc, BindingRoleName(inst, bindingID, a), conn, creation)
}

func (s *OpenBaoSource) writeRole(ctx context.Context, vc *vault.Client, role, conn string, creation []string) error {
	if _, err := vc.Logical().WriteWithContext(ctx, s.cfg.DatabaseMount+"/roles/"+role, map[string]any{
		"db_name":               conn,
		"creation_statements":   creation,
		"revocation_statements": revocationStatements,
		"default_ttl":           int(s.ttl.Seconds()),
		"max_ttl":               int(s.ttl.Seconds()),
	}); err != nil {
		return fmt.Errorf("write OpenBao role %s: %w", role, err)
	}
	return nil
}

func (s *OpenBaoSource) connectionConfig(inst provisioners.Instance, password string) (map[string]any, error) {
	settings, err := postgres.Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"plugin_name": "postgresql-database-plugin",
		// OpenBao fills in {{username}} and {{password}}; the server is
		// verified against the platform CA, by name.
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/%s?sslmode=verify-full&sslrootcert=%s",
			s.Address(inst), settings.Databases[0], s.cfg.PostgresCAFile),
		"username": postgres.ManagementRole,
		"password": password,
		// OpenBao sends SCRAM verifiers, never passwords, so neither
		// pgaudit nor pg_stat_statements can capture one.
		"password_authentication": "scram-sha-256",
		"allowed_roles":           allowedRoles(inst),
		"verify_connection":       true,
		"max_open_connections":    2,
		"max_connection_lifetime": "5m",
	}, nil
}

// Teardown removes the instance from OpenBao: its leases (normally
// already revoked by unbind), roles and connection, and the bootstrap
// Secret. It runs before the Cluster is deleted, while OpenBao can still
// drop the logins.
func (s *OpenBaoSource) Teardown(ctx context.Context, inst provisioners.Instance) error {
	if err := s.call(ctx, func(vc *vault.Client) error { return s.teardown(ctx, vc, inst) }); err != nil {
		return err
	}
	if inst.Plan.Postgres.Shared {
		return nil // no connection, bootstrap or first password of its own
	}
	role, login := managementLoginRefs(inst)
	return errors.Join(
		s.kube.Delete(ctx, role),
		s.kube.Delete(ctx, login),
		s.kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: postgres.NamesOf(inst).Bootstrap}),
		s.kube.Delete(ctx, s.firstPasswordRef(inst)),
	)
}

func (s *OpenBaoSource) teardown(ctx context.Context, vc *vault.Client, inst provisioners.Instance) error {
	mount := s.cfg.DatabaseMount
	for _, a := range accessLevels {
		prefix := mount + "/creds/" + RoleName(inst, a)
		if err := vc.Sys().RevokePrefixWithContext(ctx, prefix); err != nil {
			// The database may already be unreachable (a provision that
			// never became ready): its logins go with it.
			if ferr := vc.Sys().RevokeForceWithContext(ctx, prefix); ferr != nil {
				return fmt.Errorf("revoke the leases of %s: %w", prefix, errors.Join(err, ferr))
			}
		}
		if _, err := vc.Logical().DeleteWithContext(ctx, mount+"/roles/"+RoleName(inst, a)); err != nil {
			return fmt.Errorf("delete OpenBao role %s: %w", RoleName(inst, a), err)
		}
	}
	if inst.Plan.Postgres.Shared {
		return nil // the shared connection is the platform's
	}
	if _, err := vc.Logical().DeleteWithContext(ctx, mount+"/config/"+ConnectionName(inst)); err != nil {
		return fmt.Errorf("delete OpenBao connection %s: %w", ConnectionName(inst), err)
	}
	return nil
}

// Issue leases a login of the access level from the binding's own role
// (written first, so the login can be found by the binding id), under a
// token of its own (BindingTokenRole): the login lives as long as its
// lease, whatever becomes of the broker's own token.
func (s *OpenBaoSource) Issue(ctx context.Context, inst provisioners.Instance, bindingID string, a Access) (Login, error) {
	l, err := s.issue(ctx, inst, bindingID, a)
	if err != nil && !inst.Plan.Postgres.Shared {
		// OpenBao may have lost the instance's connection settings
		// (restored from an old snapshot, changed by hand): set the
		// instance up again, once, and retry.
		if cerr := s.Configure(ctx, inst); cerr != nil {
			return Login{}, fmt.Errorf("OpenBao could not issue %s credentials (%w), and setting the instance up again failed: %w", a, err, cerr)
		}
		l, err = s.issue(ctx, inst, bindingID, a)
	}
	if err != nil {
		return Login{}, fmt.Errorf("OpenBao could not issue %s credentials: %w", a, err)
	}
	return l, nil
}

func (s *OpenBaoSource) issue(ctx context.Context, inst provisioners.Instance, bindingID string, a Access) (Login, error) {
	role := BindingRoleName(inst, bindingID, a)
	var sec *vault.Secret
	err := s.call(ctx, func(vc *vault.Client) error {
		if err := s.writeBindingRole(ctx, vc, inst, bindingID, a); err != nil {
			return err
		}
		tok, err := vc.Auth().Token().CreateWithRoleWithContext(ctx, &vault.TokenCreateRequest{
			TTL: s.ttl.String(), ExplicitMaxTTL: s.ttl.String(), DisplayName: "strata-binding", NoDefaultPolicy: true,
		}, s.cfg.BindingTokenRole)
		if err != nil {
			return fmt.Errorf("create a token with role %s: %w", s.cfg.BindingTokenRole, err)
		}
		if tok == nil || tok.Auth == nil || tok.Auth.ClientToken == "" {
			return fmt.Errorf("token role %s answered no token", s.cfg.BindingTokenRole)
		}
		issuer, err := vc.Clone()
		if err != nil {
			return err
		}
		issuer.SetToken(tok.Auth.ClientToken)
		sec, err = issuer.Logical().ReadWithContext(ctx, s.cfg.DatabaseMount+"/creds/"+role)
		return err
	})
	if err != nil {
		return Login{}, err
	}
	if sec == nil || sec.LeaseID == "" {
		return Login{}, fmt.Errorf("OpenBao answered no lease for role %s", role)
	}
	user, _ := sec.Data["username"].(string)
	pw, _ := sec.Data["password"].(string)
	if user == "" || pw == "" {
		_ = s.Revoke(ctx, inst, Login{Handle: sec.LeaseID})
		return Login{}, errors.New("OpenBao answered credentials without a username or password")
	}
	return Login{Username: user, Password: pw, Handle: sec.LeaseID,
		Expires: time.Now().Add(time.Duration(sec.LeaseDuration) * time.Second).UTC()}, nil
}

// ForgetBinding revokes every lease of the binding's roles (the logins it
// issued, recorded or not) and deletes the roles.
func (s *OpenBaoSource) ForgetBinding(ctx context.Context, inst provisioners.Instance, bindingID string) error {
	return s.call(ctx, func(vc *vault.Client) error {
		for _, a := range accessLevels {
			role := BindingRoleName(inst, bindingID, a)
			prefix := s.cfg.DatabaseMount + "/creds/" + role
			if err := vc.Sys().RevokePrefixWithContext(ctx, prefix); err != nil {
				// The database may be unreachable (deleted with its
				// instance): its logins went with it.
				if ferr := vc.Sys().RevokeForceWithContext(ctx, prefix); ferr != nil {
					return fmt.Errorf("OpenBao could not revoke the leases of %s: %w", prefix, errors.Join(err, ferr))
				}
			}
			if _, err := vc.Logical().DeleteWithContext(ctx, s.cfg.DatabaseMount+"/roles/"+role); err != nil {
				return fmt.Errorf("OpenBao could not delete role %s: %w", role, err)
			}
		}
		return nil
	})
}

// Ready is true at once: OpenBao created the login before answering.
func (s *OpenBaoSource) Ready(context.Context, provisioners.Instance, Login) (bool, string, error) {
	return true, "", nil
}

// Revoke revokes the lease, which drops the login; revoking a lease that
// is already gone succeeds.
func (s *OpenBaoSource) Revoke(ctx context.Context, _ provisioners.Instance, l Login) error {
	if l.Handle == "" {
		return nil
	}
	// The lease id in the path (not the body) lets the policy confine
	// revocation to Strata's leases.
	err := s.call(ctx, func(vc *vault.Client) error {
		_, err := vc.Logical().WriteWithContext(ctx, "sys/leases/revoke/"+l.Handle, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("OpenBao could not revoke lease %s: %w", l.Handle, err)
	}
	return nil
}

func secretValue(o *unstructured.Unstructured, key string) string {
	if o == nil {
		return ""
	}
	enc, _, _ := unstructured.NestedString(o.Object, "data", key)
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return ""
	}
	return string(raw)
}
