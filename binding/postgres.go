package binding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

var (
	secretGVK       = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	databaseRoleGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "DatabaseRole"}
)

// Kube is the Kubernetes I/O the binders need (provisioners.Kube has it).
type Kube interface {
	Apply(ctx context.Context, objs []*unstructured.Unstructured) error
	Create(ctx context.Context, obj *unstructured.Unstructured) (bool, error)
	Get(ctx context.Context, ref provisioners.Ref) (*unstructured.Unstructured, error)
	Delete(ctx context.Context, ref provisioners.Ref) error
}

// groupRole maps an access level to the cluster's group role.
func groupRole(a Access) string {
	switch a {
	case Owner:
		return postgres.OwnerRole
	case ReadOnly:
		return postgres.ReadOnlyRole
	default:
		return postgres.ReadWriteRole
	}
}

// RoleSource issues logins as CloudNativePG DatabaseRole objects: a login
// role per binding and access level, member of the level's group role,
// with its password in a basic-auth Secret. Deleting the DatabaseRole
// (reclaim policy delete) drops the role.
type RoleSource struct {
	Kube Kube
}

var _ CredentialSource = (*RoleSource)(nil)

func roleNames(bindingID string, a Access) (k8sName, pgName string) {
	sum := sha256.Sum256([]byte(bindingID))
	short := hex.EncodeToString(sum[:])[:16]
	abbrev := map[Access]string{ReadWrite: "rw", ReadOnly: "ro", Owner: "ow"}[a]
	return "strata-b-" + short + "-" + abbrev, "b_" + short + "_" + abbrev
}

// Issue creates the password Secret and the DatabaseRole.
func (s *RoleSource) Issue(ctx context.Context, inst provisioners.Instance, bindingID string, a Access) (Login, error) {
	name, user := roleNames(bindingID, a)
	pw := newPassword()
	labels := inst.Labels()
	labels[provisioners.LabelBindingID] = provisioners.LabelValue(bindingID)
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{
			"name": name, "namespace": inst.Namespace,
			// cnpg.io/reload makes the operator pick up a changed password.
			"labels": withLabel(labels, "cnpg.io/reload", "true"),
		},
		// CloudNativePG requires basic-auth Secrets whose username is the
		// role name.
		"type":       "kubernetes.io/basic-auth",
		"stringData": map[string]any{"username": user, "password": pw},
	}}
	role := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "DatabaseRole",
		"metadata": map[string]any{"name": name, "namespace": inst.Namespace, "labels": withLabel(labels)},
		"spec": map[string]any{
			"cluster":                   map[string]any{"name": inst.Name},
			"name":                      user,
			"login":                     true,
			"inherit":                   true,
			"inRoles":                   []any{groupRole(a)},
			"passwordSecret":            map[string]any{"name": name},
			"databaseRoleReclaimPolicy": "delete",
			"comment":                   fmt.Sprintf("Strata binding %s (%s)", bindingID, a),
		},
	}}
	if err := s.Kube.Apply(ctx, []*unstructured.Unstructured{secret, role}); err != nil {
		_ = s.Revoke(ctx, inst, Login{Handle: name})
		return Login{}, err
	}
	return Login{Username: user, Password: pw, Handle: name}, nil
}

// Ready is true once the operator has applied the DatabaseRole.
func (s *RoleSource) Ready(ctx context.Context, inst provisioners.Instance, l Login) (bool, string, error) {
	o, err := s.Kube.Get(ctx, provisioners.Ref{GVK: databaseRoleGVK, Namespace: inst.Namespace, Name: l.Handle})
	if err != nil || o == nil {
		return false, "waiting for the database role " + l.Username, err
	}
	applied, _, _ := unstructured.NestedBool(o.Object, "status", "applied")
	gen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	if applied && gen >= o.GetGeneration() {
		return true, "", nil
	}
	msg, _, _ := unstructured.NestedString(o.Object, "status", "message")
	d := "waiting for CloudNativePG to create role " + l.Username
	if msg != "" {
		d += ": " + msg
	}
	return false, d, nil
}

// Revoke deletes the DatabaseRole (which drops the role) and its Secret.
func (s *RoleSource) Revoke(ctx context.Context, inst provisioners.Instance, l Login) error {
	return errors.Join(
		s.Kube.Delete(ctx, provisioners.Ref{GVK: databaseRoleGVK, Namespace: inst.Namespace, Name: l.Handle}),
		s.Kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: l.Handle}),
	)
}

