package broker

import (
	"context"
	"sync"
	"time"

	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The reconcile loop drives every operation in progress to its end, so
// that work never depends on a platform polling: Crossplane's provider,
// for one, GETs a binding instead of polling it, and a platform may stop
// polling an instance it deletes. One replica at a time runs it, elected
// through a Lease in the broker's namespace (client-go's leader election);
// requests on any replica keep working meanwhile, and what they do is
// claimed on the record, so the loop and a request never issue a
// binding's credentials twice.

// ReconcilerLease is the name of the Lease the replicas elect the loop's
// runner with.
const ReconcilerLease = "strata-broker-reconciler"

// ReconcileOptions configure RunReconciler.
type ReconcileOptions struct {
	// Client holds the Lease, in the broker's own namespace; nil means
	// the broker's own clientset.
	Client kubernetes.Interface
	// Interval is the pause between passes; zero means 5 s.
	Interval time.Duration
	// Workers bound the operations advanced at once; zero means 8.
	Workers int
}

// RunReconciler runs the loop until ctx ends, whenever this replica holds
// the Lease.
func (b *Broker) RunReconciler(ctx context.Context, o ReconcileOptions) {
	if o.Interval <= 0 {
		o.Interval = DefaultReconcileIntervalSeconds * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Client == nil {
		o.Client = b.Store.client
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaName(ReconcilerLease, b.Store.namespace),
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: b.Replica},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true,
			// client-go's recommended timings: a dead leader is replaced
			// within about 15 s.
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					b.Log.Info("running the reconcile loop", zap.String("replica", b.Replica))
					if b.Drills != nil {
						// The drills need one runner too: the loop's.
						go b.Drills.Run(ctx)
					}
					b.reconcileUntil(ctx, o)
				},
				OnStoppedLeading: func() {},
			},
		})
	}
}

func (b *Broker) reconcileUntil(ctx context.Context, o ReconcileOptions) {
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for pass := 0; ; pass++ {
		// Every 60th pass also reads records written before they carried
		// the in-progress label (a broker upgraded mid-operation).
		b.ReconcileOnce(ctx, o.Workers, pass%60 == 0)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ReconcileOnce advances every operation in progress once, at most workers
// at a time; all reads every instance record rather than only the ones
// labelled in progress.
func (b *Broker) ReconcileOnce(ctx context.Context, workers int, all bool) {
	list := b.Store.InProgressInstances
	if all {
		list = b.Store.ListInstances
	}
	insts, err := list(ctx)
	if err != nil {
		b.Log.Warn("reconcile: list instance records", zap.Error(err))
	}
	binds, err := b.Store.InProgressBindings(ctx)
	if err != nil {
		b.Log.Warn("reconcile: list binding records", zap.Error(err))
	}
	sem := make(chan struct{}, max(workers, 1))
	var wg sync.WaitGroup
	run := func(f func()) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f()
		}()
	}
	for _, r := range insts {
		if r.Deleted || r.Operation.State != provisioners.InProgress {
			continue
		}
		run(func() { b.advance(WithLogger(ctx, b.Log.With(zap.String("instance_id", r.ID))), r) })
	}
	for _, br := range binds {
		run(func() {
			b.advanceBinding(WithLogger(ctx, b.Log.With(zap.String("instance_id", br.InstanceID), zap.String("binding_id", br.ID))), br)
		})
	}
	wg.Wait()
}

func metaName(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}
