package postgres

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

func TestRestoreRequest(t *testing.T) {
	p := &Provisioner{Config: baseConfig()}
	for _, tc := range []struct {
		name    string
		params  map[string]any
		want    *provisioners.RestoreRequest
		wantErr string
	}{
		{name: "none", params: map[string]any{"replicas": float64(1)}},
		{name: "latest", params: map[string]any{"restore": map[string]any{"from_instance": "src", "to_time": "latest"}},
			want: &provisioners.RestoreRequest{FromInstance: "src"}},
		{name: "a time with an offset is kept as UTC", params: map[string]any{"restore": map[string]any{"from_instance": "src", "to_time": "2026-03-01T13:30:00.5+02:00"}},
			want: &provisioners.RestoreRequest{FromInstance: "src", ToTime: time.Date(2026, 3, 1, 11, 30, 0, 500_000_000, time.UTC)}},
		{name: "a date that does not exist", params: map[string]any{"restore": map[string]any{"from_instance": "src", "to_time": "2026-02-30T10:00:00Z"}},
			wantErr: "parameters.restore.to_time: not an RFC 3339 time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := p.RestoreRequest(tc.params)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestBuildRefusesRestoresItCannotRender(t *testing.T) {
	src := &provisioners.RestoreSource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Namespace: testNamespace}
	for _, tc := range []struct {
		name, plan string
		config     func() Config
		namespace  string
		want       string
	}{
		{name: "plan without backups", plan: "dev-lite", config: baseConfig, namespace: testNamespace,
			want: "parameters.restore: plan dev-lite keeps no backups; restore into a plan with backups (standard or ha)"},
		{name: "another namespace", plan: "standard", config: baseConfig, namespace: "team-billing",
			want: "parameters.restore.from_instance: instance " + testSourceID + " is in namespace team-billing and the new instance would be in team-orders; a restore reads only backups of its own namespace (the platform team can allow restores across namespaces: postgres.restore.acrossNamespaces)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, nil)
			r := *src
			r.Namespace = tc.namespace
			inst.Restore = &r
			_, err := (&Provisioner{Config: tc.config()}).Build(inst)
			var pe *provisioners.ParameterError
			g.Expect(err).To(BeAssignableToTypeOf(pe))
			g.Expect(err.Error()).To(HavePrefix(tc.want))
		})
	}
}

func TestCheckUpdateKeepsTheRestore(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	restore := map[string]any{"from_instance": testSourceID, "to_time": "latest"}
	old := testInstance(t, "standard", map[string]any{"restore": restore})
	for _, params := range []map[string]any{
		{"restore": map[string]any{"from_instance": testSourceID, "to_time": "latest"}},
		{"replicas": float64(2)},
	} {
		g.Expect(p.CheckUpdate(old, testInstance(t, "standard", params))).To(Succeed(), "%v", params)
	}
	err := p.CheckUpdate(old, testInstance(t, "standard", map[string]any{"restore": map[string]any{"from_instance": testSourceID, "to_time": "2026-03-01T11:30:00Z"}}))
	g.Expect(err).To(MatchError(HavePrefix("parameters.restore: an instance is restored once, when it is provisioned")))
}

func TestWindow(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	p := &Provisioner{Config: baseConfig()}
	inst := testInstance(t, "standard", nil) // 7 days of retention
	refs := p.WindowRefs(inst)
	store := func(first, lastBackup string) *unstructured.Unstructured {
		w := map[string]any{}
		if first != "" {
			w["firstRecoverabilityPoint"] = first
		}
		if lastBackup != "" {
			w["lastSuccessfulBackupTime"] = lastBackup
		}
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"serverRecoveryWindow": map[string]any{inst.Name: w, "pg-other": map[string]any{"firstRecoverabilityPoint": "2026-03-01T00:00:00Z"}},
		}}}
	}
	cluster := func(archiving string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"conditions": []any{map[string]any{"type": "ContinuousArchiving", "status": archiving}},
		}}}
	}
	for _, tc := range []struct {
		name          string
		store         *unstructured.Unstructured
		cluster       *unstructured.Unstructured
		deprovisioned time.Time
		config        func() Config
		first, last   string // empty: no window
	}{
		{name: "archiving: up to archive_timeout behind now", store: store("2026-03-09T03:00:10Z", "2026-03-10T03:01:00Z"), cluster: cluster("True"),
			first: "2026-03-09T03:00:10Z", last: "2026-03-10T11:55:00Z"},
		{name: "a shorter archive_timeout", store: store("2026-03-09T03:00:10Z", ""), cluster: cluster("True"),
			config: func() Config { c := baseConfig(); c.Backup.ArchiveTimeoutSeconds = 20; return c },
			first:  "2026-03-09T03:00:10Z", last: "2026-03-10T11:59:40Z"},
		{name: "archiving failing: up to the last backup", store: store("2026-03-09T03:00:10Z", "2026-03-10T03:01:00Z"), cluster: cluster("False"),
			first: "2026-03-09T03:00:10Z", last: "2026-03-10T03:01:00Z"},
		{name: "deprovisioned: up to archive_timeout before", store: store("2026-03-05T03:00:10Z", ""), deprovisioned: now.Add(-48 * time.Hour),
			first: "2026-03-05T03:00:10Z", last: "2026-03-08T11:55:00Z"},
		{name: "never before the retention", store: store("2026-02-01T03:00:00Z", ""), cluster: cluster("True"),
			first: "2026-03-03T12:00:00Z", last: "2026-03-10T11:55:00Z"},
		{name: "deprovisioned past the retention", store: store("2026-02-01T03:00:00Z", ""), deprovisioned: now.Add(-8 * 24 * time.Hour)},
		{name: "no backup yet", store: store("", ""), cluster: cluster("True")},
		{name: "no ObjectStore", cluster: cluster("True")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			prov := p
			if tc.config != nil {
				prov = &Provisioner{Config: tc.config()}
			}
			observed := map[provisioners.Ref]*unstructured.Unstructured{refs[0]: tc.store, refs[1]: tc.cluster}
			w, ok := prov.Window(inst, observed, tc.deprovisioned, now)
			if tc.first == "" {
				g.Expect(ok).To(BeFalse(), "%+v", w)
				return
			}
			g.Expect(ok).To(BeTrue())
			g.Expect(w.First.Format(time.RFC3339)).To(Equal(tc.first))
			g.Expect(w.Last.Format(time.RFC3339)).To(Equal(tc.last))
		})
	}
	g := NewWithT(t)
	g.Expect(p.WindowRefs(testInstance(t, "dev-lite", nil))).To(BeEmpty(), "no backups, no window")
	g.Expect(p.WindowRefs(testInstance(t, "shared", nil))).To(BeEmpty(), "the shared cluster's backups are the platform's")
}
