package postgres

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

func TestResolveDefaultsPerPlan(t *testing.T) {
	tests := []struct {
		plan string
		want Settings
	}{
		{"dev-lite", Settings{
			Version: catalog.DefaultPostgresVersion, StorageGB: 1, Replicas: 0, CPU: "250m", Memory: "512Mi",
			Databases: []string{"app"}, AuditClasses: catalog.DefaultAuditClasses,
		}},
		{"standard", Settings{
			Version: catalog.DefaultPostgresVersion, StorageGB: 20, Replicas: 1, CPU: "1", Memory: "2Gi",
			Databases: []string{"app"}, AuditClasses: catalog.DefaultAuditClasses,
			BackupCron: "0 0 3 * * *", RetentionDays: 7,
		}},
		{"ha", Settings{
			Version: catalog.DefaultPostgresVersion, StorageGB: 50, Replicas: 2, CPU: "2", Memory: "8Gi",
			Databases: []string{"app"}, AuditClasses: catalog.DefaultAuditClasses,
			BackupCron: "0 0 3 * * *", RetentionDays: 30,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.plan, func(t *testing.T) {
			g := NewWithT(t)
			_, plan := testPlan(t, tc.plan)
			for _, params := range []map[string]any{nil, {}} {
				s, err := Resolve(plan, params)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(s).To(Equal(tc.want))
				g.Expect(s.Instances()).To(Equal(plan.Postgres.Instances), "default instances come from the plan")
			}
		})
	}
}

func TestResolveOverrides(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		params map[string]any
		check  func(g Gomega, s Settings)
	}{
		{"version", "standard", map[string]any{"version": "15"}, func(g Gomega, s Settings) {
			g.Expect(s.Version).To(Equal("15"))
		}},
		{"storage", "ha", map[string]any{"storage_gb": float64(750)}, func(g Gomega, s Settings) {
			g.Expect(s.StorageGB).To(Equal(750))
		}},
		{"replicas", "standard", map[string]any{"replicas": float64(4)}, func(g Gomega, s Settings) {
			g.Expect(s.Replicas).To(Equal(4))
			g.Expect(s.Instances()).To(Equal(5))
		}},
		{"replicas as a JSON integer", "ha", map[string]any{"replicas": 5}, func(g Gomega, s Settings) {
			g.Expect(s.Instances()).To(Equal(6))
		}},
		{"cpu only keeps the plan memory", "standard", map[string]any{"resources": map[string]any{"cpu": "1500m"}}, func(g Gomega, s Settings) {
			g.Expect(s.CPU).To(Equal("1500m"))
			g.Expect(s.Memory).To(Equal("2Gi"))
		}},
		{"memory only keeps the plan cpu", "standard", map[string]any{"resources": map[string]any{"memory": "16Gi"}}, func(g Gomega, s Settings) {
			g.Expect(s.CPU).To(Equal("1"))
			g.Expect(s.Memory).To(Equal("16Gi"))
		}},
		{"resources at the ceiling", "dev-lite", map[string]any{"resources": map[string]any{"cpu": "1", "memory": "2048Mi"}}, func(g Gomega, s Settings) {
			g.Expect(s.CPU).To(Equal("1"))
			g.Expect(s.Memory).To(Equal("2048Mi"))
		}},
		{"databases keep their order", "standard", map[string]any{"databases": []any{"orders", "billing", "audit_log"}}, func(g Gomega, s Settings) {
			g.Expect(s.Databases).To(Equal([]string{"orders", "billing", "audit_log"}))
		}},
		{"empty database list falls back to app", "standard", map[string]any{"databases": []any{}}, func(g Gomega, s Settings) {
			g.Expect(s.Databases).To(Equal([]string{"app"}))
		}},
		{"extensions", "dev-lite", map[string]any{"extensions": []any{"citext", "vector"}}, func(g Gomega, s Settings) {
			g.Expect(s.Extensions).To(Equal([]string{"citext", "vector"}))
		}},
		{"audit classes", "standard", map[string]any{"audit": map[string]any{"classes": []any{"read", "misc"}}}, func(g Gomega, s Settings) {
			g.Expect(s.AuditClasses).To(Equal([]string{"read", "misc"}))
		}},
		{"empty audit keeps the defaults", "standard", map[string]any{"audit": map[string]any{}}, func(g Gomega, s Settings) {
			g.Expect(s.AuditClasses).To(Equal(catalog.DefaultAuditClasses))
		}},
		{"xa", "ha", map[string]any{"xa": true}, func(g Gomega, s Settings) {
			g.Expect(s.XA).To(BeTrue())
		}},
		{"backup schedule only keeps the retention", "standard", map[string]any{"backup": map[string]any{"schedule": "0 15 2 * * 0"}}, func(g Gomega, s Settings) {
			g.Expect(s.BackupCron).To(Equal("0 15 2 * * 0"))
			g.Expect(s.RetentionDays).To(Equal(7))
		}},
		{"backup retention only keeps the schedule", "ha", map[string]any{"backup": map[string]any{"retention_days": float64(90)}}, func(g Gomega, s Settings) {
			g.Expect(s.BackupCron).To(Equal("0 0 3 * * *"))
			g.Expect(s.RetentionDays).To(Equal(90))
		}},
		{"dev-lite has no backups whatever is sent", "dev-lite", map[string]any{"backup": map[string]any{"schedule": "not a cron"}}, func(g Gomega, s Settings) {
			g.Expect(s.BackupCron).To(BeEmpty())
			g.Expect(s.RetentionDays).To(BeZero())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, plan := testPlan(t, tc.plan)
			s, err := Resolve(plan, tc.params)
			g.Expect(err).NotTo(HaveOccurred())
			tc.check(g, s)
		})
	}
}

