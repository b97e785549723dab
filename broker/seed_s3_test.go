package broker

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const seedS3Params = `{"seed": {"s3": {"bucket": "orders-dumps", "key": "prod/orders.pgdump", "endpoint": "https://s3.example.net", "credentials_secret": "orders-s3"}}}`

// provisionSeededFromS3 provisions instanceID seeded from S3
// (seedS3Params, its keys stored) and the operators make it ready.
func (e *testEnv) provisionSeededFromS3(t *testing.T) {
	t.Helper()
	e.storeS3Keys()
	if _, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, seedS3Params), true); err != nil {
		t.Fatalf("provision seeded from S3: %v", err)
	}
	e.operatorsAct(t, instanceID)
}

func (e *testEnv) storeS3Keys() {
	e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "orders-s3", "namespace": tenantNS},
		"stringData": map[string]any{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
	}})
}

// seedJob is the instance's seed Job, nil when there is none.
func (e *testEnv) seedJob(t *testing.T, id string) *unstructured.Unstructured {
	t.Helper()
	inst, _ := e.instance(t, id)
	o, _ := e.kube.Get(e.ctx, postgres.S3SeedJobRef(inst))
	return o
}

// jobEnds does what the Job controller and the kubelet do when the Job's
// pod ends: a condition on the Job, and the pod with its containers'
// states (the fetch's termination message when it failed).
func (e *testEnv) jobEnds(t *testing.T, id string, complete bool, message string) {
	t.Helper()
	job := e.seedJob(t, id)
	if job == nil {
		t.Fatal("no seed Job")
	}
	cond := "Complete"
	exit := int64(0)
	if !complete {
		cond, exit = "Failed", 1
	}
	e.kube.Lock()
	e.kube.Objs[provisioners.RefOf(job)].Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": cond, "status": "True", "reason": "BackoffLimitExceeded"}}}
	e.kube.Unlock()
	e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": job.GetName() + "-x7k2p", "namespace": tenantNS,
			"labels": map[string]any{"batch.kubernetes.io/job-name": job.GetName()}},
		"status": map[string]any{"initContainerStatuses": []any{map[string]any{"name": "fetch",
			"state": map[string]any{"terminated": map[string]any{"exitCode": exit, "message": message}}}}},
	}})
}

func roleSecrets(e *testEnv) []string {
	var names []string
	for _, o := range e.kube.ofKind("DatabaseRole") {
		names = append(names, o.GetName())
	}
	return names
}

// A seed from S3: refused without its credentials Secret; then, once the
// instance is ready, an owner login (a DatabaseRole here) and the Job,
// the provision in progress "seeding from s3://…" until the Job is
// complete, across reconcile passes without issuing a second login or
// Job; then the login and the Job are gone and the provision succeeded.
func TestSeedFromS3(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.pg.Config.SeedImage = "registry.example/strata-broker:1.0"
	e.pg.Config.SeedCABundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, seedS3Params), true)
	expectFailure(g, err, 400, "", "parameters.seed.s3.credentials_secret: there is no Secret orders-s3 in namespace team-a")
	_, err = e.b.Store.GetInstance(e.ctx, instanceID)
	g.Expect(err).To(MatchError(ErrNotFound), "a refused provision leaves no record")

	e.storeS3Keys()
	_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, seedS3Params), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.seedJob(t, instanceID)).To(BeNil(), "no Job before the instance is ready")
	e.operatorsAct(t, instanceID)

	res, err := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(HavePrefix("seeding from s3://orders-dumps/prod/orders.pgdump: waiting for the seed's login"))
	g.Expect(roleSecrets(e)).To(HaveLen(1))
	login := e.record(t, instanceID).SeedS3
	g.Expect(login).NotTo(BeNil())
	g.Expect(login.SecretName).To(Equal(binding.SecretName(seedLoginID(provisioners.Instance{ID: instanceID}))))

	e.rolesApplied()
	for range 3 {
		e.b.ReconcileOnce(e.ctx, 1, false)
	}
	res, _ = e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res).To(Equal(LastOperationResult{State: provisioners.InProgress, Description: "seeding from s3://orders-dumps/prod/orders.pgdump"}))
	g.Expect(roleSecrets(e)).To(HaveLen(1), "one login across passes")
	g.Expect(e.record(t, instanceID).SeedS3.Handles).To(Equal(login.Handles))
	job := e.seedJob(t, instanceID)
	g.Expect(job).NotTo(BeNil())
	g.Expect(job.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, instanceID))
	spec := job.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	restore := spec["containers"].([]any)[0].(map[string]any)
	g.Expect(restore["env"]).To(ContainElement(HaveKeyWithValue("valueFrom", map[string]any{"secretKeyRef": map[string]any{"name": login.SecretName, "key": "password"}})))
	fetch := spec["initContainers"].([]any)[0].(map[string]any)
	g.Expect(fetch["image"]).To(Equal("registry.example/strata-broker:1.0"))
	g.Expect(fetch["env"]).To(ContainElement(HaveKeyWithValue("value", e.pg.Config.SeedCABundle)))
	g.Expect(fetch["args"]).To(ContainElements("--endpoint-url", "https://s3.example.net"))

	e.jobEnds(t, instanceID, true, "")
	res, _ = e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	g.Expect(res.Description).To(And(HavePrefix("PostgreSQL ready"), HaveSuffix("; seeded from s3://orders-dumps/prod/orders.pgdump")))
	g.Expect(e.seedJob(t, instanceID)).To(BeNil(), "the Job is deleted once complete")
	g.Expect(roleSecrets(e)).To(BeEmpty(), "the login is revoked")
	g.Expect(e.kube.has(refOf("v1", "Secret", tenantNS, login.SecretName))).To(BeFalse())
	g.Expect(e.record(t, instanceID).SeedS3.Done).To(BeTrue())
}

