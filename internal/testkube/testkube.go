// Package testkube is an in-memory stand-in for the Kubernetes API server,
// for tests of code that does its Kubernetes I/O through Apply, Create,
// Get, Update and Delete (binding.Kube). Only tests import it.
package testkube

import (
	"context"
	"encoding/base64"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// Kube keeps objects in memory. A Secret's stringData becomes base64 data,
// as the API server does. Lock it to change a stored object in place.
type Kube struct {
	sync.Mutex
	// Objs are the stored objects; Get returns copies.
	Objs map[provisioners.Ref]*unstructured.Unstructured
	// Deleted are the references Delete was called with, in order.
	Deleted []provisioners.Ref
	// KeepStatus makes Apply keep a stored object's status, as server-side
	// apply of the spec does; without it Apply replaces the object.
	KeepStatus bool
}

// New returns an empty Kube.
func New(keepStatus bool) *Kube {
	return &Kube{Objs: map[provisioners.Ref]*unstructured.Unstructured{}, KeepStatus: keepStatus}
}

// Store stores a copy of o, stringData turned into data.
func (k *Kube) Store(o *unstructured.Unstructured) {
	k.Lock()
	defer k.Unlock()
	k.store(o)
}

func (k *Kube) store(o *unstructured.Unstructured) {
	c := o.DeepCopy()
	if sd, ok := c.Object["stringData"].(map[string]any); ok {
		data := map[string]any{}
		for key, v := range sd {
			data[key] = base64.StdEncoding.EncodeToString([]byte(v.(string)))
		}
		c.Object["data"] = data
		delete(c.Object, "stringData")
	}
	k.Objs[provisioners.RefOf(c)] = c
}

func (k *Kube) Apply(_ context.Context, objs []*unstructured.Unstructured) error {
	k.Lock()
	defer k.Unlock()
	for _, o := range objs {
		if old := k.Objs[provisioners.RefOf(o)]; k.KeepStatus && old != nil {
			n := o.DeepCopy()
			if st, ok := old.Object["status"]; ok {
				n.Object["status"] = st
			}
			k.store(n)
			continue
		}
		k.store(o)
	}
	return nil
}

func (k *Kube) Create(_ context.Context, o *unstructured.Unstructured) (bool, error) {
	k.Lock()
	defer k.Unlock()
	if _, ok := k.Objs[provisioners.RefOf(o)]; ok {
		return false, nil
	}
	k.store(o)
	return true, nil
}

func (k *Kube) Get(_ context.Context, ref provisioners.Ref) (*unstructured.Unstructured, error) {
	k.Lock()
	defer k.Unlock()
	if o, ok := k.Objs[ref]; ok {
		return o.DeepCopy(), nil
	}
	return nil, nil
}

func (k *Kube) Update(_ context.Context, o *unstructured.Unstructured) error {
	k.Lock()
	defer k.Unlock()
	k.store(o)
	return nil
}

func (k *Kube) Delete(_ context.Context, ref provisioners.Ref) error {
	k.Lock()
	defer k.Unlock()
	delete(k.Objs, ref)
	k.Deleted = append(k.Deleted, ref)
	return nil
}
