package broker

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// The tenant baseline (provisioners.Baseline) is ensured with every
// provision and on every poll of a provision or update, and removed when
// the tenant's last instance is deprovisioned.
//
// Ensuring it on every poll, not only on a tenant's first instance, heals
// a removal racing a new provision (a deprovision that read "no live
// instance" just before another provision recorded one) and baselines the
// tenants of instances made before the broker had baselines.

// ensureBaseline applies the tenant's baseline (server-side apply: a no-op
// when it is already as rendered).
func (b *Broker) ensureBaseline(ctx context.Context, namespace string, meshed bool) error {
	objs := provisioners.Baseline(b.Baseline, provisioners.BaselineTenant{Namespace: namespace, Meshed: meshed})
	if err := b.Kube.Apply(ctx, objs); err != nil {
		return fmt.Errorf("applying the tenant baseline of namespace %s: %w", namespace, err)
	}
	return nil
}

// releaseBaseline removes the baseline of a namespace in which no instance
// is left. A meshed tenant's record says it has Istio objects; the refs of
// all of them are deleted anyway (a missing one, or a kind the cluster
// does not serve, is nothing to delete).
func (b *Broker) releaseBaseline(ctx context.Context, namespace string) error {
	recs, err := b.Store.InstancesOf(ctx, namespace)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !r.Deleted {
			return nil
		}
	}
	for _, ref := range provisioners.BaselineRefs(namespace) {
		if err := b.Kube.Delete(ctx, ref); err != nil {
			return fmt.Errorf("deleting %s %s/%s: %w", ref.GVK.Kind, ref.Namespace, ref.Name, err)
		}
	}
	b.Log.Info("removed the tenant baseline: no instance left", zap.String("namespace", namespace))
	return nil
}