// A Job that fails fails the provision with its pod's termination
// message (the fetch's, naming the parameter); the login goes at once, the
// Job stays for its log until the deprovision, which removes it.
func TestSeedFromS3Fails(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.pg.Config.SeedImage = "registry.example/strata-broker:1.0"
	e.provisionSeededFromS3(t)
	e.b.ReconcileOnce(e.ctx, 1, false)
	e.rolesApplied()
	e.b.ReconcileOnce(e.ctx, 1, false)
	g.Expect(e.seedJob(t, instanceID)).NotTo(BeNil())

	const why = "parameters.seed.s3.key: there is no object s3://orders-dumps/prod/orders.pgdump (S3 404 NoSuchKey); upload the dump first"
	e.jobEnds(t, instanceID, false, why)
	res, _ := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(HavePrefix(why))
	g.Expect(res.Description).To(ContainSubstring("kubectl -n team-a logs job/" + e.seedJob(t, instanceID).GetName()))
	g.Expect(roleSecrets(e)).To(BeEmpty(), "the login is revoked at the failure")
	g.Expect(e.seedJob(t, instanceID)).NotTo(BeNil(), "the failed Job stays for its log")

	_, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.seedJob(t, instanceID)).To(BeNil(), "deprovision deletes the Job")
	for _, o := range e.kube.ofKind("Secret") {
		g.Expect(o.GetName()).NotTo(HavePrefix("binding-"), "no login Secret is left")
		g.Expect(strings.HasPrefix(o.GetName(), "strata-b-")).To(BeFalse())
	}
}

