package postgres

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

func TestWatched(t *testing.T) {
	tests := []struct {
		plan   string
		params map[string]any
		want   []string // Kind/name suffix after the instance name
	}{
		{"dev-lite", nil, []string{"Cluster/", "Database/-db-app"}},
		{"standard", nil, []string{"Cluster/", "Database/-db-app", "Pooler/-pooler"}},
		{"ha", map[string]any{"databases": []any{"orders", "order_audit"}},
			[]string{"Cluster/", "Database/-db-orders", "Database/-db-order-audit", "Pooler/-pooler"}},
		// Parameters that do not resolve still watch the Cluster (and the
		// Pooler), so a broken update can be reported.
		{"standard", map[string]any{"resources": map[string]any{"cpu": "99"}}, []string{"Cluster/", "Pooler/-pooler"}},
		// A seed runs in CloudNativePG's initdb Job, a copy in its import
		// Job: their failure is the provision's.
		{"dev-lite", map[string]any{"seed": map[string]any{"secret": "fixtures"}}, []string{"Cluster/", "Job/-1-initdb", "Database/-db-app"}},
		{"dev-lite", copyParams(map[string]any{"public.t.c": "hash"}), []string{"Cluster/", "Job/-1-import", "Database/-db-app"}},
	}
	for _, tc := range tests {
		t.Run(tc.plan, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			refs := (&Provisioner{Config: baseConfig()}).Watched(inst)
			got := make([]string, len(refs))
			for i, r := range refs {
				g.Expect(r.Namespace).To(Equal(testNamespace))
				if r.GVK.Kind == "Job" {
					g.Expect(r.GVK.Group).To(Equal("batch"))
				} else {
					g.Expect(r.GVK.Group).To(Equal("postgresql.cnpg.io"))
				}
				g.Expect(r.GVK.Version).To(Equal("v1"))
				g.Expect(r.Name).To(HavePrefix(inst.Name))
				got[i] = r.GVK.Kind + "/" + r.Name[len(inst.Name):]
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// Every watched object is one Build renders, with the same identity.
func TestWatchedObjectsAreBuilt(t *testing.T) {
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, plan, map[string]any{"databases": []any{"a", "b_c"}})
			p := &Provisioner{Config: baseConfig()}
			objs, err := p.Build(inst)
			g.Expect(err).NotTo(HaveOccurred())
			built := map[provisioners.Ref]bool{}
			for _, o := range objs {
				built[provisioners.RefOf(o)] = true
			}
			for _, r := range p.Watched(inst) {
				g.Expect(built).To(HaveKey(r), "watched %v is not built", r)
			}
		})
	}
}

// observedWorld is what the operator reports about an instance.
type observedWorld struct {
	g        Gomega
	p        *Provisioner
	inst     provisioners.Instance
	refs     []provisioners.Ref
	observed map[provisioners.Ref]*unstructured.Unstructured
}

// healthyWorld has every watched object built, at generation 1, and
// reported ready by the operator.
func healthyWorld(t *testing.T, plan string, params map[string]any) *observedWorld {
	t.Helper()
	return healthyWorldOf(t, testInstance(t, plan, params))
}

// healthyWorldOf is healthyWorld for an instance made by the test.
func healthyWorldOf(t *testing.T, inst provisioners.Instance) *observedWorld {
	t.Helper()
	w := &observedWorld{g: NewWithT(t), p: &Provisioner{Config: baseConfig()}, inst: inst}
	objs, err := w.p.Build(w.inst)
	w.g.Expect(err).NotTo(HaveOccurred())
	w.refs = w.p.Watched(w.inst)
	w.observed = map[provisioners.Ref]*unstructured.Unstructured{}
	for _, o := range objs {
		r := provisioners.RefOf(o)
		if !containsRef(w.refs, r) {
			continue
		}
		o = o.DeepCopy()
		o.SetGeneration(1)
		switch o.GetKind() {
		case "Cluster":
			instances, _, _ := unstructured.NestedInt64(o.Object, "spec", "instances")
			o.Object["status"] = map[string]any{
				"phase":          "Cluster in healthy state",
				"readyInstances": instances,
				"instances":      instances,
				"currentPrimary": o.GetName() + "-1",
				"conditions": []any{
					map[string]any{"type": "Ready", "status": "True", "reason": "ClusterIsReady"},
					map[string]any{"type": "ContinuousArchiving", "status": "True"},
				},
			}
		case "Database":
			o.Object["status"] = map[string]any{"applied": true, "observedGeneration": int64(1)}
		case "Pooler":
			instances, _, _ := unstructured.NestedInt64(o.Object, "spec", "instances")
			o.Object["status"] = map[string]any{"instances": instances}
		}
		w.observed[r] = o
	}
	// CloudNativePG's bootstrap Job (a seed's or a copy's) is the
	// operator's, not built: it ran once and succeeded.
	for _, r := range w.refs {
		if r.GVK.Kind == "Job" {
			job := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"succeeded": int64(1),
				"conditions": []any{map[string]any{"type": "Complete", "status": "True"}}}}}
			job.SetGroupVersionKind(r.GVK)
			job.SetNamespace(r.Namespace)
			job.SetName(r.Name)
			w.observed[r] = job
		}
	}
	w.g.Expect(w.observed).To(HaveLen(len(w.refs)))
	return w
}

