package postgres

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

// Point-in-time restore: an instance provisioned with the restore
// parameter is bootstrapped by CloudNativePG's recovery from another
// instance's backups (through the barman-cloud plugin, the source's
// ObjectStore and serverName), replayed up to the target time, and then
// archives under its own serverName.

var _ provisioners.Restorer = (*Provisioner)(nil)

// LatestTarget is the to_time that recovers to the end of the archived WAL.
const LatestTarget = "latest"

// restoreOrigin names the source in the Cluster's externalClusters.
const restoreOrigin = "origin"

// RestoreRequest reads parameters.restore (schema-valid): nil without one.
func (p *Provisioner) RestoreRequest(params map[string]any) (*provisioners.RestoreRequest, error) {
	var raw rawParams
	if err := provisioners.DecodeParams(params, &raw); err != nil {
		return nil, err
	}
	if raw.Restore == nil {
		return nil, nil
	}
	r := &provisioners.RestoreRequest{FromInstance: raw.Restore.FromInstance}
	if raw.Restore.ToTime == LatestTarget {
		return r, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw.Restore.ToTime)
	if err != nil {
		return nil, provisioners.ParamErrorf("parameters.restore.to_time", "not an RFC 3339 time (e.g. 2026-12-06T09:15:00Z) nor %q: %v", LatestTarget, err)
	}
	r.ToTime = t.UTC()
	return r, nil
}

// checkRestore refuses restores this build cannot render.
func (p *Provisioner) checkRestore(inst provisioners.Instance) error {
	r := inst.Restore
	if r == nil {
		return nil
	}
	if inst.Plan.Postgres.Backup == nil {
		// The restored instance is a copy of production data: it keeps
		// point-in-time recovery going, under its own serverName.
		return provisioners.ParamErrorf("parameters.restore", "plan %s keeps no backups; restore into a plan with backups (standard or ha)", inst.Plan.Name)
	}
	if r.Namespace != inst.Namespace && !p.Config.Restore.AcrossNamespaces {
		return provisioners.ParamErrorf("parameters.restore.from_instance", "instance %s is in namespace %s and the new instance would be in %s; a restore reads only backups of its own namespace (the platform team can allow restores across namespaces: postgres.restore.acrossNamespaces)",
			r.InstanceID, r.Namespace, inst.Namespace)
	}
	return nil
}

// restoreBootstrap replaces initdb with CloudNativePG's recovery from the
// source's backups.
func restoreBootstrap(spec map[string]any, inst provisioners.Instance, s Settings, n Names) {
	r := inst.Restore
	src := NamesOf(provisioners.Instance{Name: r.Name})
	store := src.ObjectStore
	if r.Namespace != inst.Namespace {
		store = n.RestoreSource
	}
	// database and owner as at initdb: CloudNativePG's app Secret is for
	// them, and both are in the recovered data.
	recovery := map[string]any{"source": restoreOrigin, "database": s.Databases[0], "owner": OwnerRole}
	if !r.TargetTime.IsZero() {
		recovery["recoveryTarget"] = map[string]any{"targetTime": r.TargetTime.UTC().Format(time.RFC3339Nano)}
	}
	spec["bootstrap"] = map[string]any{"recovery": recovery}
	spec["externalClusters"] = []any{map[string]any{
		"name": restoreOrigin,
		"plugin": map[string]any{
			"name":       barmanPlugin,
			"parameters": map[string]any{"barmanObjectName": store, "serverName": src.Cluster},
		},
	}}
}

// restoreSourceStore is an ObjectStore in the instance's namespace over the
// source namespace's backups (CloudNativePG reads an ObjectStore of the
// Cluster's namespace only). It has no retention policy: nothing through
// it may ever delete the source's backups. Deprovision keeps it, like
// every ObjectStore: the broker's RBAC cannot delete ObjectStores, so
// that it can never lose a path to backups.
func (p *Provisioner) restoreSourceStore(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, "barmancloud.cnpg.io/v1", "ObjectStore", n.RestoreSource,
		p.objectStoreSpec(inst, n, inst.Restore.Namespace))
	o.SetAnnotations(map[string]string{provisioners.AnnotationRetain: "true"})
	return o
}

var objectStoreGVK = schema.GroupVersionKind{Group: "barmancloud.cnpg.io", Version: "v1", Kind: "ObjectStore"}

// WindowRefs are the instance's ObjectStore (the plugin's recovery window
// per serverName) and Cluster (whether WAL archiving works).
func (p *Provisioner) WindowRefs(inst provisioners.Instance) []provisioners.Ref {
	if inst.Plan.Postgres.Shared || inst.Plan.Postgres.Backup == nil {
		return nil
	}
	n := NamesOf(inst)
	return []provisioners.Ref{
		{GVK: objectStoreGVK, Namespace: inst.Namespace, Name: n.ObjectStore},
		{GVK: clusterGVK, Namespace: inst.Namespace, Name: n.Cluster},
	}
}

// Window is the instance's restorable window. It starts at the plugin's
// first recoverability point for the instance's serverName (the oldest
// base backup kept), but never before the retention: after a deprovision
// no sidecar enforces the retention policy, the bucket lifecycle does.
// It ends where the archived WAL surely reaches: archive_timeout behind
// now while archiving works, behind the deprovision once deprovisioned;
// at the last completed backup while archiving fails.
func (p *Provisioner) Window(inst provisioners.Instance, observed map[provisioners.Ref]*unstructured.Unstructured, deprovisioned, now time.Time) (provisioners.Window, bool) {
	refs := p.WindowRefs(inst)
	if len(refs) == 0 {
		return provisioners.Window{}, false
	}
	store, cluster := observed[refs[0]], observed[refs[1]]
	if store == nil {
		return provisioners.Window{}, false
	}
	recovery, _, _ := unstructured.NestedMap(store.Object, "status", "serverRecoveryWindow", NamesOf(inst).Cluster)
	first, ok := timeField(recovery, "firstRecoverabilityPoint")
	if !ok {
		return provisioners.Window{}, false
	}
	retention := inst.Plan.Postgres.Backup.RetentionDays
	if s, err := Resolve(inst.Plan, inst.Params); err == nil {
		retention = s.RetentionDays
	}
	if oldest := now.Add(-time.Duration(retention) * 24 * time.Hour); first.Before(oldest) {
		first = oldest
	}
	lag := p.Config.Backup.ArchiveTimeout()
	var last time.Time
	switch {
	case !deprovisioned.IsZero():
		last = deprovisioned.Add(-lag)
	case cluster != nil && provisioners.ConditionTrue(cluster, "ContinuousArchiving"):
		last = now.Add(-lag)
	default:
		// A completed backup waited for its last WAL to be archived.
		if last, ok = timeField(recovery, "lastSuccessfulBackupTime"); !ok {
			return provisioners.Window{}, false
		}
	}
	first, last = first.UTC().Truncate(time.Second), last.UTC().Truncate(time.Second)
	if last.Before(first) {
		return provisioners.Window{}, false
	}
	return provisioners.Window{First: first, Last: last}, true
}

func timeField(m map[string]any, key string) (time.Time, bool) {
	s, _ := m[key].(string)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}
