package broker

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

const copyID = "c0b7c0b7-9f8e-4d7c-b6a5-948372615041"

func copyOfParams(from string) string {
	return `{"copy_of": {"instance": "` + from + `", "mask": {"public.customers.email": "email", "public.customers.name": "hash"}}}`
}

func TestCopyProvisionsAMaskedCopyOfTheSource(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	src := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, `{"databases": ["orders", "audit"]}`)

	_, err := e.b.Provision(e.ctx, copyID, pgDetails(catalog.PostgresDevLiteID, copyOfParams(instanceID)), true)
	g.Expect(err).NotTo(HaveOccurred())
	rec := e.record(t, copyID)
	g.Expect(rec.Copy).To(Equal(&provisioners.CopySource{InstanceID: instanceID, Name: src.Name, Database: "orders", CASecret: src.Name + "-server-tls"}))

	// The copy imports the source's database over its read-write Service,
	// verified against the source's CA.
	cluster := e.kube.Objs[refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, rec.Name)]
	g.Expect(cluster).NotTo(BeNil())
	imp, _, _ := unstructured.NestedMap(cluster.Object, "spec", "bootstrap", "initdb", "import")
	g.Expect(imp).To(HaveKeyWithValue("type", "microservice"))
	g.Expect(imp).To(HaveKeyWithValue("databases", []any{"orders"}))
	g.Expect(imp["postImportApplicationSQL"]).To(HaveLen(2), "the masking block and one table rewrite")
	ext, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "externalClusters")
	g.Expect(ext).To(HaveLen(1))
	g.Expect(ext[0]).To(HaveKeyWithValue("connectionParameters", HaveKeyWithValue("host", src.Name+"-rw."+tenantNS+".svc")))
	g.Expect(ext[0]).To(HaveKeyWithValue("connectionParameters", HaveKeyWithValue("sslmode", "verify-full")))
	g.Expect(ext[0]).To(HaveKeyWithValue("sslRootCert", map[string]any{"name": src.Name + "-server-tls", "key": "ca.crt"}))

	// Its login on the source: a read-only DatabaseRole of the source
	// cluster, recorded as the copy's (so the copy's deprovision drops
	// it), with a password Secret written once, outside the record.
	role := e.kube.Objs[refOf("postgresql.cnpg.io/v1", "DatabaseRole", tenantNS, rec.Name+"-copy-source")]
	g.Expect(role).NotTo(BeNil())
	g.Expect(role.Object["spec"]).To(HaveKeyWithValue("cluster", map[string]any{"name": src.Name}))
	g.Expect(role.Object["spec"]).To(HaveKeyWithValue("inRoles", []any{"strata_readonly"}))
	g.Expect(rec.Objects).To(ContainElement(HaveField("Kind", "DatabaseRole")))
	secret := e.kube.Objs[refOf("v1", "Secret", tenantNS, rec.Name+"-copy-source")]
	g.Expect(secret).NotTo(BeNil())
	password := secretData(secret, "password")
	g.Expect(password).To(HaveLen(43))
	g.Expect(e.secretRecord(t, instanceSecretName(copyID)).Data["record"]).NotTo(ContainSubstring(password))

	// Ready; an update cannot copy again.
	e.operatorsAct(t, copyID)
	res, err := e.b.InstanceOperation(e.ctx, copyID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	_, err = e.b.Update(e.ctx, copyID, pgUpdate("", `{"copy_of": {"instance": "`+instanceID+`", "mask": {}}}`), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "", "parameters.copy_of: an instance is copied once")
	// A copy stays on a plan without backups.
	_, err = e.b.Update(e.ctx, copyID, pgUpdate(catalog.PostgresStandardID, ""), true)
	expectFailure(g, err, http.StatusBadRequest, "", "parameters.copy_of: plan standard keeps backups")
}

