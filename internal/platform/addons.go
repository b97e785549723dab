//go:build linux

package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// StorageClass is the platform's default StorageClass: pre-created
// hostPath PersistentVolumes under the state directory (a single node
// needs nothing more; on several nodes each volume is tied to a node, as a
// local disk is).
const StorageClass = "local"

// persistentVolumes is how many volumes are pre-created (per node).
const persistentVolumes = 12

// installAddons installs cluster DNS and the storage, and waits for DNS.
func (p *Platform) installAddons(ctx context.Context) error {
	if err := p.Apply(ctx, []byte(p.coreDNSManifest())); err != nil {
		return err
	}
	if err := p.installStorage(ctx); err != nil {
		return err
	}
	return p.WaitForDeployment(ctx, "kube-system", "coredns", 3*time.Minute)
}

// coreDNSManifest is cluster DNS: CoreDNS answering cluster.local from the
// API and nothing else (no forward plugin is even built in). It listens on
// 1053 so it needs no privilege; the Service maps 53 to it.
func (p *Platform) coreDNSManifest() string {
	imgs := p.images
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: %s
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 170Mi}
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: %s
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
`, imgs.CoreDNS, p.dnsServiceIP)
}

// installStorage creates the default StorageClass and its hostPath
// volumes. The directories belong to uid/gid 26 (PostgreSQL's in
// CloudNativePG's pods, which also set fsGroup 26) and are writable by
// every user: kubelet applies no fsGroup to hostPath volumes, and the
// redis-operator's pods run as uid 1000. The state directory (0700) keeps
// other users of the machine out.
func (p *Platform) installStorage(ctx context.Context) error {
	var manifest bytes.Buffer
	fmt.Fprintf(&manifest, `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: %s
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
`, StorageClass)
	for _, n := range p.nodes() {
		for i := 0; i < persistentVolumes; i++ {
			// The first node's volumes keep their single-node names.
			name, dir := fmt.Sprintf("strata-pv-%02d", i), p.path("volumes", fmt.Sprintf("pv-%02d", i))
			if n.index > 0 {
				name, dir = fmt.Sprintf("strata-pv-%d-%02d", n.index+1, i), p.path("volumes", n.name, fmt.Sprintf("pv-%02d", i))
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := os.Chown(dir, 26, 26); err != nil {
				return err
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				return err
			}
			fmt.Fprintf(&manifest, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  storageClassName: %s
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %q, type: Directory}
`, name, StorageClass, dir)
			// Every node reads the same file system, but a volume that
			// follows its pod to another node would hide what a real
			// cluster's local disks do: on several nodes, a volume
			// belongs to its node.
			if p.nodeCount > 1 {
				fmt.Fprintf(&manifest, `  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [%s]}]
`, n.name)
			}
		}
	}
	return p.Apply(ctx, manifest.Bytes())
}

// Apply server-side applies every object of a multi-document YAML.
func (p *Platform) Apply(ctx context.Context, manifest []byte) error {
	objs, err := decodeManifest(manifest)
	if err != nil {
		return fmt.Errorf("platform: decoding manifest: %w", err)
	}
	return p.applyObjects(ctx, objs)
}

// applyObjects server-side applies objects in order (field manager
// "strata-platform"). A kind defined by a CRD applied just before appears
// in discovery a moment later, and a webhook's pod may not serve yet: both
// are retried for a minute.
func (p *Platform) applyObjects(ctx context.Context, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(p.AdminConfig)
	if err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(p.AdminConfig)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		data, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		var lastErr error
		err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				mapper.Reset()
				lastErr = err
				return false, nil
			}
			var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				ns := obj.GetNamespace()
				if ns == "" {
					ns = "default"
				}
				ri = dyn.Resource(mapping.Resource).Namespace(ns)
			}
			force := true
			_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "strata-platform", Force: &force})
			if err != nil {
				lastErr = err
				if apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err) {
					return false, nil
				}
				return false, err
			}
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("platform: applying %s %s/%s: %w (last error: %w)", gvk.Kind, obj.GetNamespace(), obj.GetName(), err, lastErr)
		}
	}
	return nil
}

// WaitForDeployment waits until a Deployment's pods are all updated and
// available.
func (p *Platform) WaitForDeployment(ctx context.Context, namespace, name string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := p.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = deploymentStatus(d)
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("platform: deployment %s/%s not available after %s: %s; pods: %s", namespace, name, timeout, last, p.podSummary(ctx, namespace))
	}
	return nil
}

func deploymentStatus(d *appsv1.Deployment) string {
	return fmt.Sprintf("updated %d, available %d, conditions %v", d.Status.UpdatedReplicas, d.Status.AvailableReplicas, d.Status.Conditions)
}

// podSummary describes a namespace's pods for error messages (phase and
// the waiting reasons of their containers).
func (p *Platform) podSummary(ctx context.Context, namespace string) string {
	pods, err := p.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, pod := range pods.Items {
		fmt.Fprintf(&b, "[%s %s", pod.Name, pod.Status.Phase)
		for _, c := range pod.Status.Conditions {
			if c.Status != "True" && c.Message != "" {
				fmt.Fprintf(&b, " %s: %s", c.Type, c.Message)
			}
		}
		for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " %s waiting %s: %s", cs.Name, w.Reason, w.Message)
			}
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				fmt.Fprintf(&b, " %s exited %d %s: %s", cs.Name, t.ExitCode, t.Reason, t.Message)
			}
		}
		b.WriteString("] ")
	}
	return b.String()
}
