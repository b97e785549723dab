package binding

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

func sharedInstance(ns, id string) provisioners.Instance {
	cat := catalog.Default()
	svc := &cat.Services[0]
	return provisioners.Instance{ID: id, Name: "pg-" + id, Namespace: ns, Service: svc, Plan: svc.PlanByName("shared")}
}

func TestSharedOpenBaoRoles(t *testing.T) {
	g := NewWithT(t)
	inst := sharedInstance("team-a", "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f")
	n := postgres.SharedNamesOf(inst)
	// OpenBao's role names: word characters, '-' and '.'.
	name := regexp.MustCompile(`^\w[\w.-]*\w$`)
	for _, a := range accessLevels {
		r := RoleName(inst, a)
		g.Expect(r).To(HavePrefix(SharedRolePrefix))
		g.Expect(r).To(MatchRegexp(name.String()))
		g.Expect(r).To(HaveSuffix("-" + string(a)))
	}
	dedicated := provisioners.Instance{ID: "i", Name: "pg-i", Namespace: "shared-x", Service: inst.Service, Plan: inst.Service.PlanByName("standard")}
	g.Expect(RoleName(dedicated, ReadWrite)).NotTo(HavePrefix(SharedRolePrefix), "a dedicated instance's roles never match the shared connection's allowed_roles")

	rw := SharedRoleStatements(inst, ReadWrite)
	g.Expect(rw).To(HaveLen(2))
	g.Expect(rw[0]).To(HavePrefix(`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`))
	g.Expect(rw[0]).NotTo(ContainSubstring("IN ROLE"), "the management role holds no ADMIN OPTION on the tenant's groups")
	g.Expect(rw[1]).To(Equal("SELECT strata.grant_tenant_role('{{name}}', '" + n.ReadWrite + "');"))
	g.Expect(SharedRoleStatements(inst, ReadOnly)[1]).To(ContainSubstring("'" + n.ReadOnly + "'"))
	owner := SharedRoleStatements(inst, Owner)
	g.Expect(owner).To(HaveLen(3))
	g.Expect(owner[2]).To(Equal(`ALTER ROLE "{{name}}" SET role = '` + n.Owner + `';`))
	for _, st := range append(rw, owner...) {
		g.Expect(strings.Count(st, "{{")).To(Equal(strings.Count(st, "}}")))
	}
}

// Without OpenBao a shared instance cannot be bound, and the error says
// what the platform team must configure.
func TestSharedBindNeedsOpenBao(t *testing.T) {
	g := NewWithT(t)
	kube := newMemKube()
	b := &PostgresBinder{Kube: kube, Logins: &RoleSource{Kube: kube}}
	_, err := b.Bind(context.Background(), sharedInstance("team-a", "i-1"), "b-1", nil)
	var ue *UnsupportedError
	g.Expect(errors.As(err, &ue)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("openBao"))
	g.Expect(err.Error()).To(ContainSubstring("postgres.shared.openBaoConnection"))
}

// The shared connection is the platform's: the broker neither prepares
// nor writes one for a shared instance.
func TestSharedPrepareWritesNothing(t *testing.T) {
	g := NewWithT(t)
	kube := newMemKube()
	s := testOpenBaoSource(t, kube)
	s.BrokerNamespace = "strata-system"
	inst := sharedInstance("team-a", "i-1")
	g.Expect(s.Prepare(context.Background(), inst)).To(Succeed())
	first, _ := kube.Get(context.Background(), s.firstPasswordRef(inst))
	g.Expect(first).To(BeNil())
	boot, _ := kube.Get(context.Background(), provisioners.Ref{GVK: secretGVK, Namespace: "team-a", Name: "pg-i-1-bootstrap"})
	g.Expect(boot).To(BeNil())
}
