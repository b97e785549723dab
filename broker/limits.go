package broker

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/provisioners"
)

// TenantLimits are what the platform team lets one tenant (namespace)
// hold. Zero values mean no limit.
type TenantLimits struct {
	// InstancesPerService caps the instances of each service, by service
	// name ("postgresql").
	InstancesPerService map[string]int `json:"instancesPerService"`
	// Plans lists, by service name, the plans the tenant may use; a
	// service absent here may use all its plans.
	Plans map[string][]string `json:"plans"`
	// StorageGB, CPU and Memory cap the sum over the tenant's instances
	// of what their pods request (CPU and Memory are Kubernetes
	// quantities, e.g. "16" and "64Gi").
	StorageGB int    `json:"storageGB"`
	CPU       string `json:"cpu"`
	Memory    string `json:"memory"`
}

// None says the tenant has no limits at all.
func (t TenantLimits) None() bool {
	return len(t.InstancesPerService) == 0 && len(t.Plans) == 0 && t.StorageGB == 0 && t.CPU == "" && t.Memory == ""
}

// TenancyLimits are the limits of every tenant, with overrides by
// namespace (an override replaces the defaults for that namespace).
type TenancyLimits struct {
	Default    TenantLimits            `json:"default"`
	Namespaces map[string]TenantLimits `json:"namespaces"`
}

// For returns the limits of a namespace, and the configuration path they
// come from (for messages).
func (l TenancyLimits) For(namespace string) (TenantLimits, string) {
	if n, ok := l.Namespaces[namespace]; ok {
		return n, "tenancy.limits.namespaces." + namespace
	}
	return l.Default, "tenancy.limits.default"
}

// Validate checks the quantities once, at start-up.
func (l TenancyLimits) Validate() error {
	check := func(path string, t TenantLimits) error {
		for field, q := range map[string]string{"cpu": t.CPU, "memory": t.Memory} {
			if q == "" {
				continue
			}
			if _, err := resource.ParseQuantity(q); err != nil {
				return fmt.Errorf("%s.%s: %q is not a Kubernetes quantity", path, field, q)
			}
		}
		return nil
	}
	if err := check("tenancy.limits.default", l.Default); err != nil {
		return err
	}
	for ns, t := range l.Namespaces {
		if err := check("tenancy.limits.namespaces."+ns, t); err != nil {
			return err
		}
	}
	return nil
}

// Usage is one instance as the limits count it.
type Usage struct {
	Service, Plan string
	Size          provisioners.Size
}

// Check says whether a tenant holding existing may also hold asked; the
// error names the limit (path is its place in the configuration) and what
// to do.
func (t TenantLimits) Check(path string, existing []Usage, asked Usage) error {
	if allowed, ok := t.Plans[asked.Service]; ok && !slices.Contains(allowed, asked.Plan) {
		return fmt.Errorf("%s.plans.%s: this tenant may use the plans %s of %s, not %q; ask the platform team to allow it",
			path, asked.Service, strings.Join(allowed, ", "), asked.Service, asked.Plan)
	}
	total, count := asked.Size, 1
	for _, u := range existing {
		total = total.Add(u.Size)
		if u.Service == asked.Service {
			count++
		}
	}
	if max, ok := t.InstancesPerService[asked.Service]; ok && count > max {
		return fmt.Errorf("%s.instancesPerService.%s: this tenant may hold %d %s instance(s) and has %d; deprovision one or ask the platform team to raise the limit",
			path, asked.Service, max, asked.Service, count-1)
	}
	over := func(field string, limit, used resource.Quantity, unit string) error {
		if used.Cmp(limit) <= 0 {
			return nil
		}
		return fmt.Errorf("%s.%s: the tenant's instances would request %s%s in all, over its limit of %s%s; choose a smaller size or ask the platform team to raise the limit",
			path, field, used.String(), unit, limit.String(), unit)
	}
	if t.StorageGB > 0 {
		gb := resource.NewQuantity(total.Storage.Value()>>30, resource.DecimalSI)
		if err := over("storageGB", *resource.NewQuantity(int64(t.StorageGB), resource.DecimalSI), *gb, " GB"); err != nil {
			return err
		}
	}
	if t.CPU != "" {
		if err := over("cpu", resource.MustParse(t.CPU), total.CPU, " CPU"); err != nil {
			return err
		}
	}
	if t.Memory != "" {
		if err := over("memory", resource.MustParse(t.Memory), total.Memory, " memory"); err != nil {
			return err
		}
	}
	return nil
}

