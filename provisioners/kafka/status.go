package kafka

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// Watched lists the dedicated cluster's Kafka resource (when there is one)
// and the instance's KafkaTopics.
func (p *Provisioner) Watched(inst provisioners.Instance) []provisioners.Ref {
	t := p.TargetOf(inst)
	var refs []provisioners.Ref
	if t.Dedicated {
		refs = append(refs, provisioners.Ref{GVK: KafkaGVK, Namespace: t.Namespace, Name: t.Cluster})
	}
	if s, err := Resolve(inst.Plan, inst.Params); err == nil {
		for _, topic := range s.Topics {
			refs = append(refs, provisioners.Ref{GVK: KafkaTopicGVK, Namespace: t.Namespace, Name: TopicName(inst, topic.Name)})
		}
		if s.DisasterRecovery != "" {
			// Ready once both connectors run: a mirror that cannot reach
			// the DR cluster is reported, not left to be found in a
			// disaster.
			refs = append(refs, provisioners.Ref{GVK: KafkaMirrorMaker2GVK, Namespace: t.Namespace, Name: MirrorName(inst)})
		}
	}
	return refs
}

// finalReason says whether a NotReady reason needs a person: Strimzi names
// the reason after the exception (InvalidResourceException,
// InvalidConfigurationException, UnsupportedKafkaVersionException, …) for
// the Kafka resource and after the error class for topics (NotSupported for
// a partition decrease or a replication factor change without Cruise
// Control, ResourceConflict when another KafkaTopic owns the topic,
// InvalidResource). Other reasons (KafkaError, timeouts) are retried by the
// operator and may pass.
func finalReason(reason string) bool {
	for _, s := range []string{"Invalid", "Unsupported", "NotSupported", "ResourceConflict"} {
		if strings.Contains(reason, s) {
			return true
		}
	}
	return false
}

// Status is what a Strimzi resource's status says.
type Status struct {
	// Ready is true when Ready is True for the current generation.
	Ready bool
	// Stale is true when the operator has not seen the current generation.
	Stale bool
	// Reason and Message are the NotReady (or Ready False) condition's.
	Reason, Message string
}

// StatusOf reads a Strimzi resource's conditions. Strimzi sets
// status.observedGeneration on every resource it reconciles; a Ready
// condition from an older generation does not count.
func StatusOf(o *unstructured.Unstructured) Status {
	gen, found, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	if !found || gen < o.GetGeneration() {
		return Status{Stale: true}
	}
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	var st Status
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		switch {
		case m["type"] == "Ready" && m["status"] == "True":
			st.Ready = true
		case m["type"] == "NotReady" && m["status"] == "True", m["type"] == "Ready" && m["status"] == "False":
			st.Reason, _ = m["reason"].(string)
			st.Message, _ = m["message"].(string)
		}
	}
	if st.Ready {
		st.Reason, st.Message = "", ""
	}
	return st
}

// Assess turns Strimzi's conditions into progress: the Kafka resource
// first (dedicated plans), then every topic.
func (p *Provisioner) Assess(inst provisioners.Instance, observed map[provisioners.Ref]*unstructured.Unstructured, now time.Time) provisioners.Progress {
	refs := p.Watched(inst)
	if len(refs) == 0 {
		return provisioners.Progress{State: provisioners.Failed, Description: "the instance's parameters no longer resolve; update them"}
	}
	ready := 0
	topics := 0
	for _, ref := range refs {
		o := observed[ref]
		what := "Kafka cluster " + ref.Name
		switch ref.GVK.Kind {
		case "KafkaTopic":
			topics++
			what = "topic " + ref.Name
		case "KafkaMirrorMaker2":
			what = "disaster-recovery mirror " + ref.Name
		}
		if o == nil {
			return provisioners.Progressing("waiting for " + what + " to be created")
		}
		st := StatusOf(o)
		switch {
		case st.Stale:
			return provisioners.Progressing("waiting for Strimzi to reconcile " + what)
		case st.Ready:
			if ref.GVK.Kind == "KafkaTopic" {
				ready++
			}
			continue
		case finalReason(st.Reason):
			return provisioners.Progress{State: provisioners.Failed, Description: fmt.Sprintf("Strimzi reports %s: %s: %s", what, st.Reason, st.Message)}
		default:
			d := "waiting for " + what
			if st.Reason != "" {
				d += fmt.Sprintf(" (Strimzi: %s: %s)", st.Reason, st.Message)
			}
			return provisioners.Progressing(d)
		}
	}
	d := fmt.Sprintf("Kafka ready: %d of %d topics", ready, topics)
	if t := p.TargetOf(inst); t.Dedicated {
		d = fmt.Sprintf("dedicated Kafka cluster %s ready, %d of %d topics", t.Cluster, ready, topics)
	}
	if s, err := Resolve(inst.Plan, inst.Params); err == nil && s.DisasterRecovery != "" {
		d += ", mirrored to " + s.DisasterRecovery
	}
	return provisioners.Progress{State: provisioners.Succeeded, Description: d}
}