// Exactly one credential, and S3 only over https, are the schema's and
// Resolve's; each refusal names the parameter.
func TestSeedFromS3Refusals(t *testing.T) {
	e := newTestEnv(t)
	e.storeS3Keys()
	e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "half-keys", "namespace": tenantNS},
		"stringData": map[string]any{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"},
	}})
	for params, mention := range map[string]string{
		`{"seed": {"s3": {"bucket": "bk1", "key": "k"}}}`:                                                                   "parameters.seed.s3: name exactly one of credentials_secret",
		`{"seed": {"s3": {"bucket": "bk1", "key": "k", "credentials_secret": "orders-s3", "service_account": "sa"}}}`:       "parameters.seed.s3: name exactly one",
		`{"seed": {"s3": {"bucket": "bk1", "key": "k", "credentials_secret": "orders-s3", "endpoint": "http://s3.local"}}}`: "parameters.seed.s3.endpoint",
		`{"seed": {"s3": {"bucket": "B!", "key": "k", "credentials_secret": "orders-s3"}}}`:                                 "parameters.seed.s3.bucket",
		`{"seed": {"s3": {"bucket": "bk1", "credentials_secret": "orders-s3"}}}`:                                            "parameters.seed.s3",
		`{"seed": {"secret": "x", "s3": {"bucket": "bk1", "key": "k", "credentials_secret": "orders-s3"}}}`:                 "parameters.seed: name exactly one of config_map, secret or s3",
		`{"seed": {"s3": {"bucket": "bk1", "key": "k", "credentials_secret": "half-keys"}}}`:                                "parameters.seed.s3.credentials_secret: Secret half-keys has no key AWS_SECRET_ACCESS_KEY",
		`{"seed": {"s3": {"bucket": "bk1", "key": "k", "service_account": "orders-seeder"}}}`:                               "parameters.seed.s3.service_account: there is no ServiceAccount orders-seeder",
	} {
		t.Run(params, func(t *testing.T) {
			g := NewWithT(t)
			_, err := e.b.Provision(e.ctx, otherID, pgDetails(catalog.PostgresDevLiteID, params), true)
			expectFailure(g, err, 400, "", mention)
		})
	}
}

// A pass that issued the login but could not record it (another writer
// won the record) leaves no second login: the next pass revokes what was
// issued under the seed's id before issuing and recording one. A retried
// provision after a failed seed removes the old Job and starts again.
func TestSeedFromS3Resumes(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.pg.Config.SeedImage = "registry.example/strata-broker:1.0"
	e.provisionSeededFromS3(t)
	e.conflictOn(instanceSecretName(instanceID), 2) // the seed's write and the pass's own
	e.b.ReconcileOnce(e.ctx, 1, false)
	g.Expect(e.record(t, instanceID).SeedS3).To(BeNil(), "the login was not recorded")
	g.Expect(roleSecrets(e)).To(HaveLen(1), "issued, unrecorded")
	e.b.ReconcileOnce(e.ctx, 1, false)
	g.Expect(e.record(t, instanceID).SeedS3).NotTo(BeNil())
	g.Expect(roleSecrets(e)).To(HaveLen(1), "the unrecorded login was replaced, not doubled")
	e.rolesApplied()
	e.b.ReconcileOnce(e.ctx, 1, false)
	first := e.seedJob(t, instanceID)
	g.Expect(first).NotTo(BeNil())

	e.jobEnds(t, instanceID, false, "parameters.seed.s3: reading s3://orders-dumps/prod/orders.pgdump was denied (S3 403 AccessDenied)")
	res, _ := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res.State).To(Equal(provisioners.Failed))

	// The same request again retries the failed provision.
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, seedS3Params), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.b.ReconcileOnce(e.ctx, 1, false)
	g.Expect(e.seedJob(t, instanceID)).To(BeNil(), "the failed attempt's Job is deleted first")
	// With it its pod (foreground deletion; memKube has no garbage
	// collector).
	for _, o := range e.kube.ofKind("Pod") {
		g.Expect(e.kube.Delete(e.ctx, provisioners.RefOf(o))).To(Succeed())
	}
	e.b.ReconcileOnce(e.ctx, 1, false)
	e.rolesApplied()
	e.b.ReconcileOnce(e.ctx, 1, false)
	again := e.seedJob(t, instanceID)
	g.Expect(again).NotTo(BeNil(), "a new Job")
	g.Expect(again.Object).NotTo(HaveKey("status"), "not the failed one")
	res, _ = e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res).To(Equal(LastOperationResult{State: provisioners.InProgress, Description: "seeding from s3://orders-dumps/prod/orders.pgdump"}))
}

// Without the seed image (a broker configured by hand, not by the chart)
// the provision fails once the instance is ready, saying what to set, and
// the login issued for the Job is revoked.
func TestSeedFromS3WithoutSeedImage(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionSeededFromS3(t)
	e.b.ReconcileOnce(e.ctx, 1, false)
	e.rolesApplied()
	res, _ := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(ContainSubstring("postgres.seedImage"))
	g.Expect(roleSecrets(e)).To(BeEmpty())
	g.Expect(e.seedJob(t, instanceID)).To(BeNil())
}
