package broker

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// The tenant baseline (provisioners.Baseline) is part of every instance's
// desired state (apply.go): applied with every provision and update, and
// again by the periodic resync of operations in progress, and removed when
// the tenant's last instance is deprovisioned.
//
// Applying it with each instance, not only a tenant's first, heals a
// removal racing a new provision (a deprovision that read "no live
// instance" just before another provision recorded one) and baselines the
// tenants of instances made before the broker had baselines.

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
	b.logger(ctx).Info("removed the tenant baseline: no instance left", zap.String("namespace", namespace))
	return nil
}
