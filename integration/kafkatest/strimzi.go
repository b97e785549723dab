//go:build linux

package kafkatest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// ACLBinding is one Kafka ACL binding (one operation on one resource
// pattern for one principal and host).
type ACLBinding struct {
	Principal    string
	Host         string
	ResourceType kmsg.ACLResourceType
	ResourceName string
	Pattern      kmsg.ACLResourcePatternType
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

var (
	aclResourceTypes = map[string]kmsg.ACLResourceType{
		"topic":           kmsg.ACLResourceTypeTopic,
		"group":           kmsg.ACLResourceTypeGroup,
		"cluster":         kmsg.ACLResourceTypeCluster,
		"transactionalId": kmsg.ACLResourceTypeTransactionalId,
	}
	aclPatterns = map[string]kmsg.ACLResourcePatternType{
		"literal": kmsg.ACLResourcePatternTypeLiteral,
		"prefix":  kmsg.ACLResourcePatternTypePrefixed,
	}
	aclOperations = map[string]kmsg.ACLOperation{
		"Read": kmsg.ACLOperationRead, "Write": kmsg.ACLOperationWrite, "Create": kmsg.ACLOperationCreate,
		"Delete": kmsg.ACLOperationDelete, "Alter": kmsg.ACLOperationAlter, "Describe": kmsg.ACLOperationDescribe,
		"ClusterAction": kmsg.ACLOperationClusterAction, "AlterConfigs": kmsg.ACLOperationAlterConfigs,
		"DescribeConfigs": kmsg.ACLOperationDescribeConfigs, "IdempotentWrite": kmsg.ACLOperationIdempotentWrite,
		"All": kmsg.ACLOperationAll,
	}
	aclPermissions = map[string]kmsg.ACLPermissionType{
		"allow": kmsg.ACLPermissionTypeAllow,
		"deny":  kmsg.ACLPermissionTypeDeny,
	}
)

// TranslateACLs turns a KafkaUser's spec.authorization.acls into the Kafka
// ACL bindings Strimzi's User Operator creates for it: principal
// User:<KafkaUser name>, one binding per operation, type allow and host *
// unless the rule says otherwise, pattern literal unless it says prefix;
// the cluster resource is named kafka-cluster.
func TranslateACLs(user *unstructured.Unstructured) ([]ACLBinding, error) {
	typ, _, _ := unstructured.NestedString(user.Object, "spec", "authorization", "type")
	if typ != "simple" {
		return nil, fmt.Errorf("KafkaUser %s: authorization type %q, want simple", user.GetName(), typ)
	}
	rules, _, err := unstructured.NestedSlice(user.Object, "spec", "authorization", "acls")
	if err != nil {
		return nil, err
	}
	var out []ACLBinding
	for i, r := range rules {
		rule, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("acls[%d] is not an object", i)
		}
		res, _ := rule["resource"].(map[string]any)
		rt, ok := aclResourceTypes[str(res["type"], "")]
		if !ok {
			return nil, fmt.Errorf("acls[%d].resource.type %q is not a Strimzi ACL resource type", i, res["type"])
		}
		name := str(res["name"], "")
		pattern, ok := aclPatterns[str(res["patternType"], "literal")]
		if !ok {
			return nil, fmt.Errorf("acls[%d].resource.patternType %q is not literal or prefix", i, res["patternType"])
		}
		if rt == kmsg.ACLResourceTypeCluster {
			name, pattern = "kafka-cluster", kmsg.ACLResourcePatternTypeLiteral
		} else if name == "" {
			return nil, fmt.Errorf("acls[%d].resource.name is empty", i)
		}
		perm, ok := aclPermissions[str(rule["type"], "allow")]
		if !ok {
			return nil, fmt.Errorf("acls[%d].type %q is not allow or deny", i, rule["type"])
		}
		ops, _ := rule["operations"].([]any)
		if len(ops) == 0 {
			return nil, fmt.Errorf("acls[%d].operations is empty", i)
		}
		for _, o := range ops {
			op, ok := aclOperations[str(o, "")]
			if !ok {
				return nil, fmt.Errorf("acls[%d].operations: %q is not a Kafka ACL operation", i, o)
			}
			out = append(out, ACLBinding{
				Principal: "User:" + user.GetName(), Host: str(rule["host"], "*"),
				ResourceType: rt, ResourceName: name, Pattern: pattern, Operation: op, Permission: perm,
			})
		}
	}
	return out, nil
}