func withLabel(labels map[string]string, kv ...string) map[string]any {
	out := make(map[string]any, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// PostgresBinder binds PostgreSQL instances.
type PostgresBinder struct {
	Kube   Kube
	Logins CredentialSource
	// CASecret names the Secret whose ca.crt signs the instance's server
	// certificate (postgres.Provisioner.ServerCASecret).
	CASecret func(inst provisioners.Instance) string
	// Shared is the platform's shared cluster (postgres.shared), where
	// shared instances' databases live.
	Shared postgres.SharedConfig
}

// Prepare writes what a new instance's objects need and only I/O can
// make: a copy's login Secret on its source (a random password) and the
// wrapped seed SQL (read from the developer's ConfigMap or Secret); then
// the credential source's per-instance setup. It runs before the objects
// are applied, and again on a retried provision: what exists is kept.
func (b *PostgresBinder) Prepare(ctx context.Context, inst provisioners.Instance) error {
	if !inst.Plan.Postgres.Shared {
		if err := b.prepareStartingData(ctx, inst); err != nil {
			return err
		}
	}
	if s, ok := b.Logins.(InstanceSetup); ok {
		return s.Prepare(ctx, inst)
	}
	return nil
}

var configMapGVK = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

func (b *PostgresBinder) prepareStartingData(ctx context.Context, inst provisioners.Instance) error {
	n := postgres.NamesOf(inst)
	if inst.Copy != nil {
		if _, err := b.Kube.Create(ctx, postgres.CopyLoginSecret(inst, newPassword())); err != nil {
			return fmt.Errorf("writing the copy's login Secret %s: %w", n.CopyLogin, err)
		}
	}
	s, err := postgres.Resolve(inst.Plan, inst.Params)
	if err != nil {
		return err
	}
	if s.SeedS3 != nil {
		return b.checkS3SeedCredentials(ctx, inst, *s.SeedS3)
	}
	if s.Seed == nil {
		return nil
	}
	// Read once: the Secret is created once, so a later change of the
	// developer's ConfigMap does not reach an instance already seeded.
	if existing, err := b.Kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: n.Seed}); err != nil || existing != nil {
		return err
	}
	gvk, field := configMapGVK, "parameters.seed.config_map"
	if s.Seed.Kind == "Secret" {
		gvk, field = secretGVK, "parameters.seed.secret"
	}
	o, err := b.Kube.Get(ctx, provisioners.Ref{GVK: gvk, Namespace: inst.Namespace, Name: s.Seed.Name})
	if err != nil {
		return fmt.Errorf("reading the seed %s %s: %w", s.Seed.Kind, s.Seed.Name, err)
	}
	if o == nil {
		return provisioners.ParamErrorf(field, "there is no %s %s in namespace %s; create it (key %q: the SQL) before provisioning", s.Seed.Kind, s.Seed.Name, inst.Namespace, s.Seed.Key)
	}
	var sql string
	if gvk == secretGVK {
		sql = secretValue(o, s.Seed.Key)
	} else {
		sql, _, _ = unstructured.NestedString(o.Object, "data", s.Seed.Key)
	}
	if sql == "" {
		return provisioners.ParamErrorf("parameters.seed.key", "%s %s has no key %q, or it is empty; put the seed SQL under that key or name the key that holds it", s.Seed.Kind, s.Seed.Name, s.Seed.Key)
	}
	sec, err := postgres.SeedSecret(inst, sql)
	if err != nil {
		return provisioners.ParamErrorf(field, "%v", err)
	}
	_, err = b.Kube.Create(ctx, sec)
	return err
}

var serviceAccountGVK = schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}

// checkS3SeedCredentials refuses, before anything is created, a seed from
// S3 whose credentials are not there: the Job would otherwise wait for
// the Secret until its deadline. The keys themselves are only read by the
// Job's fetch (S3 says whether they work).
func (b *PostgresBinder) checkS3SeedCredentials(ctx context.Context, inst provisioners.Instance, src postgres.S3Seed) error {
	if src.CredentialsSecret != "" {
		o, err := b.Kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: src.CredentialsSecret})
		if err != nil {
			return fmt.Errorf("reading the seed's credentials Secret %s: %w", src.CredentialsSecret, err)
		}
		if o == nil {
			return provisioners.ParamErrorf("parameters.seed.s3.credentials_secret", "there is no Secret %s in namespace %s; create it with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (kubectl -n %s create secret generic %s --from-literal=AWS_ACCESS_KEY_ID=… --from-literal=AWS_SECRET_ACCESS_KEY=…) before provisioning",
				src.CredentialsSecret, inst.Namespace, inst.Namespace, src.CredentialsSecret)
		}
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if secretValue(o, k) == "" {
				return provisioners.ParamErrorf("parameters.seed.s3.credentials_secret", "Secret %s has no key %s, or it is empty; it needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", src.CredentialsSecret, k)
			}
		}
		return nil
	}
	o, err := b.Kube.Get(ctx, provisioners.Ref{GVK: serviceAccountGVK, Namespace: inst.Namespace, Name: src.ServiceAccount})
	if err != nil {
		return fmt.Errorf("reading the seed's ServiceAccount %s: %w", src.ServiceAccount, err)
	}
	if o == nil {
		return provisioners.ParamErrorf("parameters.seed.s3.service_account", "there is no ServiceAccount %s in namespace %s; create it with the IAM role that may read the object (IRSA: annotation eks.amazonaws.com/role-arn) before provisioning",
			src.ServiceAccount, inst.Namespace)
	}
	return nil
}

