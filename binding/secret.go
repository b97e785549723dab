package binding

import (
	"context"
	"encoding/base64"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// writeSecret applies the binding Secret: the instance's labels plus the
// binding's, type servicebinding.io/<typ>, data as stringData.
func writeSecret(ctx context.Context, kube Kube, inst provisioners.Instance, bindingID, name, typ string, data map[string]string) error {
	labels := inst.Labels()
	labels[provisioners.LabelBindingID] = provisioners.LabelValue(bindingID)
	sd := make(map[string]any, len(data))
	for k, v := range data {
		sd[k] = v
	}
	return kube.Apply(ctx, []*unstructured.Unstructured{{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": name, "namespace": inst.Namespace, "labels": withLabel(labels)},
		"type":       "servicebinding.io/" + typ,
		"stringData": sd,
	}}})
}

// secretCA reads the PEM in ca.crt of the Secret namespace/name; what
// names the certificate in the error when the Secret does not exist yet.
func secretCA(ctx context.Context, kube Kube, namespace, name, what string) (string, error) {
	o, err := kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: namespace, Name: name})
	if err != nil {
		return "", err
	}
	if o == nil {
		return "", &NotReadyError{"the " + what + " (Secret " + name + ") does not exist yet; retry once the instance is ready"}
	}
	enc, _, _ := unstructured.NestedString(o.Object, "data", "ca.crt")
	pem, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(pem) == 0 {
		return "", &NotReadyError{"Secret " + name + " has no ca.crt yet"}
	}
	return string(pem), nil
}
