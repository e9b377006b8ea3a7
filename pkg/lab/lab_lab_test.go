//go:build linux && lab

package lab_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// ourNamespaces lists the namespaces this test process created (plt-<pid>-*).
func ourNamespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	prefix := lab.NSPrefix + strconv.Itoa(os.Getpid()) + "-"
	var ours []string
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, prefix) {
			ours = append(ours, name)
		}
	}
	return ours
}

// liveInGroup lists the processes of group pgid that are not zombies. A
// killed orphan stays a zombie until the machine's init reaps it.
func liveInGroup(pgid int) []int {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	var live []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			live = append(live, pid)
		}
	}
	return live
}

// TestCloseAfterFailure builds part of a lab, hits errors midway, and checks
// that Close still removes every namespace, process and file, and that the
// lab refuses work afterwards.
func TestCloseAfterFailure(t *testing.T) {
	labtest.RequireRoot(t)
	before := ourNamespaces(t)
	l, err := lab.New(labtest.Logger(t))
	check(t, err)
	t.Cleanup(func() { l.Close() }) // safety net if the test fails early
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	h1 := newHost(t, l, "h1")
	h2 := newHost(t, l, "h2")
	check(t, l.Veth(h1, "eth0", h2, "eth0"))
	check(t, h1.Addr("eth0", "10.0.1.1/30"))
	sleeper, err := h1.Start(ctx, "sleep", "sleep", "600")
	check(t, err)
	// Ignores SIGTERM and has a child in its process group.
	stubborn, err := h2.Start(ctx, "stubborn", "sh", "-c", "trap '' TERM; sleep 600 & wait")
	check(t, err)
	var phone *lab.Phone
	if _, err := exec.LookPath("baresip"); err == nil {
		phone, err = l.Phone(ctx, h1, lab.PhoneOpts{Addr: "10.0.1.1"})
		check(t, err)
	}

	// Failures midway: each must leave the lab consistent.
	if err := l.Veth(h1, "eth0", h2, "eth1"); err == nil {
		t.Error("Veth with an interface name already in use: nil error")
	}
	if _, err := l.Host("h1"); err == nil {
		t.Error("Host with a duplicate name: nil error")
	}
	if err := h2.Addr("nosuch0", "10.0.9.1/24"); err == nil {
		t.Error("Addr on a missing interface: nil error")
	}
	if err := h1.Sysctl("kernel.hostname", "x"); err == nil {
		t.Error("Sysctl outside net.*: nil error")
	}
	if _, err := l.Phone(ctx, h2, lab.PhoneOpts{Addr: "not-an-ip"}); err == nil {
		t.Error("Phone with a bad address: nil error")
	}
	during := ourNamespaces(t)
	if len(during) != len(before)+2 {
		t.Errorf("namespaces during the test: %q, want 2 more than %q", during, before)
	}
	time.Sleep(100 * time.Millisecond) // let sh start its child
	pids := []int{sleeper.Pid(), stubborn.Pid()}
	if phone != nil {
		pids = append(pids, phone.Proc().Pid())
	}

	start := time.Now()
	if err := l.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	t.Logf("Close took %v (a process ignoring SIGTERM costs the %v grace)", time.Since(start).Round(time.Millisecond), 3*time.Second)
	if err := l.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}

	if after := ourNamespaces(t); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("namespaces after Close: %q, want %q", after, before)
	}
	for _, pid := range pids {
		// Leaders and their groups (the stubborn shell's sleep) are gone.
		if live := liveInGroup(pid); len(live) > 0 {
			t.Errorf("process group %d after Close: live members %v, want none", pid, live)
		}
	}
	if _, err := os.Stat(l.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab directory after Close: %v, want it removed", err)
	}
	if _, err := l.Host("late"); !errors.Is(err, lab.ErrClosed) {
		t.Errorf("Host after Close = %v, want ErrClosed", err)
	}
	if _, err := h1.Run(ctx, "true"); !errors.Is(err, lab.ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if _, err := h1.Start(ctx, "late", "sleep", "1"); !errors.Is(err, lab.ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

// TestNetwork checks bridges, routing through a forwarding host, Sysctl,
// Run, and sockets opened inside namespaces:
//
//	lan (10.0.1.1) --veth-- r1 (10.0.1.2 | 198.51.100.1) --inet bridge-- r2 (198.51.100.2)
func TestNetwork(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	rootForward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	check(t, err)
	inet, err := l.Bridge("inet")
	check(t, err)
	r1 := newHost(t, l, "r1")
	r2 := newHost(t, l, "r2")
	lan := newHost(t, l, "lan")
	_, err = inet.Attach(r1, "wan", "198.51.100.1/24")
	check(t, err)
	_, err = inet.Attach(r2, "wan", "198.51.100.2/24")
	check(t, err)
	check(t, l.Veth(lan, "eth0", r1, "lan"))
	check(t, lan.Addr("eth0", "10.0.1.1/30"))
	check(t, r1.Addr("lan", "10.0.1.2/30"))
	check(t, lan.Route("default", "via", "10.0.1.2"))
	check(t, r2.Route("10.0.1.0/30", "via", "198.51.100.1"))
	check(t, r1.Sysctl("net.ipv4.ip_forward", "1"))

	out, err := r1.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_forward")
	check(t, err)
	if strings.TrimSpace(out) != "1" {
		t.Errorf("ip_forward in r1 = %q, want 1", out)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(now) != string(rootForward) {
		t.Errorf("root ip_forward changed from %q to %q", rootForward, now)
	}
	// nsenter --net keeps the machine's mount namespace: /run/netns is shared.
	out, err = r1.Run(ctx, "ip", "netns", "list")
	check(t, err)
	if !strings.Contains(out, lan.NS()) {
		t.Errorf("ip netns list inside r1 = %q, want it to show %s", out, lan.NS())
	}
	out, err = r2.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "wan")
	check(t, err)
	if !strings.Contains(out, "198.51.100.2/24") {
		t.Errorf("r2 wan addresses = %q", out)
	}

	// Across the bridge, and routed from lan through r1 without NAT.
	udpRoundTrip(t, ctx, r1, r2, "198.51.100.2:9999", "198.51.100.1")
	udpRoundTrip(t, ctx, lan, r2, "198.51.100.2:9998", "10.0.1.1")
}

// udpRoundTrip sends from client to server's addr and back, and checks the
// source address the server saw.
func udpRoundTrip(t *testing.T, ctx context.Context, client, server *lab.Host, addr, wantSrc string) {
	t.Helper()
	pc, err := server.ListenPacket("udp4", addr)
	check(t, err)
	defer pc.Close()
	c, err := client.Dial(ctx, "udp4", addr)
	check(t, err)
	defer c.Close()
	dl, _ := ctx.Deadline()
	pc.SetDeadline(dl)
	c.SetDeadline(dl)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, from, err := pc.ReadFrom(buf)
	check(t, err)
	if got := from.(*net.UDPAddr).IP.String(); string(buf[:n]) != "ping" || got != wantSrc {
		t.Errorf("%s got %q from %s, want ping from %s", server.Name(), buf[:n], got, wantSrc)
	}
	if _, err := pc.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	n, err = c.Read(buf)
	check(t, err)
	if string(buf[:n]) != "pong" {
		t.Errorf("%s got %q, want pong", client.Name(), buf[:n])
	}
}

// TestCloseRacesSetup closes the lab while another goroutine keeps creating
// hosts, as a Ctrl-C during set-up does: nothing may be left behind.
func TestCloseRacesSetup(t *testing.T) {
	labtest.RequireRoot(t)
	before := ourNamespaces(t)
	l, err := lab.New(labtest.Logger(t))
	check(t, err)
	t.Cleanup(func() { l.Close() })
	created := make(chan int)
	go func() {
		n := 0
		for ; ; n++ {
			h, err := l.Host("h" + strconv.Itoa(n))
			if err != nil {
				if !errors.Is(err, lab.ErrClosed) {
					t.Errorf("Host: %v", err)
				}
				break
			}
			if _, err := h.Start(context.Background(), "sleep", "sleep", "600"); err != nil && !errors.Is(err, lab.ErrClosed) {
				t.Errorf("Start: %v", err)
			}
		}
		created <- n
	}()
	time.Sleep(150 * time.Millisecond)
	check(t, l.Close())
	n := <-created
	t.Logf("%d hosts created before Close", n)
	if after := ourNamespaces(t); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("namespaces after Close: %q, want %q", after, before)
	}
	for _, p := range l.Procs() {
		if live := liveInGroup(p.Pid()); len(live) > 0 {
			t.Errorf("%s after Close: live %v", p.Name(), live)
		}
	}
}

// TestHelperCrashingLab is not a test: TestProcessesDieWithLab runs the test
// binary again with it, as a lab process that gets killed without Close.
func TestHelperCrashingLab(t *testing.T) {
	if os.Getenv("PEERLINE_LAB_HELPER") != "1" {
		t.Skip("helper process for TestProcessesDieWithLab")
	}
	l, err := lab.New(nil)
	check(t, err)
	h := newHost(t, l, "doomed")
	p, err := h.Start(context.Background(), "sleep", "sleep", "600")
	check(t, err)
	// Discard a few threads, as Host.Do does, to show that Pdeathsig is
	// tied to the process, not to whichever thread forked.
	for range 5 {
		check(t, h.Do(func() error { return nil }))
	}
	os.Stdout.WriteString("READY " + strconv.Itoa(p.Pid()) + " " + h.NS() + " " + l.Dir() + "\n")
	time.Sleep(time.Minute)
}

// TestProcessesDieWithLab kills a lab process with SIGKILL, so its Close never
// runs: its processes must die with it, and its namespace must be found as
// stale.
func TestProcessesDieWithLab(t *testing.T) {
	labtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperCrashingLab$", "-test.v")
	cmd.Env = append(os.Environ(), "PEERLINE_LAB_HELPER=1")
	out, err := cmd.StdoutPipe()
	check(t, err)
	check(t, cmd.Start())
	var childPid int
	var ns, dir string
	t.Cleanup(func() {
		if ns != "" {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		if strings.HasPrefix(filepath.Base(dir), lab.NSPrefix) {
			os.RemoveAll(dir)
		}
	})
	buf := make([]byte, 0, 4096)
	for !strings.Contains(string(buf), "\n") || !strings.Contains(string(buf), "READY") {
		chunk := make([]byte, 512)
		n, err := out.Read(chunk)
		if err != nil {
			t.Fatalf("helper output %q: %v", buf, err)
		}
		buf = append(buf, chunk[:n]...)
	}
	_, line, _ := strings.Cut(string(buf), "READY ")
	fields := strings.Fields(line)
	if len(fields) < 3 {
		t.Fatalf("helper said %q", buf)
	}
	childPid, _ = strconv.Atoi(fields[0])
	ns, dir = fields[1], fields[2]

	t.Logf("helper lab: sleep pid %d in %s", childPid, ns)
	check(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for len(liveInGroup(childPid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sleep (pid %d) still alive after its lab process was killed", childPid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	list, err := exec.Command("ip", "netns", "list").Output()
	check(t, err)
	lines := strings.Split(string(list), "\n")
	stale := lab.StaleNamespaces(lines, func(pid int) bool { return syscall.Kill(pid, 0) == nil })
	if !slices.Contains(stale, ns) {
		t.Errorf("StaleNamespaces() = %q, want it to include %s", stale, ns)
	}
}
