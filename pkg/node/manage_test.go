package node

import (
	"testing"

	"github.com/peerline/peerline/pkg/control"
)

func TestJoinSteps(t *testing.T) {
	p := &control.JoinProgress{}
	for i, n := range stageNames {
		st := control.StepPending
		if i == 0 {
			st = control.StepActive
		}
		p.Steps = append(p.Steps, control.JoinStep{Name: n, State: st})
	}
	states := func() (s []string) {
		for _, st := range p.Steps {
			s = append(s, st.State)
		}
		return s
	}
	reach(p, stageServer, "not needed")
	if got := states(); got[0] != "done" || got[1] != "done" || got[2] != "active" || got[3] != "pending" {
		t.Errorf("after the server stage: %v", got)
	}
	if p.Steps[1].Detail != "not needed" {
		t.Errorf("detail lost: %+v", p.Steps[1])
	}
	fail(p, "did not answer")
	if got := states(); got[2] != "failed" || got[3] != "pending" || !p.Done || p.Error == "" {
		t.Errorf("after failing: %v done=%v err=%q", got, p.Done, p.Error)
	}
}
