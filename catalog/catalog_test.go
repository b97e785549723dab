package catalog_test

import (
	"regexp"
	"slices"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// Crossplane's provider-osb requires UUIDs; RFC 4122 form, any version.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestIDsAreUniqueUUIDs(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	g.Expect(c.Services).NotTo(BeEmpty())
	seen := map[string]string{}
	remember := func(id, what string) {
		g.Expect(id).To(MatchRegexp(uuidRE.String()), what)
		g.Expect(seen).NotTo(HaveKey(id), "%s reuses the id of %s", what, seen[id])
		seen[id] = what
	}
	serviceNames := map[string]bool{}
	for _, s := range c.Services {
		remember(s.ID, "service "+s.Name)
		g.Expect(serviceNames).NotTo(HaveKey(s.Name))
		serviceNames[s.Name] = true
		g.Expect(s.Plans).NotTo(BeEmpty(), s.Name)
		planNames := map[string]bool{}
		for _, p := range s.Plans {
			remember(p.ID, "plan "+s.Name+"/"+p.Name)
			g.Expect(planNames).NotTo(HaveKey(p.Name), "plan names are unique within a service")
			planNames[p.Name] = true
			g.Expect(p.Description).NotTo(BeEmpty())
		}
	}
	// The published constants are the ids in use: platforms store them.
	g.Expect(seen).To(HaveKeyWithValue(catalog.PostgresServiceID, "service postgresql"))
	g.Expect(seen).To(HaveKeyWithValue(catalog.PostgresDevLiteID, "plan postgresql/dev-lite"))
	g.Expect(seen).To(HaveKeyWithValue(catalog.PostgresStandardID, "plan postgresql/standard"))
	g.Expect(seen).To(HaveKeyWithValue(catalog.PostgresHAID, "plan postgresql/ha"))
	g.Expect(seen).To(HaveKeyWithValue(catalog.PostgresSharedID, "plan postgresql/shared"))
}

func TestFind(t *testing.T) {
	c := catalog.Default()
	tests := []struct {
		name              string
		service, plan     string
		wantPlan, wantErr string
	}{
		{"standard", catalog.PostgresServiceID, catalog.PostgresStandardID, "standard", ""},
		{"ha", catalog.PostgresServiceID, catalog.PostgresHAID, "ha", ""},
		{"unknown plan", catalog.PostgresServiceID, catalog.PostgresServiceID, "", "plan_id"},
		{"unknown service", "nope", catalog.PostgresHAID, "", "service_id"},
		{"plan id as service id", catalog.PostgresHAID, catalog.PostgresHAID, "", "service_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s, p, err := c.Find(tc.service, tc.plan)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				g.Expect(p).To(BeNil())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.ID).To(Equal(tc.service))
			g.Expect(p.Name).To(Equal(tc.wantPlan))
			// Find points into the catalog, not at a copy.
			g.Expect(p).To(BeIdenticalTo(s.PlanByName(tc.wantPlan)))
		})
	}
}

func TestCanUpdate(t *testing.T) {
	svc := &catalog.Default().Services[0]
	tests := []struct {
		from, to string
		// lost is empty when the change is allowed, else what the reason
		// must say would be lost.
		lost []string
	}{
		{"dev-lite", "dev-lite", nil},
		{"dev-lite", "standard", nil},
		{"dev-lite", "ha", nil},
		{"standard", "standard", nil},
		{"standard", "ha", nil},
		{"ha", "ha", nil},
		{"standard", "dev-lite", []string{"no backups", "point-in-time recovery would be lost"}},
		{"ha", "dev-lite", []string{"no backups", "point-in-time recovery would be lost"}},
		{"ha", "standard", []string{"synchronous replication", "committed data could be lost"}},
		{"shared", "shared", nil},
		{"shared", "dev-lite", []string{"move between the shared cluster and a dedicated one"}},
		{"shared", "standard", []string{"move between the shared cluster and a dedicated one"}},
		{"shared", "ha", []string{"move between the shared cluster and a dedicated one"}},
		{"dev-lite", "shared", []string{"move between the shared cluster and a dedicated one"}},
		{"standard", "shared", []string{"move between the shared cluster and a dedicated one"}},
		{"ha", "shared", []string{"move between the shared cluster and a dedicated one"}},
	}
	for _, tc := range tests {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			g := NewWithT(t)
			from, to := svc.PlanByName(tc.from), svc.PlanByName(tc.to)
			g.Expect(from).NotTo(BeNil())
			g.Expect(to).NotTo(BeNil())
			err := svc.CanUpdate(from, to)
			if tc.lost == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			msg := err.Error()
			g.Expect(msg).To(ContainSubstring(`"` + tc.from + `"`))
			g.Expect(msg).To(ContainSubstring(`"` + tc.to + `"`))
			g.Expect(msg).To(ContainSubstring("migrate"))
			for _, l := range tc.lost {
				g.Expect(msg).To(ContainSubstring(l))
			}
		})
	}
}

