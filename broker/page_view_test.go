package broker

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func TestFlattenParams(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]any
		want   []pageKV
	}{
		{"none", map[string]any{}, nil},
		{"sorted, nested dotted", map[string]any{"storage_gb": 20, "databases": []any{"a", "b"}, "pooler": map[string]any{"mode": "transaction"}},
			[]pageKV{{"databases", "a, b"}, {"pooler.mode", "transaction"}, {"storage_gb", "20"}}},
		{"secret-like keys withheld, nested too", map[string]any{"admin_password": "hunter2", "tls": map[string]any{"client_key": "k", "verify": true}, "apiToken": "t"},
			[]pageKV{{"admin_password", "(withheld)"}, {"apiToken", "(withheld)"}, {"tls.client_key", "(withheld)"}, {"tls.verify", "true"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(flattenParams("", tc.params)).To(Equal(tc.want))
		})
	}
}

func TestPageStatus(t *testing.T) {
	tests := []struct {
		op          Operation
		word, class string
	}{
		{Operation{Type: OpProvision, State: provisioners.InProgress}, "provision in progress", "busy"},
		{Operation{Type: OpProvision, State: provisioners.Succeeded}, "ready", "ok"},
		{Operation{Type: OpUpdate, State: provisioners.Failed}, "update failed", "bad"},
		{Operation{Type: OpUpdate, State: provisioners.Succeeded}, "ready", "ok"},
		{Operation{Type: OpDeprovision, State: provisioners.Succeeded}, "deprovisioned", "bad"},
	}
	for _, tc := range tests {
		word, class := pageStatus(tc.op)
		NewWithT(t).Expect([]string{word, class}).To(Equal([]string{tc.word, tc.class}), "%+v", tc.op)
	}
}

func objectStore(window map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore"}}
	if window != nil {
		o.Object["status"] = map[string]any{"serverRecoveryWindow": window}
	}
	return o
}

func TestRestorableWindow(t *testing.T) {
	tests := []struct {
		name        string
		store       *unstructured.Unstructured
		first, last string
		ok          bool
	}{
		{"no ObjectStore read", nil, "", "", false},
		{"no status yet", objectStore(nil), "", "", false},
		{"another server's window only", objectStore(map[string]any{"pg-other": map[string]any{"firstRecoverabilityPoint": "2026-03-01T00:00:00Z"}}), "", "", false},
		{"first and last", objectStore(map[string]any{"pg-a": map[string]any{"firstRecoverabilityPoint": "2026-03-01T00:00:00Z", "lastSuccessfulBackupTime": "2026-03-02T00:10:00+01:00"}}),
			"2026-03-01 00:00:00 UTC", "2026-03-01 23:10:00 UTC", true},
		{"first only", objectStore(map[string]any{"pg-a": map[string]any{"firstRecoverabilityPoint": "2026-03-01T00:00:00Z"}}), "2026-03-01 00:00:00 UTC", "", true},
		{"unparsable", objectStore(map[string]any{"pg-a": map[string]any{"firstRecoverabilityPoint": "yesterday"}}), "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, l, ok := restorableWindow(tc.store, "pg-a")
			NewWithT(t).Expect([]any{f, l, ok}).To(Equal([]any{tc.first, tc.last, tc.ok}))
		})
	}
}

func TestAlertsOf(t *testing.T) {
	rec := &InstanceRecord{Namespace: "team-a", Name: "pg-aaa"}
	alert := func(name string, labels ...string) promAlert {
		l := map[string]string{"alertname": name}
		for i := 0; i < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return promAlert{Labels: l, State: "firing"}
	}
	in := []promAlert{
		alert("Mine", "namespace", "team-a", "pod", "pg-aaa-1"),
		alert("OtherInstance", "namespace", "team-a", "pod", "pg-bbb-1"),
		alert("OtherTenant", "namespace", "team-b", "pod", "pg-aaa-1"),
		alert("NamespaceWide", "namespace", "team-a"),
		alert("NoNamespace", "pod", "pg-aaa-1"),
		alert("ByCluster", "namespace", "team-a", "cluster", "pg-aaa"),
		// The mesh alerts name the instance's mesh PodMonitor's job.
		alert("MeshByJob", "namespace", "team-a", "job", "team-a/pg-aaa-mesh", "destination_service", "pg-aaa-rw.team-a.svc.cluster.local"),
		alert("OtherMesh", "namespace", "team-a", "job", "team-a/pg-bbb-mesh", "destination_service", "pg-bbb-rw.team-a.svc.cluster.local"),
	}
	var got []string
	for _, a := range alertsOf(in, rec) {
		got = append(got, a.Labels["alertname"])
	}
	NewWithT(t).Expect(got).To(Equal([]string{"ByCluster", "MeshByJob", "Mine", "NamespaceWide"}))
}

