package binding

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestOpenBaoConfigChecks(t *testing.T) {
	valid := OpenBaoConfig{Address: "https://openbao:8200", Namespace: "openbao", PostgresCAFile: "/ca.crt",
		Auth: OpenBaoAuth{Role: "strata-broker"}}
	tests := []struct {
		name   string
		change func(*OpenBaoConfig)
		err    string
	}{
		{"defaults", func(*OpenBaoConfig) {}, ""},
		{"plain http", func(c *OpenBaoConfig) { c.Address = "http://openbao:8200" }, "openBao.address must be an https:// address"},
		{"no platform CA", func(c *OpenBaoConfig) { c.PostgresCAFile = "" }, "openBao.postgresCAFile"},
		{"no namespace", func(c *OpenBaoConfig) { c.Namespace = "" }, "openBao.namespace"},
		{"kubernetes without role", func(c *OpenBaoConfig) { c.Auth.Role = "" }, "openBao.auth.role"},
		{"approle without files", func(c *OpenBaoConfig) { c.Auth.Method = "approle" }, "openBao.auth.roleIdFile and secretIdFile"},
		{"token without file", func(c *OpenBaoConfig) { c.Auth.Method = "token" }, "openBao.auth.tokenFile"},
		{"unknown method", func(c *OpenBaoConfig) { c.Auth.Method = "ldap" }, `openBao.auth.method "ldap"`},
		{"bad TTL", func(c *OpenBaoConfig) { c.CredentialTTL = "forever" }, "openBao.credentialTTL"},
		{"TTL under an hour", func(c *OpenBaoConfig) { c.CredentialTTL = "10m" }, "openBao.credentialTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := valid
			tc.change(&c)
			got, ttl, err := c.withDefaults()
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got.DatabaseMount).To(Equal("database"))
				g.Expect(got.Auth.Method).To(Equal("kubernetes"))
				g.Expect(got.Auth.ServiceAccountTokenFile).To(Equal(defaultSATokenFile))
				g.Expect(ttl.Hours()).To(Equal(720.0))
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
		})
	}
}

// The creation statements grant exactly one group; owner logins act as
// the owner group so what they create outlives them.
func TestRoleStatements(t *testing.T) {
	g := NewWithT(t)
	g.Expect(roleStatements(ReadWrite)).To(ConsistOf(ContainSubstring("IN ROLE strata_readwrite;")))
	g.Expect(roleStatements(ReadOnly)).To(ConsistOf(ContainSubstring("IN ROLE strata_readonly;")))
	g.Expect(roleStatements(Owner)).To(ConsistOf(ContainSubstring("IN ROLE strata_owner;"), `ALTER ROLE "{{name}}" SET role = 'strata_owner';`))
	for _, a := range accessLevels {
		g.Expect(roleStatements(a)[0]).To(ContainSubstring(`VALID UNTIL '{{expiration}}'`))
	}
}