func TestDowngradeReasons(t *testing.T) {
	tests := []struct {
		name     string
		from, to catalog.PostgresPlan
		want     string
	}{
		{"backups lost", catalog.PostgresPlan{Backup: &catalog.BackupPlan{}}, catalog.PostgresPlan{}, "point-in-time recovery would be lost"},
		{"sync lost", catalog.PostgresPlan{SynchronousStandbys: 2}, catalog.PostgresPlan{SynchronousStandbys: 1}, "synchronous replication"},
		{"fewer instances", catalog.PostgresPlan{Instances: 3}, catalog.PostgresPlan{Instances: 2}, "smaller"},
		{"storage cannot fit", catalog.PostgresPlan{MinStorageGB: 100}, catalog.PostgresPlan{MaxStorageGB: 50}, "storage and redundancy cannot shrink"},
		{"otherwise", catalog.PostgresPlan{Instances: 1}, catalog.PostgresPlan{Instances: 2}, "not a supported plan change"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(tc.from.DowngradeReason(&tc.to)).To(ContainSubstring(tc.want))
		})
	}
}

// Every refused move names the allowed ones, and plans list only real
// targets.
func TestUpdatePathsAreConsistent(t *testing.T) {
	g := NewWithT(t)
	for _, s := range catalog.Default().Services {
		names := []string{}
		for _, p := range s.Plans {
			names = append(names, p.Name)
		}
		for i := range s.Plans {
			from := &s.Plans[i]
			g.Expect(from.UpdatableTo).NotTo(ContainElement(from.Name), "a plan lists itself")
			for _, target := range from.UpdatableTo {
				g.Expect(names).To(ContainElement(target), "%s lists unknown plan %q", from.Name, target)
			}
			for j := range s.Plans {
				to := &s.Plans[j]
				err := s.CanUpdate(from, to)
				if i == j || slices.Contains(from.UpdatableTo, to.Name) {
					g.Expect(err).NotTo(HaveOccurred())
					continue
				}
				g.Expect(err).To(HaveOccurred())
				want := "none"
				if len(from.UpdatableTo) > 0 {
					want = from.UpdatableTo[0]
				}
				g.Expect(err.Error()).To(ContainSubstring("allowed targets from %q: ", from.Name))
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
		}
	}
}

// Upgrades only ever grow: an allowed target never has fewer instances,
// less storage headroom, or fewer guarantees.
func TestAllowedUpdatesNeverShrink(t *testing.T) {
	g := NewWithT(t)
	for _, s := range catalog.Default().Services {
		for _, from := range s.Plans {
			if from.Postgres == nil {
				continue // the other engines' own tests cover their paths
			}
			for _, name := range from.UpdatableTo {
				to := s.PlanByName(name).Postgres
				f := from.Postgres
				g.Expect(to.Instances).To(BeNumerically(">=", f.Instances), "%s -> %s", from.Name, name)
				g.Expect(to.MaxStorageGB).To(BeNumerically(">=", f.MaxStorageGB), "%s -> %s", from.Name, name)
				g.Expect(to.SynchronousStandbys).To(BeNumerically(">=", f.SynchronousStandbys), "%s -> %s", from.Name, name)
				if f.Backup != nil {
					g.Expect(to.Backup).NotTo(BeNil(), "%s -> %s", from.Name, name)
				}
			}
		}
	}
}

func TestPlanSizingIsCoherent(t *testing.T) {
	for _, p := range catalog.Default().Services[0].Plans {
		if p.Postgres.Shared {
			continue // the platform sizes the shared cluster: TestSharedPlan
		}
		t.Run(p.Name, func(t *testing.T) {
			g := NewWithT(t)
			pg := p.Postgres
			g.Expect(pg).NotTo(BeNil())
			g.Expect(pg.Instances - 1).To(BeNumerically(">=", pg.MinReplicas))
			g.Expect(pg.Instances - 1).To(BeNumerically("<=", pg.MaxReplicas))
			g.Expect(pg.StorageGB).To(BeNumerically(">=", pg.MinStorageGB))
			g.Expect(pg.StorageGB).To(BeNumerically("<=", pg.MaxStorageGB))
			g.Expect(pg.SynchronousStandbys).To(BeNumerically("<=", pg.MinReplicas), "a quorum needs that many standbys")
			g.Expect(p.MaximumPollingDuration).To(BeNumerically(">", 0))
			if pg.Backup != nil {
				g.Expect(pg.Backup.RetentionDays).To(BeNumerically(">=", 1))
				g.Expect(pg.Backup.RetentionDays).To(BeNumerically("<=", pg.Backup.MaxRetentionDays))
			}
			// Every plan with backups of its own is drilled, and only those
			// (the shared plan's backups are the platform's cluster's).
			if pg.Backup != nil && !pg.Shared {
				g.Expect(pg.Drill).NotTo(BeNil(), "plan %s keeps backups but has no restore drill", p.Name)
				g.Expect(pg.Drill.Interval).To(BeNumerically(">", 0))
				g.Expect(pg.Drill.RPOObjective).To(BeNumerically(">", 0))
				g.Expect(pg.Drill.RTOObjective).To(BeNumerically(">", 0))
			} else {
				g.Expect(pg.Drill).To(BeNil(), "plan %s has nothing of its own to restore", p.Name)
			}
			g.Expect(p.Metadata.DisplayName).NotTo(BeEmpty())
			g.Expect(p.Metadata.Bullets).NotTo(BeEmpty())
		})
	}
}