// TranslateQuotas turns spec.quotas into Kafka client quota keys of the
// user entity.
func TranslateQuotas(user *unstructured.Unstructured) []kadm.AlterClientQuotaOp {
	q, _, _ := unstructured.NestedMap(user.Object, "spec", "quotas")
	keys := []struct{ field, key string }{
		{"producerByteRate", "producer_byte_rate"},
		{"consumerByteRate", "consumer_byte_rate"},
		{"requestPercentage", "request_percentage"},
		{"controllerMutationRate", "controller_mutation_rate"},
	}
	var ops []kadm.AlterClientQuotaOp
	for _, k := range keys {
		switch v := q[k.field].(type) {
		case int64:
			ops = append(ops, kadm.AlterClientQuotaOp{Key: k.key, Value: float64(v)})
		case float64:
			ops = append(ops, kadm.AlterClientQuotaOp{Key: k.key, Value: v})
		case int:
			ops = append(ops, kadm.AlterClientQuotaOp{Key: k.key, Value: float64(v)})
		}
	}
	return ops
}

func str(v any, def string) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return def
}

// ApplyUser does what the User Operator does for a SCRAM KafkaUser: the
// SCRAM-SHA-512 credential (4096 iterations), the ACLs and the quotas.
func ApplyUser(ctx context.Context, adm *kadm.Client, user *unstructured.Unstructured, password string) error {
	auth, _, _ := unstructured.NestedString(user.Object, "spec", "authentication", "type")
	if auth != "scram-sha-512" {
		return fmt.Errorf("KafkaUser %s: authentication %q, want scram-sha-512", user.GetName(), auth)
	}
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user.GetName(), Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password,
	}})
	if err != nil {
		return err
	}
	if err := res.Error(); err != nil {
		return err
	}
	bindings, err := TranslateACLs(user)
	if err != nil {
		return err
	}
	for _, a := range bindings {
		b := kadm.NewACLs()
		if a.Permission == kmsg.ACLPermissionTypeDeny {
			b.Deny(a.Principal).DenyHosts(a.Host)
		} else {
			b.Allow(a.Principal).AllowHosts(a.Host)
		}
		switch a.ResourceType {
		case kmsg.ACLResourceTypeTopic:
			b.Topics(a.ResourceName)
		case kmsg.ACLResourceTypeGroup:
			b.Groups(a.ResourceName)
		case kmsg.ACLResourceTypeTransactionalId:
			b.TransactionalIDs(a.ResourceName)
		case kmsg.ACLResourceTypeCluster:
			b.Clusters()
		}
		b.ResourcePatternType(a.Pattern).Operations(a.Operation)
		results, err := adm.CreateACLs(ctx, b)
		if err != nil {
			return err
		}
		for _, r := range results {
			if r.Err != nil {
				return fmt.Errorf("ACL %+v: %w (%s)", a, r.Err, r.ErrMessage)
			}
		}
	}
	if ops := TranslateQuotas(user); len(ops) > 0 {
		name := user.GetName()
		altered, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
			Entity: kadm.ClientQuotaEntity{{Type: "user", Name: &name}}, Ops: ops,
		}})
		if err != nil {
			return err
		}
		for _, a := range altered {
			if a.Err != nil {
				return fmt.Errorf("quotas of %s: %w (%s)", name, a.Err, a.ErrMessage)
			}
		}
	}
	return nil
}

// CreateTopic does what the Topic Operator does for a new KafkaTopic.
func CreateTopic(ctx context.Context, adm *kadm.Client, topic *unstructured.Unstructured) error {
	name, _, _ := unstructured.NestedString(topic.Object, "spec", "topicName")
	if name == "" {
		name = topic.GetName()
	}
	partitions, _, _ := unstructured.NestedInt64(topic.Object, "spec", "partitions")
	replicas, _, _ := unstructured.NestedInt64(topic.Object, "spec", "replicas")
	cfg, _, _ := unstructured.NestedStringMap(topic.Object, "spec", "config")
	configs := map[string]*string{}
	for k, v := range cfg {
		configs[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, int32(partitions), int16(replicas), configs, name)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return fmt.Errorf("topic %s: %w (%s)", name, resp.Err, resp.ErrMessage)
	}
	return nil
}

// Kube is an in-memory API server for the binder (Secrets' stringData is
// stored as base64 data, as the real one does), and the place where the
// emulated Strimzi operators find KafkaTopics and KafkaUsers.
type Kube struct {
	mu   sync.Mutex
	objs map[provisioners.Ref]*unstructured.Unstructured
}

// NewKube returns an empty Kube.
func NewKube() *Kube { return &Kube{objs: map[provisioners.Ref]*unstructured.Unstructured{}} }