func containsRef(refs []provisioners.Ref, r provisioners.Ref) bool {
	for _, x := range refs {
		if x == r {
			return true
		}
	}
	return false
}

func (w *observedWorld) get(kind string) *unstructured.Unstructured {
	for _, r := range w.refs {
		if r.GVK.Kind == kind {
			return w.observed[r]
		}
	}
	w.g.Expect(kind).To(BeEmpty(), "no watched object of kind %s", kind)
	return nil
}

func (w *observedWorld) drop(kind string) {
	for _, r := range w.refs {
		if r.GVK.Kind == kind {
			delete(w.observed, r)
			return
		}
	}
}

func (w *observedWorld) set(kind string, value any, fields ...string) {
	w.g.Expect(unstructured.SetNestedField(w.get(kind).Object, value, fields...)).To(Succeed())
}

func (w *observedWorld) setCluster(value any, fields ...string) { w.set("Cluster", value, fields...) }

func (w *observedWorld) setDatabase(value any, fields ...string) { w.set("Database", value, fields...) }

func (w *observedWorld) setPooler(value any, fields ...string) { w.set("Pooler", value, fields...) }

// assessNow is the clock of the assessments.
var assessNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func (w *observedWorld) assess() provisioners.Progress {
	return w.p.Assess(w.inst, w.observed, assessNow)
}

// updated says an update started at (assessNow - ago) and the Cluster
// became Ready at (assessNow - readyAgo).
func (w *observedWorld) updated(ago, readyAgo time.Duration) {
	w.inst.UpdatedAt = assessNow.Add(-ago)
	w.setCluster([]any{map[string]any{"type": "Ready", "status": "True", "reason": "ClusterIsReady",
		"lastTransitionTime": assessNow.Add(-readyAgo).Format(time.RFC3339)}}, "status", "conditions")
}

