package provisioners

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the server-side apply field manager of the broker.
const FieldManager = "strata-broker"

// Kube applies, reads and deletes objects of any kind through server-side
// apply and the dynamic client.
type Kube struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
}

// NewKube returns a Kube for the cluster cfg points at.
func NewKube(cfg *rest.Config) (*Kube, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Kube{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

func (k *Kube) resource(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, error) {
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// A CRD may have been installed after the broker started.
		k.mapper.Reset()
		m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("%s is not served by this cluster (is its operator installed?): %w", gvk.Kind, err)
	}
	if err != nil {
		// The API server did not answer discovery (it restarts, say): that
		// says nothing about the kind, and a failed discovery must not
		// stick in the cache.
		k.mapper.Reset()
		return nil, fmt.Errorf("could not look %s up in the API server's discovery: %w", gvk.Kind, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return k.dyn.Resource(m.Resource).Namespace(namespace), nil
	}
	return k.dyn.Resource(m.Resource), nil
}

// Apply server-side-applies the objects in order, forcing ownership of the
// fields Strata sets: the broker is the source of truth for them.
func (k *Kube) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	return k.ApplyAs(ctx, FieldManager, objs)
}

// ApplyAs is Apply as another field manager: for a part of an object the
// broker's main manager does not render (its fields stay as they are
// when FieldManager applies the rest).
func (k *Kube) ApplyAs(ctx context.Context, manager string, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		ri, err := k.resource(o.GroupVersionKind(), o.GetNamespace())
		if err != nil {
			return err
		}
		out, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: manager, Force: true})
		if err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		if out.GetDeletionTimestamp() != nil {
			// Applying to an object being deleted changes it, and then it
			// is gone: what it was applied for must wait.
			return &TerminatingError{Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
		}
	}
	return nil
}

// TerminatingError says an object to apply is still being deleted (an
// earlier instance or binding of the same id, or an attempt being cleaned
// up); applying again once it is gone succeeds.
type TerminatingError struct{ Kind, Namespace, Name string }

func (e *TerminatingError) Error() string {
	return fmt.Sprintf("%s %s/%s is still being deleted; retry once it is gone", e.Kind, e.Namespace, e.Name)
}

// Get returns the object, or nil when it does not exist.
func (k *Kube) Get(ctx context.Context, ref Ref) (*unstructured.Unstructured, error) {
	ri, err := k.resource(ref.GVK, ref.Namespace)
	if err != nil {
		return nil, err
	}
	o, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return o, err
}

// Observe fetches every ref; absent objects map to nil.
func (k *Kube) Observe(ctx context.Context, refs []Ref) (map[Ref]*unstructured.Unstructured, error) {
	out := make(map[Ref]*unstructured.Unstructured, len(refs))
	for _, r := range refs {
		o, err := k.Get(ctx, r)
		if err != nil {
			return nil, err
		}
		out[r] = o
	}
	return out, nil
}

// leafKinds own nothing: deleting them in the foreground would only keep
// them, terminating, until the garbage collector's next look, and a
// binding or baseline made again meanwhile would be applied to an object
// on its way out.
var leafKinds = map[schema.GroupKind]bool{
	{Kind: "Secret"}:    true,
	{Kind: "ConfigMap"}: true,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}:       true,
	{Group: "security.istio.io", Kind: "PeerAuthentication"}:  true,
	{Group: "security.istio.io", Kind: "AuthorizationPolicy"}: true,
}

// Delete deletes the object with foreground propagation, so its dependents
// (pods, PVCs) go before it does, or at once for kinds that own nothing; a
// missing object is not an error, nor is a kind the cluster does not serve
// (no Istio: no PeerAuthentication to delete).
func (k *Kube) Delete(ctx context.Context, ref Ref) error {
	ri, err := k.resource(ref.GVK, ref.Namespace)
	if meta.IsNoMatchError(err) {
		return nil
	}
	if err != nil {
		return err
	}
	propagation := metav1.DeletePropagationForeground
	if leafKinds[ref.GVK.GroupKind()] {
		propagation = metav1.DeletePropagationBackground
	}
	err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &propagation})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Create creates the object unless one of that name exists, and says
// whether it did: for objects whose content must never be replaced once
// written (a generated password), where apply would overwrite it.
func (k *Kube) Create(ctx context.Context, o *unstructured.Unstructured) (bool, error) {
	ri, err := k.resource(o.GroupVersionKind(), o.GetNamespace())
	if err != nil {
		return false, err
	}
	_, err = ri.Create(ctx, o, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return true, nil
}

// List returns a namespace's objects of a kind (the instance page lists
// CloudNativePG's Backups, whose names the broker does not choose).
func (k *Kube) List(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error) {
	ri, err := k.resource(gvk, namespace)
	if err != nil {
		return nil, err
	}
	l, err := ri.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out, nil
}