// quotaResources map what an instance requests to the ResourceQuota
// resources that count it (database pods set requests = limits).
var quotaResources = []struct {
	name corev1.ResourceName
	of   func(provisioners.Size) resource.Quantity
}{
	{corev1.ResourceRequestsCPU, func(s provisioners.Size) resource.Quantity { return s.CPU }},
	{corev1.ResourceCPU, func(s provisioners.Size) resource.Quantity { return s.CPU }},
	{corev1.ResourceLimitsCPU, func(s provisioners.Size) resource.Quantity { return s.CPU }},
	{corev1.ResourceRequestsMemory, func(s provisioners.Size) resource.Quantity { return s.Memory }},
	{corev1.ResourceMemory, func(s provisioners.Size) resource.Quantity { return s.Memory }},
	{corev1.ResourceLimitsMemory, func(s provisioners.Size) resource.Quantity { return s.Memory }},
	{corev1.ResourceRequestsStorage, func(s provisioners.Size) resource.Quantity { return s.Storage }},
}

// CheckQuotas says whether growing a namespace's requests by delta fits
// its ResourceQuotas (what they have left: hard - used), so a provision
// is refused at once rather than leaving pods the quota admission
// refuses. A delta that does not grow anything always fits.
func CheckQuotas(quotas []corev1.ResourceQuota, delta provisioners.Size) error {
	sort.Slice(quotas, func(i, j int) bool { return quotas[i].Name < quotas[j].Name })
	for _, q := range quotas {
		for _, r := range quotaResources {
			hard, ok := q.Status.Hard[r.name]
			if !ok {
				hard, ok = q.Spec.Hard[r.name]
			}
			want := r.of(delta)
			if !ok || want.Sign() <= 0 {
				continue
			}
			left := hard.DeepCopy()
			if used, ok := q.Status.Used[r.name]; ok {
				left.Sub(used)
			}
			if want.Cmp(left) > 0 {
				return fmt.Errorf("ResourceQuota %s of namespace %s: %s has %s left and this instance needs %s more; choose a smaller size or ask for a larger quota",
					q.Name, q.Namespace, r.name, left.String(), want.String())
			}
		}
	}
	return nil
}

// checkTenant refuses a provision or update (of instance id, whose other
// instances are excluded from what the tenant holds) that would exceed the
// tenant's limits or its namespace's ResourceQuotas.
//
// When the tenant has limits, it returns the tenant's guard, read before
// its records: the caller commits the change with Store.BumpTenantGuard
// once its record is written, and checks again if that fails (another
// change of the tenant was checked at the same moment).
func (b *Broker) checkTenant(ctx context.Context, inst provisioners.Instance, eng Engine, before *provisioners.Size) (*TenantGuard, error) {
	size := provisioners.Size{}
	if sz, ok := eng.Provisioner.(provisioners.Sizer); ok {
		s, err := sz.Size(inst)
		if err != nil {
			return nil, paramError(err)
		}
		size = s
	}
	limits, path := b.Limits.For(inst.Namespace)
	// Without limits the tenant's other instances do not matter: skip
	// reading them (a provision then costs the same however many
	// instances the tenant has).
	var guard *TenantGuard
	if !limits.None() {
		var err error
		if guard, err = b.Store.ReadTenantGuard(ctx, inst.Namespace); err != nil {
			return nil, internal(err.Error())
		}
		recs, err := b.Store.InstancesOf(ctx, inst.Namespace)
		if err != nil {
			return nil, internal(err.Error())
		}
		var existing []Usage
		for _, r := range recs {
			if r.Deleted || r.ID == inst.ID {
				continue
			}
			u, err := b.usageOf(r)
			if err != nil {
				continue // a record the catalog no longer knows counts nothing
			}
			existing = append(existing, u)
		}
		if err := limits.Check(path, existing, Usage{Service: inst.Service.Name, Plan: inst.Plan.Name, Size: size}); err != nil {
			return nil, unprocessable("TenantLimitExceeded", err)
		}
	}
	delta := size
	if before != nil {
		delta = provisioners.Size{CPU: size.CPU.DeepCopy(), Memory: size.Memory.DeepCopy(), Storage: size.Storage.DeepCopy()}
		delta.CPU.Sub(before.CPU)
		delta.Memory.Sub(before.Memory)
		delta.Storage.Sub(before.Storage)
	}
	if b.Quotas == nil {
		return guard, nil
	}
	quotas, err := b.Quotas(ctx, inst.Namespace)
	if err != nil {
		return nil, internal("read the namespace's ResourceQuotas: " + err.Error())
	}
	if err := CheckQuotas(quotas, delta); err != nil {
		return nil, unprocessable("TenantLimitExceeded", err)
	}
	return guard, nil
}

// usageOf is what a recorded instance counts against its tenant.
func (b *Broker) usageOf(r *InstanceRecord) (Usage, error) {
	inst, eng, err := b.instanceOf(r)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{Service: inst.Service.Name, Plan: inst.Plan.Name}
	if sz, ok := eng.Provisioner.(provisioners.Sizer); ok {
		if u.Size, err = sz.Size(inst); err != nil {
			return Usage{}, err
		}
	}
	return u, nil
}

// Quotas lists a namespace's ResourceQuotas.
type Quotas func(ctx context.Context, namespace string) ([]corev1.ResourceQuota, error)
