package catalog

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/onsi/gomega"
)

var redisUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRedisIDsAreDistinctUUIDv4(t *testing.T) {
	g := gomega.NewWithT(t)
	s := redisService()
	seen := map[string]bool{}
	for _, id := range []string{s.ID, s.Plans[0].ID, s.Plans[1].ID, s.Plans[2].ID} {
		g.Expect(id).To(gomega.MatchRegexp(redisUUID.String()))
		g.Expect(seen).NotTo(gomega.HaveKey(id))
		seen[id] = true
	}
	// None collides with the other services' ids.
	for _, other := range Default().Services {
		if other.Engine == EngineRedis {
			continue
		}
		g.Expect(seen).NotTo(gomega.HaveKey(other.ID))
		for _, p := range other.Plans {
			g.Expect(seen).NotTo(gomega.HaveKey(p.ID))
		}
	}
	g.Expect(s.Engine).To(gomega.Equal(EngineRedis))
	g.Expect(s.PlanByName("dev-lite").ID).To(gomega.Equal(RedisDevLiteID))
	g.Expect(s.PlanByName("standard").ID).To(gomega.Equal(RedisStandardID))
	g.Expect(s.PlanByName("ha").ID).To(gomega.Equal(RedisHAID))
}

// The plans are what PRODUCT.md promises.
func TestRedisPlansMatchTheProduct(t *testing.T) {
	g := gomega.NewWithT(t)
	s := redisService()
	tests := []struct {
		plan                string
		replicas, sentinels int
		aof                 string
		keep                bool
		updatableTo         []string
	}{
		{"dev-lite", 1, 1, "no", false, []string{"standard"}},
		{"standard", 2, 3, "everysec", false, []string{"ha"}},
		{"ha", 3, 3, "always", true, nil},
	}
	for _, tc := range tests {
		p := s.PlanByName(tc.plan)
		g.Expect(p).NotTo(gomega.BeNil(), tc.plan)
		r := p.Redis
		g.Expect(r).NotTo(gomega.BeNil())
		g.Expect(p.Postgres).To(gomega.BeNil())
		g.Expect(r.Replicas).To(gomega.Equal(tc.replicas), tc.plan)
		g.Expect(r.Sentinels).To(gomega.Equal(tc.sentinels), tc.plan)
		g.Expect(r.Persistence.AOF).To(gomega.Equal(tc.aof), tc.plan)
		g.Expect(r.Persistence.KeepVolumes).To(gomega.Equal(tc.keep), tc.plan)
		g.Expect(r.Persistence.Snapshots).NotTo(gomega.BeEmpty(), "every plan snapshots (requirement 6.3)")
		g.Expect(p.UpdatableTo).To(gomega.Equal(tc.updatableTo), tc.plan)
		g.Expect(p.MaximumPollingDuration).To(gomega.BeNumerically(">", 0))
		g.Expect(r.MinReplicas).To(gomega.BeNumerically("<=", r.Replicas))
		g.Expect(r.Replicas).To(gomega.BeNumerically("<=", r.MaxReplicas))
		g.Expect(r.MinStorageGB).To(gomega.BeNumerically("<=", r.StorageGB))
		g.Expect(r.StorageGB).To(gomega.BeNumerically("<=", r.MaxStorageGB))
		g.Expect(p.Metadata.Bullets).NotTo(gomega.BeEmpty())
		g.Expect(p.Metadata.DisplayName).NotTo(gomega.BeEmpty())
	}
	// Moves go up only.
	for _, from := range s.Plans {
		for _, to := range from.UpdatableTo {
			g.Expect(s.PlanByName(to).Redis.Replicas).To(gomega.BeNumerically(">=", from.Redis.Replicas))
		}
	}
	g.Expect(s.CanUpdate(s.PlanByName("ha"), s.PlanByName("dev-lite"))).To(gomega.MatchError(gomega.ContainSubstring(`"ha" cannot change to "dev-lite"`)))
	g.Expect(s.CanUpdate(s.PlanByName("dev-lite"), s.PlanByName("standard"))).To(gomega.Succeed())
}

func TestRedisSchemasCompileAndValidate(t *testing.T) {
	s := redisService()
	v := NewValidator()
	for i := range s.Plans {
		p := &s.Plans[i]
		t.Run(p.Name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			ps := SchemasFor(p)
			for k, doc := range map[Kind]Schema{KindProvision: ps.Provision, KindUpdate: ps.Update, KindBind: ps.Bind} {
				g.Expect(doc).NotTo(gomega.BeNil(), string(k))
				g.Expect(doc["$schema"]).To(gomega.Equal(schemaDialect))
				_, _, err := v.schema(p, k)
				g.Expect(err).NotTo(gomega.HaveOccurred(), string(k))
				raw, err := json.Marshal(doc)
				g.Expect(err).NotTo(gomega.HaveOccurred())
				if k == KindUpdate {
					g.Expect(string(raw)).NotTo(gomega.ContainSubstring(`"default"`), "an update says only what changes")
				}
			}
			g.Expect(v.Validate(p, KindProvision, nil)).To(gomega.Succeed())
			g.Expect(v.Validate(p, KindProvision, map[string]any{
				"replicas": p.Redis.MaxReplicas, "storage_gb": p.Redis.MaxStorageGB,
				"resources":        map[string]any{"cpu": "250m", "memory": "512Mi"},
				"maxmemory_policy": "noeviction",
			})).To(gomega.Succeed())
			g.Expect(v.Validate(p, KindBind, nil)).To(gomega.Succeed())
			g.Expect(v.Validate(p, KindBind, map[string]any{"access": "readonly"})).To(gomega.MatchError(gomega.ContainSubstring("parameters.access: unknown parameter")))
		})
	}
}

func TestRedisSchemaErrorsNameTheParameter(t *testing.T) {
	s := redisService()
	p := s.PlanByName("standard")
	v := NewValidator()
	tests := []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"replicas": 9}, "parameters.replicas"},
		{map[string]any{"replicas": 1}, "parameters.replicas"},
		{map[string]any{"storage_gb": 1000}, "parameters.storage_gb"},
		{map[string]any{"maxmemory_policy": "lru"}, "parameters.maxmemory_policy"},
		{map[string]any{"resources": map[string]any{"memory": "1GB"}}, "parameters.resources.memory"},
		{map[string]any{"resources": map[string]any{"disk": "1Gi"}}, "parameters.resources.disk: unknown parameter; accepted here: cpu, memory"},
		{map[string]any{"appendonly": "no"}, "parameters.appendonly: unknown parameter"},
	}
	for _, tc := range tests {
		err := v.Validate(p, KindProvision, tc.params)
		if err == nil {
			t.Fatalf("%v: accepted", tc.params)
		}
		gomega.NewWithT(t).Expect(err.Error()).To(gomega.ContainSubstring(tc.want))
	}
}
