//go:build linux

package integration_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestChartRBAC asks the real API server's authorizer, as the chart's
// ServiceAccount, what the broker may do. What it needs is proved by every
// other test of this package (their brokers run as that ServiceAccount);
// this test proves what it may not do.
func TestChartRBAC(t *testing.T) {
	w := sharedWorld(t)
	sa := kubernetes.NewForConfigOrDie(w.brokerConfig)
	can := func(verb, group, resource, ns string) bool {
		t.Helper()
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Group: group, Resource: resource, Namespace: ns}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	cases := []struct {
		verb, group, resource, ns string
		allowed                   bool
	}{
		// What it needs, in a tenant namespace and its own.
		{"create", "postgresql.cnpg.io", "clusters", "team-a", true},
		{"patch", "cert-manager.io", "certificates", "team-a", true},
		{"create", "kafka.strimzi.io", "kafkausers", "kafka", true},
		// The shared PostgreSQL plan: DatabaseRoles and the Database in
		// the shared cluster's namespace, created, read, deleted; its CA
		// Secret read. Never the shared Cluster itself changed or deleted
		// through an update.
		{"create", "postgresql.cnpg.io", "databaseroles", "strata-postgres", true},
		{"delete", "postgresql.cnpg.io", "databaseroles", "strata-postgres", true},
		{"create", "postgresql.cnpg.io", "databases", "strata-postgres", true},
		{"delete", "postgresql.cnpg.io", "databases", "strata-postgres", true},
		{"get", "", "secrets", "strata-postgres", true},
		{"update", "postgresql.cnpg.io", "clusters", "strata-postgres", false},
		{"list", "postgresql.cnpg.io", "databaseroles", "strata-postgres", false},
		{"update", "", "secrets", "team-a", false},
		{"list", "", "secrets", brokerNS, true},
		{"create", "", "namespaces", "", true},
		{"list", "", "resourcequotas", "team-a", true},
		{"update", "", "resourcequotas", "team-a", false},
		// Nothing more.
		{"list", "", "secrets", "team-a", false},
		{"watch", "", "secrets", "", false},
		{"delete", "", "namespaces", "", false},
		{"update", "postgresql.cnpg.io", "clusters", "team-a", false},
		{"delete", "barmancloud.cnpg.io", "objectstores", "team-a", false},
		{"create", "postgresql.cnpg.io", "backups", "team-a", false},
		{"create", "", "pods", "team-a", false},
		{"create", "", "pods/exec", "team-a", false},
		// The Redis role agent's Role and RoleBinding: Kubernetes lets the
		// broker grant only rights it holds (get and patch of pods), and it
		// may neither escalate nor bind roles beyond them, nor mint tokens.
		{"create", "rbac.authorization.k8s.io", "rolebindings", "team-a", true},
		{"create", "rbac.authorization.k8s.io", "roles", "team-a", true},
		{"patch", "", "pods", "team-a", true},
		{"escalate", "rbac.authorization.k8s.io", "roles", "team-a", false},
		{"bind", "rbac.authorization.k8s.io", "roles", "team-a", false},
		{"bind", "rbac.authorization.k8s.io", "clusterroles", "", false},
		{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", false},
		{"create", "", "serviceaccounts/token", "team-a", false},
		// A seed from S3: the Job is created and deleted, never changed;
		// its pods are listed (their termination message), never changed
		// or deleted by the broker.
		{"create", "batch", "jobs", "team-a", true},
		{"delete", "batch", "jobs", "team-a", true},
		{"patch", "batch", "jobs", "team-a", false},
		{"update", "batch", "jobs", "team-a", false},
		{"list", "", "pods", "team-a", true},
		{"watch", "", "pods", "team-a", false},
		{"delete", "", "pods", "team-a", false},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", false},
		{"impersonate", "", "serviceaccounts", "", false},
		{"update", "", "configmaps", brokerNS, false},
		// The restore drills (broker/drill.go): their throwaway Clusters
		// and ObjectStores are deleted in the drill namespace only, their
		// volumes too, and nothing there reads Secrets by list or runs
		// commands in pods.
		{"delete", "postgresql.cnpg.io", "clusters", "strata-drills", true},
		{"delete", "barmancloud.cnpg.io", "objectstores", "strata-drills", true},
		{"deletecollection", "", "persistentvolumeclaims", "strata-drills", true},
		{"deletecollection", "", "persistentvolumeclaims", "team-a", false},
		{"list", "", "secrets", "strata-drills", false},
		{"create", "", "pods/exec", "strata-drills", false},
		{"delete", "", "pods", "strata-drills", false},
	}
	for _, c := range cases {
		t.Run(c.verb+" "+c.resource+"."+c.group+" in "+c.ns, func(t *testing.T) {
			NewWithT(t).Expect(can(c.verb, c.group, c.resource, c.ns)).To(Equal(c.allowed))
		})
	}
}