func TestAssess(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		params map[string]any
		change func(w *observedWorld)
		state  provisioners.State
		// description must contain every one of these.
		desc []string
	}{
		{name: "no cluster yet", plan: "standard",
			change: func(w *observedWorld) { w.observed = map[provisioners.Ref]*unstructured.Unstructured{} },
			state:  provisioners.InProgress, desc: []string{"waiting for the CloudNativePG Cluster"}},
		{name: "cluster without status", plan: "dev-lite",
			change: func(w *observedWorld) { delete(w.get("Cluster").Object, "status") },
			state:  provisioners.InProgress, desc: []string{"waiting for the operator", "0 of 1 instances ready"}},
		{name: "setting up primary", plan: "ha",
			change: func(w *observedWorld) {
				w.setCluster("Setting up primary", "status", "phase")
				w.setCluster(int64(0), "status", "readyInstances")
				w.setCluster([]any{map[string]any{"type": "Ready", "status": "False"}}, "status", "conditions")
			},
			state: provisioners.InProgress, desc: []string{"PostgreSQL: Setting up primary (0 of 3 instances ready)"}},
		{name: "unrecoverable", plan: "standard",
			change: func(w *observedWorld) {
				w.setCluster("Cluster is unrecoverable and needs manual intervention", "status", "phase")
				w.setCluster("primary PVC lost", "status", "phaseReason")
			},
			state: provisioners.Failed, desc: []string{"CloudNativePG reports: Cluster is unrecoverable and needs manual intervention: primary PVC lost"}},
		{name: "unknown plugin", plan: "standard",
			change: func(w *observedWorld) {
				w.setCluster("Cluster cannot proceed to reconciliation due to an unknown plugin being required", "status", "phase")
				w.setCluster("Unknown plugin: 'barman-cloud.cloudnative-pg.io'", "status", "phaseReason")
			},
			// The operator looks again every 10 s: once the platform team
			// installs the plugin, the instance goes on.
			state: provisioners.InProgress, desc: []string{"barman-cloud.cloudnative-pg.io", "installs the barman-cloud plugin", "charts/strata-platform-operators"}},
		{name: "plugin error", plan: "standard",
			change: func(w *observedWorld) {
				w.setCluster("Cluster cannot proceed to reconciliation due to an error while interacting with plugins", "status", "phase")
				w.setCluster(`Encountered an error while interacting with plugins: rpc error: code = Unknown desc = Role.rbac.authorization.k8s.io "pg-x-barman-cloud" not found`, "status", "phaseReason")
			},
			// Seen on the real platform while the plugin was still creating
			// the Role: the operator retries every 15 s and went on.
			state: provisioners.InProgress, desc: []string{"retries a failed call to the backup plugin", "pg-x-barman-cloud\" not found"}},
		{name: "image catalog without a reason", plan: "dev-lite",
			change: func(w *observedWorld) {
				w.setCluster("Cluster has incomplete or invalid image catalog", "status", "phase")
			},
			state: provisioners.Failed, desc: []string{"CloudNativePG reports: Cluster has incomplete or invalid image catalog"}},
		{name: "invalid definition beats a stale Ready", plan: "ha",
			change: func(w *observedWorld) { w.setCluster("Invalid cluster definition", "status", "phase") },
			state:  provisioners.Failed, desc: []string{"Invalid cluster definition"}},
		{name: "failing over is not failed", plan: "ha",
			change: func(w *observedWorld) {
				w.setCluster("Failing over", "status", "phase")
				w.setCluster(int64(2), "status", "readyInstances")
				w.setCluster([]any{map[string]any{"type": "Ready", "status": "False"}}, "status", "conditions")
			},
			state: provisioners.InProgress, desc: []string{"Failing over", "2 of 3"}},
		// CloudNativePG 1.30 writes Ready without observedGeneration
		// (pkg/resources/status/transactions.go), so this guards only
		// against conditions that do carry one.
		{name: "ready condition for an older generation", plan: "standard",
			change: func(w *observedWorld) {
				w.get("Cluster").SetGeneration(2)
				w.setCluster([]any{map[string]any{"type": "Ready", "status": "True", "observedGeneration": int64(1)}}, "status", "conditions")
			},
			state: provisioners.InProgress, desc: []string{"2 of 2 instances ready"}},
		{name: "ready condition for the current generation", plan: "standard",
			change: func(w *observedWorld) {
				w.get("Cluster").SetGeneration(2)
				w.setCluster([]any{map[string]any{"type": "Ready", "status": "True", "observedGeneration": int64(2)}}, "status", "conditions")
			},
			state: provisioners.Succeeded, desc: []string{"PostgreSQL ready: 2 of 2 instances"}},
		// An update: CloudNativePG's Ready carries no generation, so a
		// healthy Cluster confirms an update only once it became Ready
		// after the update started, or stayed healthy for UpdateSettle.
		{name: "update just applied, Ready from before it", plan: "standard",
			change: func(w *observedWorld) { w.updated(5*time.Second, time.Hour) },
			state:  provisioners.InProgress, desc: []string{"waiting for CloudNativePG to act on the update"}},
		{name: "update the operator went through", plan: "standard",
			change: func(w *observedWorld) { w.updated(5*time.Minute, 10*time.Second) },
			state:  provisioners.Succeeded, desc: []string{"PostgreSQL ready: 2 of 2 instances"}},
		{name: "update Ready in the same second it started: not proof", plan: "standard",
			change: func(w *observedWorld) { w.updated(0, 0) },
			state:  provisioners.InProgress},
		{name: "update that restarts nothing, after the settle time", plan: "standard",
			change: func(w *observedWorld) { w.updated(UpdateSettle+time.Second, time.Hour) },
			state:  provisioners.Succeeded},
		{name: "update just before the settle time", plan: "standard",
			change: func(w *observedWorld) { w.updated(UpdateSettle-time.Second, time.Hour) },
			state:  provisioners.InProgress},
		{name: "ready condition missing", plan: "dev-lite",
			change: func(w *observedWorld) { w.setCluster([]any{}, "status", "conditions") },
			state:  provisioners.InProgress},
		{name: "fewer ready instances than wanted", plan: "ha", params: map[string]any{"replicas": float64(4)},
			change: func(w *observedWorld) { w.setCluster(int64(3), "status", "readyInstances") },
			state:  provisioners.InProgress, desc: []string{"3 of 5 instances ready"}},
		{name: "database object missing", plan: "standard",
			change: func(w *observedWorld) { w.drop("Database") },
			state:  provisioners.InProgress, desc: []string{"waiting for database object " + "pg-" + testInstanceID + "-db-app"}},
		{name: "database not applied, with the operator's message", plan: "standard",
			change: func(w *observedWorld) {
				w.setDatabase(false, "status", "applied")
				w.setDatabase(`extension "vector" is not available`, "status", "message")
			},
			state: provisioners.InProgress, desc: []string{`creating database app: extension "vector" is not available`}},
		{name: "database not reconciled yet", plan: "dev-lite",
			change: func(w *observedWorld) { delete(w.get("Database").Object, "status") },
			state:  provisioners.InProgress, desc: []string{"creating database app"}},
		{name: "database applied for an older generation", plan: "ha",
			change: func(w *observedWorld) { w.get("Database").SetGeneration(2) },
			state:  provisioners.InProgress, desc: []string{"creating database app"}},
		{name: "second database not applied", plan: "ha", params: map[string]any{"databases": []any{"orders", "billing"}},
			change: func(w *observedWorld) {
				o := w.observed[w.refs[2]]
				w.g.Expect(unstructured.SetNestedField(o.Object, false, "status", "applied")).To(Succeed())
			},
			state: provisioners.InProgress, desc: []string{"creating database billing"}},
		{name: "pooler missing", plan: "standard",
			change: func(w *observedWorld) { w.drop("Pooler") },
			state:  provisioners.InProgress, desc: []string{"waiting for the PgBouncer pooler"}},
		{name: "pooler instances short", plan: "ha",
			change: func(w *observedWorld) { w.setPooler(int64(1), "status", "instances") },
			state:  provisioners.InProgress, desc: []string{"PgBouncer pooler: 1 of 3 instances"}},
		{name: "pooler without status", plan: "standard",
			change: func(w *observedWorld) { delete(w.get("Pooler").Object, "status") },
			state:  provisioners.InProgress, desc: []string{"PgBouncer pooler: 0 of 2 instances"}},
		{name: "all ready, dev-lite", plan: "dev-lite",
			state: provisioners.Succeeded, desc: []string{"PostgreSQL ready: 1 of 1 instances, primary pg-" + testInstanceID + "-1"}},
		{name: "all ready with WAL archiving", plan: "standard",
			state: provisioners.Succeeded, desc: []string{"2 of 2 instances", "WAL archiving working"}},
		{name: "all ready, archiving not confirmed", plan: "ha",
			change: func(w *observedWorld) {
				w.setCluster([]any{
					map[string]any{"type": "Ready", "status": "True"},
					map[string]any{"type": "ContinuousArchiving", "status": "False"},
				}, "status", "conditions")
			},
			state: provisioners.Succeeded, desc: []string{"3 of 3 instances", "WAL archiving not confirmed yet"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := healthyWorld(t, tc.plan, tc.params)
			if tc.change != nil {
				tc.change(w)
			}
			got := w.assess()
			w.g.Expect(got.State).To(Equal(tc.state), "description: %s", got.Description)
			w.g.Expect(got.Description).NotTo(BeEmpty())
			for _, d := range tc.desc {
				w.g.Expect(got.Description).To(ContainSubstring(d))
			}
		})
	}
}