func (k *Kube) store(o *unstructured.Unstructured) {
	c := o.DeepCopy()
	if sd, ok := c.Object["stringData"].(map[string]any); ok {
		data := map[string]any{}
		for key, v := range sd {
			data[key] = base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(v)))
		}
		c.Object["data"] = data
		delete(c.Object, "stringData")
	}
	if old := k.objs[provisioners.RefOf(c)]; old != nil {
		if st, ok := old.Object["status"]; ok {
			c.Object["status"] = st
		}
		c.SetGeneration(old.GetGeneration() + 1)
	} else {
		c.SetGeneration(1)
	}
	k.objs[provisioners.RefOf(c)] = c
}

func (k *Kube) Apply(_ context.Context, objs []*unstructured.Unstructured) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range objs {
		k.store(o)
	}
	return nil
}

func (k *Kube) Create(_ context.Context, o *unstructured.Unstructured) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.objs[provisioners.RefOf(o)] != nil {
		return false, nil
	}
	k.store(o)
	return true, nil
}

func (k *Kube) Get(_ context.Context, ref provisioners.Ref) (*unstructured.Unstructured, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if o := k.objs[ref]; o != nil {
		return o.DeepCopy(), nil
	}
	return nil, nil
}

func (k *Kube) Update(_ context.Context, o *unstructured.Unstructured) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.store(o)
	return nil
}

func (k *Kube) Delete(_ context.Context, ref provisioners.Ref) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.objs, ref)
	return nil
}

// Secret stores a Secret with the given string data.
func (k *Kube) Secret(namespace, name string, data map[string]string) {
	sd := map[string]any{}
	for key, v := range data {
		sd[key] = v
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"stringData": sd,
	}})
}

// SecretData decodes a stored Secret.
func (k *Kube) SecretData(namespace, name string) map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	o := k.objs[provisioners.Ref{GVK: secretGVKRef, Namespace: namespace, Name: name}]
	if o == nil {
		return nil
	}
	data, _, _ := unstructured.NestedStringMap(o.Object, "data")
	out := map[string]string{}
	for key, enc := range data {
		v, _ := base64.StdEncoding.DecodeString(enc)
		out[key] = string(v)
	}
	return out
}

// ByKind returns the stored objects of a kind.
func (k *Kube) ByKind(kind string) []*unstructured.Unstructured {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*unstructured.Unstructured
	for _, o := range k.objs {
		if o.GetKind() == kind {
			out = append(out, o.DeepCopy())
		}
	}
	return out
}

// MarkReady sets Ready for the object's current generation, as Strimzi
// does once it has reconciled it.
func (k *Kube) MarkReady(ref provisioners.Ref) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	o := k.objs[ref]
	if o == nil {
		return errors.New("no object " + ref.Name)
	}
	o.Object["status"] = map[string]any{"observedGeneration": o.GetGeneration(), "conditions": []any{
		map[string]any{"type": "Ready", "status": "True"},
	}}
	return nil
}

var secretGVKRef = provisioners.Ref{}.GVK

func init() { secretGVKRef.Version, secretGVKRef.Kind = "v1", "Secret" }

// ReconcileUsers plays the User Operator for every KafkaUser in the Kube:
// reads the password from the Secret the KafkaUser names, applies the user
// to Kafka, writes the user Secret (password, sasl.jaas.config) and marks
// the KafkaUser Ready.
func ReconcileUsers(ctx context.Context, k *Kube, adm *kadm.Client) error {
	for _, u := range k.ByKind("KafkaUser") {
		secret, _, _ := unstructured.NestedString(u.Object, "spec", "authentication", "password", "valueFrom", "secretKeyRef", "name")
		key, _, _ := unstructured.NestedString(u.Object, "spec", "authentication", "password", "valueFrom", "secretKeyRef", "key")
		pw := k.SecretData(u.GetNamespace(), secret)[key]
		if pw == "" {
			return fmt.Errorf("KafkaUser %s: no password in Secret %s key %s", u.GetName(), secret, key)
		}
		if err := ApplyUser(ctx, adm, u, pw); err != nil {
			return err
		}
		k.Secret(u.GetNamespace(), u.GetName(), map[string]string{
			"password": pw,
			"sasl.jaas.config": fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`,
				u.GetName(), pw),
		})
		if err := k.MarkReady(provisioners.RefOf(u)); err != nil {
			return err
		}
	}
	return nil
}

// BrokerConfig is a Kafka resource's spec.kafka.config as broker
// properties (key=value), as the Cluster Operator writes them into each
// broker's configuration.
func BrokerConfig(k *unstructured.Unstructured) ([]string, error) {
	if k.GetKind() != "Kafka" {
		return nil, fmt.Errorf("%s %s is not a Kafka", k.GetKind(), k.GetName())
	}
	cfg, _, err := unstructured.NestedMap(k.Object, "spec", "kafka", "config")
	if err != nil {
		return nil, err
	}
	var out []string
	for key, v := range cfg {
		out = append(out, fmt.Sprintf("%s=%v", key, v))
	}
	return out, nil
}
