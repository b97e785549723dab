package main

import "testing"

func TestHeir(t *testing.T) {
	const lost = "10.0.0.9"
	replica := func(name string, offset int64) peer {
		return peer{name: name, ip: "10.0.1." + name[len(name)-1:], role: role{role: "slave", masterHost: lost, offset: offset}}
	}
	for _, c := range []struct {
		name  string
		peers []peer
		want  string
	}{
		{"the largest offset", []peer{replica("rfr-a-0", 100), replica("rfr-a-2", 120)}, "rfr-a-2"},
		{"a tie goes to the smallest ordinal", []peer{replica("rfr-a-2", 120), replica("rfr-a-10", 120), replica("rfr-a-1", 120)}, "rfr-a-1"},
		{"only replicas of the lost master hold its stream", []peer{
			replica("rfr-a-0", 100),
			{name: "rfr-a-1", role: role{role: "slave", masterHost: "127.0.0.1", offset: 500}},
			{name: "rfr-a-2", role: role{role: "slave", masterHost: "10.0.1.0", offset: 400}},
		}, "rfr-a-0"},
		{"a Redis that did not answer is no heir", []peer{{name: "rfr-a-0"}, replica("rfr-a-1", 0)}, "rfr-a-1"},
		{"nobody follows the lost master", []peer{{name: "rfr-a-0", role: role{role: "slave", masterHost: "127.0.0.1"}}}, ""},
	} {
		if got := heir(c.peers, lost); got != c.want {
			t.Errorf("%s: heir %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOrphaned(t *testing.T) {
	const lost = "10.0.0.9"
	replicas := []peer{
		{name: "rfr-a-0", ip: "10.0.1.1", role: role{role: "slave", masterHost: lost}},
		{name: "rfr-a-1", ip: "10.0.1.2", role: role{role: "slave", masterHost: "127.0.0.1"}},
		{name: "rfr-a-2", ip: "", role: role{}},
	}
	if !orphaned(replicas, lost) {
		t.Error("the lost master's pod is gone and nobody is master: orphaned")
	}
	restarted := append([]peer{}, replicas...)
	restarted[2] = peer{name: "rfr-a-2", ip: lost, role: role{role: "slave", masterHost: "127.0.0.1"}}
	if orphaned(restarted, lost) {
		t.Error("the named master's pod is still there (its Redis restarted): the crash path's, not orphaned")
	}
	silent := append([]peer{}, replicas...)
	silent[1] = peer{name: "rfr-a-1", ip: "10.0.1.2"}
	if orphaned(silent, lost) {
		t.Error("a Redis with an address did not answer (it could be a master, or the heir): not orphaned yet")
	}
	promoted := append([]peer{}, replicas...)
	promoted[1] = peer{name: "rfr-a-1", ip: "10.0.1.2", role: role{role: "master"}}
	if orphaned(promoted, lost) {
		t.Error("a Redis is master (the operator or an agent promoted it): not orphaned")
	}
}

func TestOrdinal(t *testing.T) {
	for name, want := range map[string]int{"rfr-rd-1f-0": 0, "rfr-rd-1f-12": 12} {
		if got := ordinal(name); got != want {
			t.Errorf("ordinal(%q) = %d, want %d", name, got, want)
		}
	}
	if ordinal("no-number") < 1000 {
		t.Error("a name without an ordinal sorts last")
	}
}