// dev-lite keeps no backups, so its description never talks about WAL
// archiving, even if the condition happened to be present.
func TestAssessNoArchivingTextWithoutBackups(t *testing.T) {
	w := healthyWorld(t, "dev-lite", nil)
	got := w.assess()
	w.g.Expect(got.State).To(Equal(provisioners.Succeeded))
	w.g.Expect(got.Description).NotTo(ContainSubstring("WAL"))
}

// Every phase CloudNativePG marks as needing intervention fails the
// operation; a healthy or transitional phase never does.
func TestAssessFailedPhases(t *testing.T) {
	for _, phase := range failedPhases {
		t.Run(phase, func(t *testing.T) {
			w := healthyWorld(t, "standard", nil)
			w.setCluster(phase, "status", "phase")
			got := w.assess()
			w.g.Expect(got.State).To(Equal(provisioners.Failed))
			w.g.Expect(got.Description).To(ContainSubstring(phase))
		})
	}
	for _, phase := range []string{"Cluster in healthy state", "Creating a new replica", "Upgrading cluster", "Switchover in progress"} {
		t.Run(phase, func(t *testing.T) {
			w := healthyWorld(t, "standard", nil)
			w.setCluster(phase, "status", "phase")
			w.g.Expect(w.assess().State).NotTo(Equal(provisioners.Failed))
		})
	}
}