func TestSparkline(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		pts  []promPoint
		want string
	}{
		{"no points", nil, "no data"},
		{"only NaN", []promPoint{{t0, math.NaN()}}, "no data"},
		{"one point, centred", []promPoint{{t0, 5}}, `points="120.0,2.0"`},
		{"rising from zero", []promPoint{{t0, 0}, {t0.Add(time.Minute), 10}}, `points="2.0,46.0 238.0,2.0"`},
		{"flat zero", []promPoint{{t0, 0}, {t0.Add(time.Minute), 0}}, `points="2.0,24.0 238.0,24.0"`},
		{"NaN skipped", []promPoint{{t0, 0}, {t0.Add(time.Minute), math.NaN()}, {t0.Add(2 * time.Minute), 4}}, `aria-label="2 points"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(string(sparkline(tc.pts))).To(ContainSubstring(tc.want))
		})
	}
}

func TestBackupsOfLatestFirstAndBounded(t *testing.T) {
	g := NewWithT(t)
	var backups []*unstructured.Unstructured
	for i := range 7 {
		backups = append(backups, cnpgBackup(fmt.Sprintf("b%d", i), "pg-a", "completed", fmt.Sprintf("2026-03-0%dT00:00:00Z", i+1)))
	}
	backups[6].Object["status"].(map[string]any)["phase"] = "failed"
	backups[6].Object["status"].(map[string]any)["error"] = "can't upload: dial tcp 10.0.0.1:443: connection refused"
	sb := &unstructured.Unstructured{Object: map[string]any{"kind": "ScheduledBackup", "spec": map[string]any{"schedule": "0 0 0 * * *"},
		"status": map[string]any{"lastScheduleTime": "2026-03-07T00:00:00Z", "nextScheduleTime": "2026-03-08T00:00:00Z"}}}
	b := backupsOf(pageInputs{
		Record:  &InstanceRecord{Name: "pg-a"},
		Objects: map[ObjectRef]*unstructured.Unstructured{{Kind: "ScheduledBackup", Name: "pg-a-daily"}: sb},
		Backups: backups,
	})
	g.Expect(b.Schedule).To(Equal("0 0 0 * * *"))
	g.Expect(b.NextSchedule).To(Equal("2026-03-08 00:00:00 UTC"))
	g.Expect(b.Latest).To(HaveLen(maxBackupsShown))
	g.Expect(b.Latest[0].Name).To(Equal("b6"))
	g.Expect(b.Latest[0].Phase).To(Equal("failed"))
	g.Expect(b.Latest[4].Name).To(Equal("b2"))
	g.Expect(b.WindowKnown).To(BeFalse())
}

func TestPageQueriesSelectTheInstancesPods(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	rec := &InstanceRecord{ID: instanceID, Namespace: "team-a", Name: "pg-abc"}
	find := func(svc, plan string) (*catalog.Service, *catalog.Plan) {
		s, p, err := c.Find(svc, plan)
		g.Expect(err).NotTo(HaveOccurred())
		return s, p
	}
	s, p := find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	qs := pageQueries(s, p, rec)
	g.Expect(qs).NotTo(BeEmpty())
	for _, q := range qs {
		g.Expect(q.Query).To(ContainSubstring(`namespace="team-a",pod=~"pg-abc-[0-9]+"`))
	}
	s, p = find(catalog.PostgresServiceID, catalog.PostgresSharedID)
	g.Expect(pageQueries(s, p, rec)).To(BeEmpty(), "a shared cluster's pods are not the instance's")
	rec.Name = "rd-abc"
	for _, sv := range c.Services {
		if sv.Engine == catalog.EngineRedis {
			for _, q := range pageQueries(&sv, &sv.Plans[0], rec) {
				g.Expect(q.Query).To(ContainSubstring(`pod=~"rfr-rd-abc-[0-9]+"`))
			}
		}
	}
}

func TestInstancePageConfig(t *testing.T) {
	tests := []struct {
		name, yaml, err string
	}{
		{"none", ``, ""},
		{"external URL", `instancePage: {externalURL: "https://broker.example.com"}`, ""},
		{"with Prometheus", `instancePage: {externalURL: "https://broker.example.com/strata/", prometheusURL: "http://prometheus.monitoring:9090"}`, ""},
		{"plain http refused", `instancePage: {externalURL: "http://broker.example.com"}`, "must be an https URL"},
		{"query refused", `instancePage: {externalURL: "https://broker.example.com/?a=b"}`, "must be an https URL"},
		{"Prometheus without a page", `instancePage: {prometheusURL: "http://prometheus:9090"}`, "externalURL is not"},
		{"bad Prometheus URL", `instancePage: {externalURL: "https://b.example.com", prometheusURL: "prometheus:9090"}`, "prometheusURL"},
		{"both dashboards", "dashboardURLTemplate: \"https://grafana/{{.Name}}\"\ninstancePage: {externalURL: \"https://b.example.com\"}", "both set"},
		{"unknown key", `instancePage: {url: "https://b.example.com"}`, "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := ParseConfig([]byte(tc.yaml))
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			p := c.InstancePage.page()
			if c.InstancePage.ExternalURL == "" {
				g.Expect(p).To(BeNil())
				return
			}
			g.Expect(p.pageURL(&InstanceRecord{ID: "i-1", PageToken: "tok"})).To(HaveSuffix("/instances/i-1/page/tok"))
			g.Expect(strings.Count(p.pageURL(&InstanceRecord{ID: "i-1", PageToken: "tok"}), "//")).To(Equal(1))
			g.Expect(p.Prometheus != nil).To(Equal(c.InstancePage.PrometheusURL != ""))
		})
	}
}