func TestResolveErrorsNameTheParameter(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		params map[string]any
		field  string
		more   []string
	}{
		{"five-field cron", "standard", map[string]any{"backup": map[string]any{"schedule": "0 3 * * *"}},
			"parameters.backup.schedule", []string{`"0 3 * * *"`, "six-field"}},
		{"garbage cron", "ha", map[string]any{"backup": map[string]any{"schedule": "daily"}},
			"parameters.backup.schedule", []string{`"daily"`}},
		{"out-of-range cron field", "standard", map[string]any{"backup": map[string]any{"schedule": "0 0 25 * * *"}},
			"parameters.backup.schedule", nil},
		{"cpu over the dev-lite ceiling", "dev-lite", map[string]any{"resources": map[string]any{"cpu": "2"}},
			"parameters.resources.cpu", []string{"(1)", "larger plan"}},
		{"cpu over the ceiling in millicores", "standard", map[string]any{"resources": map[string]any{"cpu": "4001m"}},
			"parameters.resources.cpu", []string{"(4)"}},
		{"memory over the ceiling", "standard", map[string]any{"resources": map[string]any{"memory": "17Gi"}},
			"parameters.resources.memory", []string{"17Gi", "(16Gi)"}},
		{"memory over the ceiling in Mi", "dev-lite", map[string]any{"resources": map[string]any{"memory": "2049Mi"}},
			"parameters.resources.memory", []string{"(2Gi)"}},
		// A zero limit is no limit at all: the kubelet sets no CFS quota for
		// a CPU limit of 0, so "0" would lift the plan's ceiling.
		{"zero cpu", "ha", map[string]any{"resources": map[string]any{"cpu": "0"}},
			"parameters.resources.cpu", []string{"more than 0"}},
		{"zero cpu as a decimal", "standard", map[string]any{"resources": map[string]any{"cpu": "0.0"}},
			"parameters.resources.cpu", []string{"more than 0"}},
		{"zero millicores", "dev-lite", map[string]any{"resources": map[string]any{"cpu": "0m"}},
			"parameters.resources.cpu", []string{"more than 0"}},
		{"negative cpu", "dev-lite", map[string]any{"resources": map[string]any{"cpu": "-1"}},
			"parameters.resources.cpu", []string{"more than 0"}},
		{"zero memory", "standard", map[string]any{"resources": map[string]any{"memory": "0Gi"}},
			"parameters.resources.memory", []string{"more than 0"}},
		{"cpu not a quantity", "ha", map[string]any{"resources": map[string]any{"cpu": "lots"}},
			"parameters.resources.cpu", []string{"not a Kubernetes quantity"}},
		{"memory not a quantity", "ha", map[string]any{"resources": map[string]any{"memory": "8 GB"}},
			"parameters.resources.memory", []string{"not a Kubernetes quantity"}},
		{"wrong JSON type", "standard", map[string]any{"storage_gb": "big"},
			"parameters", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, plan := testPlan(t, tc.plan)
			_, err := Resolve(plan, tc.params)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(HavePrefix(tc.field + ":"))
			for _, m := range tc.more {
				g.Expect(err.Error()).To(ContainSubstring(m))
			}
		})
	}
}

// The defaults every plan publishes in its schema must resolve.
func TestResolveAcceptsEveryPlanSchemaDefault(t *testing.T) {
	for _, name := range planNames {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, plan := testPlan(t, name)
			pg := plan.Postgres
			params := map[string]any{
				"resources": map[string]any{"cpu": pg.MaxCPU, "memory": pg.MaxMemory},
			}
			if pg.Backup != nil {
				params["backup"] = map[string]any{"schedule": pg.Backup.Schedule, "retention_days": pg.Backup.MaxRetentionDays}
			}
			s, err := Resolve(plan, params)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.CPU).To(Equal(pg.MaxCPU))
			g.Expect(s.Memory).To(Equal(pg.MaxMemory))
		})
	}
}