// With an issuer configured, an instance whose server certificate is not
// issued says so, naming the issuer, cert-manager's own message, and what
// to check: the instances cannot start without it.
func TestAssessNamesAMissingCertificateIssuer(t *testing.T) {
	g := NewWithT(t)
	c := baseConfig()
	c.ServerCertificates.IssuerName = "platform-ca"
	p := &Provisioner{Config: c}
	inst := testInstance(t, "dev-lite", nil)
	refs := p.Watched(inst)
	cert := refs[len(refs)-1]
	g.Expect(cert.GVK.Kind).To(Equal("Certificate"))
	cluster := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"instances": int64(1)}}}
	certificate := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist",
	}}}}}
	// unableToCreate assesses the Cluster in CloudNativePG's phase for
	// objects it could not create, with reason.
	unableToCreate := func(reason string) provisioners.Progress {
		cluster.Object["status"] = map[string]any{"phase": "Unable to create required cluster objects", "phaseReason": reason}
		return p.Assess(inst, map[provisioners.Ref]*unstructured.Unstructured{refs[0]: cluster, cert: certificate}, time.Now())
	}
	res := p.Assess(inst, map[provisioners.Ref]*unstructured.Unstructured{refs[0]: cluster, cert: certificate}, time.Now())
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(And(
		ContainSubstring("from ClusterIssuer platform-ca"),
		ContainSubstring("cert-manager: Issuing certificate as Secret does not exist"),
		ContainSubstring("kubectl get clusterissuer platform-ca"),
	))

	// CloudNativePG reconciling before cert-manager has issued the
	// certificate reports a phase that is otherwise a failure: it retries
	// by itself, and the certificate is what the instance waits for.
	res = unableToCreate("missing specified server CA secret pg-x-server-tls: Secret \"pg-x-server-tls\" not found")
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(ContainSubstring("from ClusterIssuer platform-ca"))
	delete(cluster.Object, "status")

	// Once issued, the Cluster's own progress is what counts again.
	certificate.Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
	res = p.Assess(inst, map[provisioners.Ref]*unstructured.Unstructured{refs[0]: cluster, cert: certificate}, time.Now())
	g.Expect(res.Description).To(ContainSubstring("0 of 1 instances ready"))

	// The issued certificate, and CloudNativePG still reporting the
	// missing Secret from before it (until its next reconcile, after a
	// back-off): waited for, not a failure.
	secret := NamesOf(inst).ServerCertificate
	res = unableToCreate("missing specified server CA secret " + secret + ": Secret \"" + secret + "\" not found")
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(ContainSubstring("waiting for CloudNativePG to read the server certificate's Secret " + secret))
	// A Kubernetes API call that timed out: CloudNativePG retries it.
	res = unableToCreate("etcdserver: request timed out")
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(ContainSubstring("CloudNativePG retries a Kubernetes API call that failed: etcdserver: request timed out"))
	// Any other object it cannot create is still a failure.
	res = unableToCreate("serviceaccounts \"x\" is forbidden")
	g.Expect(res.State).To(Equal(provisioners.Failed))
}

