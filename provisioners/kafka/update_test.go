package kafka

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestCheckUpdate(t *testing.T) {
	p := &Provisioner{Config: baseConfig()}
	topic := func(name string, partitions int) map[string]any {
		return map[string]any{"name": name, "partitions": float64(partitions)}
	}
	tests := []struct {
		name     string
		plan     string
		old, new map[string]any
		wantErr  string
		toPlan   string
	}{
		{"add topic", "standard", map[string]any{"topics": []any{topic("a", 3)}}, map[string]any{"topics": []any{topic("a", 3), topic("b", 1)}}, "", ""},
		{"grow partitions", "standard", map[string]any{"topics": []any{topic("a", 3)}}, map[string]any{"topics": []any{topic("a", 6)}}, "", ""},
		{"shrink partitions", "standard", map[string]any{"topics": []any{topic("a", 6)}}, map[string]any{"topics": []any{topic("a", 3)}}, "parameters.topics[name=a].partitions", ""},
		{"remove topic", "standard", map[string]any{"topics": []any{topic("a", 3), topic("b", 3)}}, map[string]any{"topics": []any{topic("a", 3)}}, "parameters.allow_topic_deletion", ""},
		{"rename topic", "standard", map[string]any{"topics": []any{topic("a", 3)}}, map[string]any{"topics": []any{topic("a2", 3)}}, "cannot be renamed", ""},
		{"remove topic allowed", "standard", map[string]any{"topics": []any{topic("a", 3), topic("b", 3)}}, map[string]any{"allow_topic_deletion": true, "topics": []any{topic("a", 3)}}, "", ""},
		{"default topic kept", "dev-lite", nil, map[string]any{"topics": []any{map[string]any{"name": "events"}, topic("x", 1)}}, "", ""},
		{"default topic dropped", "dev-lite", nil, map[string]any{"topics": []any{topic("x", 1)}}, `topic "events"`, ""},
		{"grow storage", "ha", map[string]any{"storage_gb": float64(100)}, map[string]any{"storage_gb": float64(200)}, "", ""},
		{"shrink storage", "ha", map[string]any{"storage_gb": float64(200)}, map[string]any{"storage_gb": float64(100)}, "parameters.storage_gb", ""},
		{"RF change", "dev-lite", nil, nil, "replication factor", "standard"},
		{"to dedicated", "standard", nil, nil, "another Kafka cluster", "ha"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			old := testInstance(t, tc.plan, tc.old)
			to := tc.plan
			if tc.toPlan != "" {
				to = tc.toPlan
			}
			upd := testInstance(t, to, tc.new)
			err := p.CheckUpdate(old, upd)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
		})
	}
}