func TestCopyIsRefusedSayingWhatToChange(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.client.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherNS}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	// A source still provisioning.
	if _, err := e.b.Provision(e.ctx, otherID, pgDetails(catalog.PostgresDevLiteID, ""), true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, plan, params, namespace string
		status                        int
		code, mention                 string
	}{
		{name: "unknown source", params: copyOfParams("no-such-instance"), status: http.StatusBadRequest, code: "InvalidParameters",
			mention: "parameters.copy_of.instance: this broker knows no instance no-such-instance"},
		{name: "itself", params: copyOfParams(copyID), status: http.StatusBadRequest,
			mention: "parameters.copy_of.instance: an instance cannot be a copy of itself"},
		{name: "another namespace", namespace: otherNS, params: copyOfParams(instanceID), status: http.StatusBadRequest,
			mention: "a copy reads only an instance of its own namespace"},
		{name: "source not ready", params: copyOfParams(otherID), status: http.StatusUnprocessableEntity, code: "SourceNotReady",
			mention: "has not finished provisioning"},
		{name: "plan with backups", plan: catalog.PostgresStandardID, params: copyOfParams(instanceID), status: http.StatusBadRequest,
			mention: "parameters.copy_of: plan standard keeps backups"},
		{name: "no such database", params: `{"copy_of": {"instance": "` + instanceID + `", "database": "billing", "mask": {}}}`, status: http.StatusBadRequest,
			mention: `parameters.copy_of.database: instance ` + instanceID + ` has no database "billing"`},
		{name: "no mask", params: `{"copy_of": {"instance": "` + instanceID + `"}}`, status: http.StatusBadRequest,
			mention: "parameters.copy_of: missing property 'mask'"},
		{name: "unknown strategy", params: `{"copy_of": {"instance": "` + instanceID + `", "mask": {"public.t.c": "scramble"}}}`, status: http.StatusBadRequest,
			mention: "parameters.copy_of.mask.public.t.c"},
		{name: "column not schema.table.column", params: `{"copy_of": {"instance": "` + instanceID + `", "mask": {"t.c": "hash"}}}`, status: http.StatusBadRequest,
			mention: "parameters.copy_of.mask"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			plan := tc.plan
			if plan == "" {
				plan = catalog.PostgresDevLiteID
			}
			e.expectProvisionRefused(g, copyID, plan, tc.params, tc.namespace, tc.status, tc.code, tc.mention)
		})
	}
}

func TestSeedIsReadFromTheTenantsConfigMapOnce(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	params := `{"seed": {"config_map": "fixtures"}}`

	// No ConfigMap yet: 400 naming the parameter, nothing recorded.
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
	expectFailure(g, err, http.StatusBadRequest, "InvalidParameters", "parameters.seed.config_map: there is no ConfigMap fixtures in namespace "+tenantNS)
	_, err = e.b.Store.GetInstance(e.ctx, instanceID)
	g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())

	configMap := func(data map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "fixtures", "namespace": tenantNS},
			"data":     data,
		}}
	}
	e.kube.Store(configMap(map[string]any{"other.sql": "SELECT 1"}))
	_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
	expectFailure(g, err, http.StatusBadRequest, "InvalidParameters", `parameters.seed.key: ConfigMap fixtures has no key "seed.sql"`)

	e.kube.Store(configMap(map[string]any{"seed.sql": "INSERT INTO t VALUES (1);"}))
	_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
	g.Expect(err).NotTo(HaveOccurred())
	rec := e.record(t, instanceID)
	seed := e.kube.Objs[refOf("v1", "Secret", tenantNS, rec.Name+"-seed")]
	g.Expect(seed).NotTo(BeNil())
	sql := secretData(seed, "seed.sql")
	g.Expect(sql).To(ContainSubstring("\nINSERT INTO t VALUES (1);\n"))
	g.Expect(sql).To(ContainSubstring("OWNER TO strata_owner"))
	refs, _, _ := unstructured.NestedSlice(e.kube.Objs[refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, rec.Name)].Object,
		"spec", "bootstrap", "initdb", "postInitApplicationSQLRefs", "secretRefs")
	g.Expect(refs).To(Equal([]any{map[string]any{"name": rec.Name + "-seed", "key": "seed.sql"}}))

	// A change of the ConfigMap later does not reach the instance: the
	// seed ran once, at its creation.
	e.kube.Store(configMap(map[string]any{"seed.sql": "DROP TABLE t;"}))
	e.operatorsAct(t, instanceID)
	_, err = e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(err).NotTo(HaveOccurred())
	sql = secretData(e.kube.Objs[refOf("v1", "Secret", tenantNS, rec.Name+"-seed")], "seed.sql")
	g.Expect(sql).NotTo(ContainSubstring("DROP TABLE"))
}

// secretData is a stored Secret's value of key.
func secretData(o *unstructured.Unstructured, key string) string {
	enc, _, _ := unstructured.NestedString(o.Object, "data", key)
	raw, _ := base64.StdEncoding.DecodeString(enc)
	return string(raw)
}
