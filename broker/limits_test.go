package broker

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/provisioners"
)

func size(cpu, mem string, storageGB int64) provisioners.Size {
	return provisioners.Size{CPU: resource.MustParse(cpu), Memory: resource.MustParse(mem),
		Storage: *resource.NewQuantity(storageGB<<30, resource.BinarySI)}
}

func TestTenantLimits(t *testing.T) {
	pg := func(plan string, s provisioners.Size) Usage { return Usage{Service: "postgresql", Plan: plan, Size: s} }
	limits := TenantLimits{
		InstancesPerService: map[string]int{"postgresql": 2},
		Plans:               map[string][]string{"postgresql": {"dev-lite", "standard"}},
		StorageGB:           50, CPU: "4", Memory: "8Gi",
	}
	tests := []struct {
		name     string
		existing []Usage
		asked    Usage
		err      string
	}{
		{"within every limit", []Usage{pg("dev-lite", size("250m", "512Mi", 1))}, pg("standard", size("2", "4Gi", 40)), ""},
		{"a plan the tenant may not use", nil, pg("ha", size("6", "24Gi", 150)), "tenancy.limits.default.plans.postgresql: this tenant may use the plans dev-lite, standard"},
		{"one instance too many", []Usage{pg("dev-lite", size("0", "0", 1)), pg("dev-lite", size("0", "0", 1))}, pg("dev-lite", size("0", "0", 1)),
			"tenancy.limits.default.instancesPerService.postgresql: this tenant may hold 2 postgresql instance(s) and has 2"},
		{"other services do not count against the instance limit", []Usage{{Service: "redis"}, {Service: "redis"}}, pg("dev-lite", size("0", "0", 1)), ""},
		{"storage over the limit", []Usage{pg("standard", size("0", "0", 40))}, pg("dev-lite", size("0", "0", 20)), "tenancy.limits.default.storageGB: the tenant's instances would request 60 GB in all, over its limit of 50 GB"},
		{"cpu over the limit", []Usage{pg("standard", size("2", "0", 0))}, pg("standard", size("2500m", "0", 0)), "tenancy.limits.default.cpu"},
		{"memory over the limit", nil, pg("standard", size("0", "9Gi", 0)), "tenancy.limits.default.memory"},
		{"exactly at the limit", []Usage{pg("standard", size("2", "4Gi", 25))}, pg("standard", size("2", "4Gi", 25)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := limits.Check("tenancy.limits.default", tc.existing, tc.asked)
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
		})
	}
	t.Run("no limits, no refusal", func(t *testing.T) {
		NewWithT(t).Expect(TenantLimits{}.Check("p", []Usage{pg("ha", size("100", "1Ti", 10000))}, pg("ha", size("100", "1Ti", 10000)))).To(Succeed())
	})
	t.Run("a namespace's override replaces the defaults", func(t *testing.T) {
		g := NewWithT(t)
		l := TenancyLimits{Default: limits, Namespaces: map[string]TenantLimits{"big": {}}}
		got, path := l.For("big")
		g.Expect(path).To(Equal("tenancy.limits.namespaces.big"))
		g.Expect(got.Check(path, nil, pg("ha", size("6", "24Gi", 150)))).To(Succeed())
		_, path = l.For("small")
		g.Expect(path).To(Equal("tenancy.limits.default"))
	})
	t.Run("bad quantities are refused at start-up, naming the key", func(t *testing.T) {
		NewWithT(t).Expect(TenancyLimits{Namespaces: map[string]TenantLimits{"a": {CPU: "lots"}}}.Validate()).
			To(MatchError(ContainSubstring("tenancy.limits.namespaces.a.cpu")))
	})
}

func TestCheckQuotas(t *testing.T) {
	quota := func(hard, used corev1.ResourceList) corev1.ResourceQuota {
		return corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "team", Namespace: "team-a"},
			Spec: corev1.ResourceQuotaSpec{Hard: hard}, Status: corev1.ResourceQuotaStatus{Hard: hard, Used: used}}
	}
	q := quota(corev1.ResourceList{
		corev1.ResourceRequestsStorage: resource.MustParse("100Gi"),
		corev1.ResourceLimitsCPU:       resource.MustParse("8"),
	}, corev1.ResourceList{
		corev1.ResourceRequestsStorage: resource.MustParse("70Gi"),
		corev1.ResourceLimitsCPU:       resource.MustParse("6"),
	})
	tests := []struct {
		name  string
		delta provisioners.Size
		err   string
	}{
		{"fits", size("2", "4Gi", 30), ""},
		{"storage left is too little", size("1", "1Gi", 31), "ResourceQuota team of namespace team-a: requests.storage has 30Gi left and this instance needs 31Gi more"},
		{"cpu limits left is too little", size("3", "1Gi", 1), "limits.cpu has 2 left"},
		{"a shrinking update always fits", size("-1", "-1Gi", 0), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := CheckQuotas([]corev1.ResourceQuota{q}, tc.delta)
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
		})
	}
}

// None decides whether a provision reads the tenant's other instances at
// all: any one limit set means it must.
func TestTenantLimitsNone(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits TenantLimits
		none   bool
	}{
		{"nothing", TenantLimits{}, true},
		{"empty maps", TenantLimits{InstancesPerService: map[string]int{}, Plans: map[string][]string{}}, true},
		{"instances", TenantLimits{InstancesPerService: map[string]int{"redis": 1}}, false},
		{"plans", TenantLimits{Plans: map[string][]string{"redis": {"dev-lite"}}}, false},
		{"storage", TenantLimits{StorageGB: 1}, false},
		{"cpu", TenantLimits{CPU: "1"}, false},
		{"memory", TenantLimits{Memory: "1Gi"}, false},
	} {
		if got := c.limits.None(); got != c.none {
			t.Errorf("%s: None() = %v, want %v", c.name, got, c.none)
		}
	}
}
