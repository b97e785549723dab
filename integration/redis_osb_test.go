//go:build linux

package integration_test

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
)

var redisFailoverGVR = schema.GroupVersionResource{Group: "databases.spotahome.com", Version: "v1", Resource: "redisfailovers"}

// redisOperatorRuns does what the redis-operator and cert-manager would do
// for a RedisFailover (neither can run here: no kubelet): the Redis
// StatefulSet rfr-<name> running the RedisFailover's command and
// resources, the Sentinel Deployment rfs-<name>, their rolled-out status,
// and the issued certificate with its Secret.
func (w *world) redisOperatorRuns(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	rf := w.get(g, redisFailoverGVR, ns, name)
	cmd, _, _ := unstructured.NestedStringSlice(rf.Object, "spec", "redis", "command")
	redisReplicas, _, _ := unstructured.NestedInt64(rf.Object, "spec", "redis", "replicas")
	sentinels, _, _ := unstructured.NestedInt64(rf.Object, "spec", "sentinel", "replicas")
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, k := range []string{"requests", "limits"} {
		m, _, _ := unstructured.NestedStringMap(rf.Object, "spec", "redis", "resources", k)
		for r, q := range m {
			if k == "requests" {
				res.Requests[corev1.ResourceName(r)] = resource.MustParse(q)
			} else {
				res.Limits[corev1.ResourceName(r)] = resource.MustParse(q)
			}
		}
	}
	labels := map[string]string{"app.kubernetes.io/name": name}
	pod := func(c corev1.Container) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
	}
	sts, err := w.core.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rfr-" + name},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr(int32(redisReplicas)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: pod(corev1.Container{Name: "redis", Image: "redis", Command: cmd, Resources: res})},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: int32(redisReplicas),
		ReadyReplicas: int32(redisReplicas), UpdatedReplicas: int32(redisReplicas)}
	_, err = w.core.AppsV1().StatefulSets(ns).UpdateStatus(ctx, sts, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	dep, err := w.core.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "rfs-" + name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(sentinels)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: pod(corev1.Container{Name: "sentinel", Image: "redis"})},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: int32(sentinels),
		ReadyReplicas: int32(sentinels), UpdatedReplicas: int32(sentinels)}
	_, err = w.core.AppsV1().Deployments(ns).UpdateStatus(ctx, dep, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	cert := w.get(g, certificateGVR, ns, name+"-tls")
	_ = unstructured.SetNestedField(cert.Object, map[string]any{"conditions": []any{
		map[string]any{"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "2026-11-25T12:00:00Z"}}}, "status")
	_, err = w.dyn.Resource(certificateGVR).Namespace(ns).UpdateStatus(ctx, cert, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = w.core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-tls"},
		Data:       map[string][]byte{"ca.crt": testCAPEM(t)},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
}

// TestRedisLifecycle drives a Redis instance through its OSB life over
// HTTP: every object (RedisFailover with the spotahome CRD, Certificate,
// Service, NetworkPolicies, PodMonitor) is accepted by the real API server
// under the chart's RBAC.
func TestRedisLifecycle(t *testing.T) {
	w := sharedWorld(t)
	osb := w.startBrokerWith(t, func(o *broker.Options) {
		o.Postgres.ServerCertificates.IssuerName = platformIssuer
	})
	ctx := context.Background()
	const id = "4ed15000-0000-4000-8000-000000000001"
	const name = "rd-" + id
	path := "/v2/service_instances/" + id
	body := provisionBody(catalog.RedisStandardID, "team-a", nil)
	body["service_id"] = catalog.RedisServiceID

	t.Run("provision", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", body)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		rf := w.get(g, redisFailoverGVR, "team-a", name)
		g.Expect(rf.GetLabels()).To(HaveKeyWithValue("strata.dev/tenant", "team-a"))
		secretPath, _, _ := unstructured.NestedString(rf.Object, "spec", "auth", "secretPath")
		auth, err := w.core.CoreV1().Secrets("team-a").Get(ctx, secretPath, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "the password Secret is made before the RedisFailover")
		g.Expect(auth.Data["password"]).NotTo(BeEmpty())
		w.get(g, certificateGVR, "team-a", name+"-tls")
		_, err = w.core.CoreV1().Services("team-a").Get(ctx, name+"-tls", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(osb.do(http.MethodGet, path+"/last_operation", nil).Body["state"]).To(Equal("in progress"))

		// A provision cut short before its password Secret was written
		// (here: the Secret is gone, and the request's claim on the
		// operation ran out, as when its replica dies) heals on the next
		// poll.
		g.Expect(w.core.CoreV1().Secrets("team-a").Delete(ctx, secretPath, metav1.DeleteOptions{})).To(Succeed())
		w.now.Advance(claimExpiry)
		osb.do(http.MethodGet, path+"/last_operation", nil)
		w.now.Advance(-claimExpiry)
		healed, err := w.core.CoreV1().Secrets("team-a").Get(ctx, secretPath, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "the poll made the password Secret again")
		g.Expect(healed.Data["password"]).NotTo(BeEmpty())

		w.redisOperatorRuns(t, "team-a", name)
		r = osb.do(http.MethodGet, path+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
	})

	const bid = "4ed15000-0000-4000-8000-0000000000b1"
	bpath := path + "/service_bindings/" + bid
	t.Run("bind returns the TLS endpoint and password; unbind", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", map[string]any{"service_id": catalog.RedisServiceID, "plan_id": catalog.RedisStandardID})
		g.Expect(r.Code).To(Or(Equal(http.StatusCreated), Equal(http.StatusAccepted)), r.Raw)
		if r.Code == http.StatusAccepted {
			g.Expect(osb.do(http.MethodGet, bpath+"/last_operation", nil).Body["state"]).To(Equal("succeeded"))
		}
		r = osb.do(http.MethodGet, bpath, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		g.Expect(creds["spring.data.redis.host"]).To(Equal(name + "-tls.team-a.svc"))
		g.Expect(creds["spring.data.redis.ssl.enabled"]).To(Equal("true"))
		auth, _ := w.core.CoreV1().Secrets("team-a").Get(ctx, name+"-auth", metav1.GetOptions{})
		g.Expect(creds["spring.data.redis.password"]).To(Equal(string(auth.Data["password"])))
		secret, err := w.core.CoreV1().Secrets("team-a").Get(ctx, "binding-"+bid, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(secret.Type)).To(Equal("servicebinding.io/redis"))

		r = osb.do(http.MethodDelete, bpath+"?service_id="+catalog.RedisServiceID+"&plan_id="+catalog.RedisStandardID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	})

	t.Run("deprovision", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.RedisServiceID+"&plan_id="+catalog.RedisStandardID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		// The role agent's ServiceAccount, Role and RoleBinding and the
		// preStop ConfigMap too: created under the chart's RBAC at
		// provision (the API server's escalation check passed).
		w.collectGarbage(t, "team-a", redisFailoverGVR, certificateGVR, netpolGVR, podMonitorGVR, secretGVR,
			schema.GroupVersionResource{Version: "v1", Resource: "services"},
			schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"},
			schema.GroupVersionResource{Version: "v1", Resource: "configmaps"},
			schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
			schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"})
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+r.Body["operation"].(string), nil)
		expectGone(g, r)
		g.Expect(live(w.list(redisFailoverGVR, "team-a", "strata.dev/instance-id="+id))).To(BeEmpty())
	})
}