// A seed whose SQL fails, or a copy whose import or masking fails, fails
// the provision once CloudNativePG's bootstrap Job has failed twice for a
// seed, four times for a copy (or gave up), naming the parameter and what
// to fix, never the SQL; fewer failed pods, or failed pods before a Ready
// Cluster, do not.
func TestAssessFailedBootstrap(t *testing.T) {
	seed := map[string]any{"seed": map[string]any{"config_map": "orders-fixtures", "key": "orders.sql"}}
	copyOf := copyParams(map[string]any{"public.customers.email": "email"})
	settingUp := func(w *observedWorld) {
		w.setCluster("Setting up primary", "status", "phase")
		w.setCluster(int64(0), "status", "readyInstances")
		w.setCluster([]any{map[string]any{"type": "Ready", "status": "False"}}, "status", "conditions")
	}
	tests := []struct {
		name   string
		params map[string]any
		world  func(w *observedWorld)
		state  provisioners.State
		want   []string
	}{
		{name: "seed: Job not created yet", params: seed, state: provisioners.InProgress, want: []string{"Setting up primary"},
			world: func(w *observedWorld) { settingUp(w); w.drop("Job") }},
		{name: "seed: one failed pod, retrying", params: seed, state: provisioners.InProgress, want: []string{"Setting up primary"},
			world: func(w *observedWorld) {
				settingUp(w)
				w.set("Job", map[string]any{"failed": int64(1), "active": int64(1)}, "status")
			}},
		{name: "seed: failed twice", params: seed, state: provisioners.Failed,
			want: []string{"parameters.seed: the seed SQL (ConfigMap orders-fixtures, key orders.sql) failed", "failed 2 times",
				"deprovision this instance and provision it again", "kubectl -n " + testNamespace + " logs job/"},
			world: func(w *observedWorld) {
				settingUp(w)
				w.set("Job", map[string]any{"failed": int64(2), "active": int64(1)}, "status")
			}},
		{name: "seed: back-off limit reached", params: seed, state: provisioners.Failed, want: []string{"parameters.seed:"},
			world: func(w *observedWorld) {
				settingUp(w)
				w.set("Job", map[string]any{"failed": int64(1), "conditions": []any{map[string]any{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}}}, "status")
			}},
		{name: "seed: CloudNativePG gave up on the Job", params: seed, state: provisioners.Failed, want: []string{"parameters.seed:", "-1-initdb"},
			world: func(w *observedWorld) {
				settingUp(w)
				w.drop("Job")
				w.setCluster("Cluster is unrecoverable and needs manual intervention", "status", "phase")
				w.setCluster("Instance creation failed for the following jobs: "+w.inst.Name+"-1-initdb. Check the job logs to investigate the cause of the failure.", "status", "phaseReason")
			}},
		{name: "seed: a failed pod before a Ready Cluster is history", params: seed, state: provisioners.Succeeded, want: []string{"PostgreSQL ready"},
			world: func(w *observedWorld) {
				w.set("Job", map[string]any{"failed": int64(2), "succeeded": int64(1)}, "status")
			}},
		{name: "copy: import failed three times, the source's login may still be coming", params: copyOf, state: provisioners.InProgress, want: []string{"Setting up primary"},
			world: func(w *observedWorld) {
				settingUp(w)
				w.set("Job", map[string]any{"failed": int64(3), "active": int64(1)}, "status")
			}},
		{name: "copy: import failed four times", params: copyOf, state: provisioners.Failed,
			want:  []string{"parameters.copy_of.mask: CloudNativePG's import of instance " + testSourceID, "-1-import failed 4 times", "Fix copy_of.mask"},
			world: func(w *observedWorld) { settingUp(w); w.set("Job", map[string]any{"failed": int64(4)}, "status") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst := testInstance(t, "dev-lite", tc.params)
			if tc.params["copy_of"] != nil {
				inst.Copy = &provisioners.CopySource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Database: "app", CASecret: "pg-" + testSourceID + "-ca"}
			}
			w := healthyWorldOf(t, inst)
			tc.world(w)
			got := w.assess()
			w.g.Expect(got.State).To(Equal(tc.state), got.Description)
			for _, s := range tc.want {
				w.g.Expect(got.Description).To(ContainSubstring(s))
			}
		})
	}
}