func (b *PostgresBinder) Configure(ctx context.Context, inst provisioners.Instance) error {
	if s, ok := b.Logins.(InstanceSetup); ok {
		return s.Configure(ctx, inst)
	}
	return nil
}

func (b *PostgresBinder) Teardown(ctx context.Context, inst provisioners.Instance) error {
	if s, ok := b.Logins.(InstanceSetup); ok {
		return s.Teardown(ctx, inst)
	}
	return nil
}

var _ Binder = (*PostgresBinder)(nil)

type postgresBindParams struct {
	Access    Access `json:"access"`
	Database  string `json:"database"`
	MountPath string `json:"mount_path"`
}

// SecretName is the binding Secret's name in the tenant namespace.
func SecretName(bindingID string) string { return provisioners.ResourceName("binding-", bindingID) }

// Bind issues the logins (the application's, and the owner's for
// migrations on readwrite bindings) and writes the Secret.
func (b *PostgresBinder) Bind(ctx context.Context, inst provisioners.Instance, bindingID string, params map[string]any) (Result, error) {
	var p postgresBindParams
	_ = provisioners.DecodeParams(params, &p)
	if p.Access == "" {
		p.Access = ReadWrite
	}
	if inst.Plan.Postgres.Shared {
		return b.bindShared(ctx, inst, bindingID, p)
	}
	settings, err := postgres.Resolve(inst.Plan, inst.Params)
	if err != nil {
		return Result{}, err
	}
	if p.Database == "" {
		p.Database = settings.Databases[0]
	}
	if !slices.Contains(settings.Databases, p.Database) {
		return Result{}, &ParameterError{Field: "parameters.database", Reason: fmt.Sprintf("%q is not a database of this instance; it has %s",
			p.Database, strings.Join(settings.Databases, ", "))}
	}
	ca, err := b.clusterCA(ctx, inst)
	if err != nil {
		return Result{}, err
	}

	return b.issueAndWrite(ctx, inst, bindingID, p.Access, b.conn(inst, bindingID, settings, p, ca))
}

// issueAndWrite issues the logins (the application's, and the owner's for
// migrations on readwrite bindings) and writes the Secret of conn.
func (b *PostgresBinder) issueAndWrite(ctx context.Context, inst provisioners.Instance, bindingID string, access Access, conn PostgresConn) (Result, error) {
	logins := map[string]Login{}
	// revokeAll undoes a half-made bind; a login it cannot revoke is named
	// in the error (it still ends with its lease).
	revokeAll := func() error {
		var errs []error
		for _, l := range logins {
			errs = append(errs, b.Logins.Revoke(ctx, inst, l))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("revoking what was issued failed: %w", err)
		}
		return nil
	}
	app, err := b.Logins.Issue(ctx, inst, bindingID, access)
	if err != nil {
		return Result{}, fmt.Errorf("issue %s login: %w", access, err)
	}
	logins["app"] = app
	var migrator *Login
	switch access {
	case ReadWrite:
		m, err := b.Logins.Issue(ctx, inst, bindingID, Owner)
		if err != nil {
			return Result{}, errors.Join(fmt.Errorf("issue owner login for migrations: %w", err), revokeAll())
		}
		logins["migrations"] = m
		migrator = &m
	case Owner:
		migrator = &app
	}

	conn.App, conn.Migrator = app, migrator
	data := PostgresSecret(conn)
	if err := writeSecret(ctx, b.Kube, inst, bindingID, conn.SecretName, "postgresql", data); err != nil {
		return Result{}, errors.Join(err, revokeAll())
	}
	creds := make(map[string]any, len(data))
	for k, v := range data {
		creds[k] = v
	}
	return Result{Credentials: creds, SecretName: conn.SecretName, Logins: logins}, nil
}

