package charts_test

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// The platform chart's shared PostgreSQL cluster is the one the broker's
// default configuration names, TLS-only with the platform CA, and its
// pg_hba rejects whatever is not a login to its own database.
func TestPlatformSharedPostgres(t *testing.T) {
	g := NewWithT(t)
	objs, err := charts.RenderPlatform(map[string]any{"sharedPostgres": map[string]any{
		"backup": map[string]any{"bucket": "strata-backups", "iamRoleArn": "arn:aws:iam::111122223333:role/strata-backups"},
	}}, "strata-system")
	g.Expect(err).NotTo(HaveOccurred())
	shared := postgres.DefaultSharedConfig()
	c := one(t, objs, "Cluster")
	g.Expect(get(t, c, "metadata", "name")).To(Equal(shared.ClusterName))
	g.Expect(get(t, c, "metadata", "namespace")).To(Equal(shared.Namespace))
	g.Expect(get(t, c, "spec", "instances")).To(Equal(int64(3)))
	g.Expect(get(t, c, "spec", "imageName")).To(Equal(postgres.DefaultConfig().Images["17"]), "pinned like the broker's default")
	g.Expect(get(t, c, "spec", "enableSuperuserAccess")).To(BeFalse())
	g.Expect(get(t, c, "spec", "certificates", "serverTLSSecret")).To(Equal(postgres.Config{}.SharedCluster().CASecret))
	hba := strs(get(t, c, "spec", "postgresql", "pg_hba"))
	g.Expect(hba[0]).To(Equal("hostnossl all all 0.0.0.0/0 reject"))
	g.Expect(hba).To(ContainElement("hostssl samerole all 0.0.0.0/0 scram-sha-256"))
	g.Expect(hba[len(hba)-2:]).To(Equal([]string{"host all all 0.0.0.0/0 reject", "host all all ::/0 reject"}),
		"the last user rules reject, so CloudNativePG's permissive default is never reached")
	sql := strs(get(t, c, "spec", "bootstrap", "initdb", "postInitSQL"))
	g.Expect(sql).To(ContainElement(ContainSubstring("FUNCTION " + postgres.SharedGrantFunction + "(")))
	g.Expect(sql).To(ContainElement(ContainSubstring(postgres.SharedRolePattern)), "the function checks the builders' pattern")
	g.Expect(get(t, c, "spec", "plugins", 0, "name")).To(Equal("barman-cloud.cloudnative-pg.io"))
	g.Expect(one(t, objs, "ObjectStore")).NotTo(BeNil())
	g.Expect(one(t, objs, "ScheduledBackup")).NotTo(BeNil())
	g.Expect(one(t, objs, "PodMonitor")).NotTo(BeNil())
	cert := one(t, objs, "Certificate")
	g.Expect(strs(get(t, cert, "spec", "dnsNames"))).To(ContainElement(shared.ClusterName + "-rw." + shared.Namespace + ".svc"))

	// Without a bucket: no backup objects, still a valid cluster.
	objs, err = charts.RenderPlatform(nil, "strata-system")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(find(objs, "ObjectStore")).To(BeEmpty())
	g.Expect(find(objs, "Cluster")).To(HaveLen(1))
}
