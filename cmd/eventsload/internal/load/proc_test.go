package load

import (
	"os/exec"
	"testing"
)

// findProcess picks the oldest of the processes with a name.
func TestFindProcessOldest(t *testing.T) {
	t.Parallel()
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	older := start()
	// A younger one: started in a later clock tick.
	var younger *exec.Cmd
	for range 1000 {
		younger = start()
		if startTime(younger.Process.Pid) > startTime(older.Process.Pid) {
			break
		}
	}
	if startTime(older.Process.Pid) < 0 || startTime(younger.Process.Pid) <= startTime(older.Process.Pid) {
		t.Fatalf("start times %d and %d", startTime(older.Process.Pid), startTime(younger.Process.Pid))
	}
	if got := findProcess("sleep"); startTime(got) > startTime(older.Process.Pid) {
		t.Errorf("findProcess chose %d, started at %d, after %d", got, startTime(got), startTime(older.Process.Pid))
	}
}