func (b *PostgresBinder) conn(inst provisioners.Instance, bindingID string, s postgres.Settings, p postgresBindParams, ca string) PostgresConn {
	n := postgres.NamesOf(inst)
	svc := func(name string) string { return name + "." + inst.Namespace + ".svc" }
	pg := inst.Plan.Postgres
	c := PostgresConn{
		SecretName: SecretName(bindingID), Port: 5432, Database: p.Database, Access: p.Access,
		DirectHost: svc(n.Cluster + "-rw"), OwnerRole: postgres.OwnerRole, CAPEM: ca, MountPath: p.MountPath,
		PoolSize: PoolSize(pg.MaxConnections, 0), XA: s.XA,
	}
	switch {
	case p.Access == ReadWrite && pg.Pooler != nil:
		c.Host = svc(n.Pooler)
		c.TransactionPooling = pg.Pooler.Mode == "transaction"
		c.PoolSize = PoolSize(pg.MaxConnections, pg.Pooler.DefaultPoolSize)
	case p.Access == ReadOnly && s.Instances() > 1:
		c.Host = svc(n.Cluster + "-ro")
	default:
		c.Host = c.DirectHost
	}
	return c
}

// clusterCA reads the CA that signs the cluster's server certificates from
// the Secret CASecret names (cert-manager's, or CloudNativePG's own CA).
func (b *PostgresBinder) clusterCA(ctx context.Context, inst provisioners.Instance) (string, error) {
	return secretCA(ctx, b.Kube, inst.Namespace, b.CASecret(inst), "cluster's CA certificate")
}

// Ready is true when every login works.
func (b *PostgresBinder) Ready(ctx context.Context, inst provisioners.Instance, r Result) (provisioners.Progress, error) {
	for _, l := range r.Logins {
		ok, why, err := b.Logins.Ready(ctx, inst, l)
		if err != nil {
			return provisioners.Progress{}, err
		}
		if !ok {
			return provisioners.Progressing(why), nil
		}
	}
	return provisioners.Progress{State: provisioners.Succeeded, Description: "credentials ready"}, nil
}

// Forget revokes whatever logins of the binding the credential source can
// find by the binding id (CloudNativePG DatabaseRoles and their Secrets
// are named from it) and deletes the binding Secret.
func (b *PostgresBinder) Forget(ctx context.Context, inst provisioners.Instance, bindingID string) error {
	var errs []error
	if f, ok := b.Logins.(bindingForgetter); ok {
		errs = append(errs, f.ForgetBinding(ctx, inst, bindingID))
	}
	errs = append(errs, b.Kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: SecretName(bindingID)}))
	return errors.Join(errs...)
}

// RevokeUnrecorded revokes the binding's OpenBao leases; CloudNativePG
// logins are named from the binding id and a repeated Bind sets their
// passwords anew.
func (b *PostgresBinder) RevokeUnrecorded(ctx context.Context, inst provisioners.Instance, bindingID string) error {
	if s, ok := b.Logins.(*OpenBaoSource); ok {
		return s.ForgetBinding(ctx, inst, bindingID)
	}
	return nil
}

// bindingForgetter is a credential source whose logins are named from the
// binding id, so that an interrupted bind's logins can be found without a
// record of them.
type bindingForgetter interface {
	ForgetBinding(ctx context.Context, inst provisioners.Instance, bindingID string) error
}

// ForgetBinding deletes the DatabaseRoles (and their password Secrets) of
// every access level of the binding.
func (s *RoleSource) ForgetBinding(ctx context.Context, inst provisioners.Instance, bindingID string) error {
	var errs []error
	for _, a := range accessLevels {
		name, _ := roleNames(bindingID, a)
		errs = append(errs, s.Revoke(ctx, inst, Login{Handle: name}))
	}
	return errors.Join(errs...)
}

// Unbind revokes the logins and deletes the Secret.
func (b *PostgresBinder) Unbind(ctx context.Context, inst provisioners.Instance, r Result) error {
	var errs []error
	for _, l := range r.Logins {
		errs = append(errs, b.Logins.Revoke(ctx, inst, l))
	}
	if r.SecretName != "" {
		errs = append(errs, b.Kube.Delete(ctx, provisioners.Ref{GVK: secretGVK, Namespace: inst.Namespace, Name: r.SecretName}))
	}
	return errors.Join(errs...)
}
