package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Provider is an Internet telephony provider for trunk tests: Kamailio as
// registrar and proxy (digest on REGISTER and INVITE, no database, domain
// provider.test) with rtpengine as its media relay, as providers run
// them. Start it with StartProvider.
type Provider struct {
	// Addr is the provider's address in its host; Kamailio listens on
	// UDP 5060 there.
	Addr string
	// Accounts are the users and their passwords.
	Accounts map[string]string
	// Dir holds the config and control socket.
	Dir  string
	host *Host
}

// ProviderDomain is the provider's SIP domain and digest realm.
const ProviderDomain = "provider.test"

// rtpengineNG is rtpengine's control socket, inside the provider's host.
const rtpengineNG = "127.0.0.1:2223"

func (p *Provider) ctl() string { return filepath.Join(p.Dir, "ctl") }

func (p *Provider) passwordRoute() string {
	var b strings.Builder
	for _, u := range slices.Sorted(maps.Keys(p.Accounts)) {
		fmt.Fprintf(&b, "\tif ($au == %q) {\n\t\t$var(pw) = %q;\n\t}\n", u, p.Accounts[u])
	}
	return b.String()
}

func kamailioConfig(p Provider) string {
	return `#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
listen=udp:` + p.Addr + `:5060
auto_aliases=no
alias="provider.test"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "rtpengine.so"
loadmodule "ctl.so"

modparam("ctl", "binrpc", "unix:` + p.ctl() + `")
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("rtpengine", "rtpengine_sock", "udp:` + rtpengineNG + `")

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			if (is_method("BYE")) {
				rtpengine_manage();
			}
			# A re-INVITE or UPDATE (hold, resume) keeps its media
			# on rtpengine, as the first offer did.
			if (is_method("INVITE|UPDATE") && has_body("application/sdp")) {
				rtpengine_manage("replace-origin replace-session-connection");
				t_on_reply("MEDIA");
			}
			t_relay();
			exit;
		}
		if (is_method("ACK")) {
			if (t_check_trans()) {
				t_relay();
			}
			exit;
		}
		sl_send_reply("404", "Not Here");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			rtpengine_manage();
			t_relay();
		}
		exit;
	}
	route(PASSWORD);
	if (is_method("REGISTER")) {
		pv_www_authenticate("provider.test", "$var(pw)", "0");
		$var(rc) = $rc;
		if ($var(rc) == -2 || $var(rc) == -3) {
			xlog("L_INFO", "wrong password for $au from $si\n");
			sl_send_reply("403", "Forbidden");
			exit;
		}
		if ($var(rc) < 0) {
			www_challenge("provider.test", "0");
			exit;
		}
		consume_credentials();
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if (is_method("INVITE")) {
		pv_proxy_authenticate("provider.test", "$var(pw)", "0");
		$var(rc) = $rc;
		if ($var(rc) == -2 || $var(rc) == -3) {
			sl_send_reply("403", "Forbidden");
			exit;
		}
		if ($var(rc) < 0) {
			proxy_challenge("provider.test", "0");
			exit;
		}
		consume_credentials();
		record_route();
		if (!lookup("location")) {
			sl_send_reply("404", "Not Found");
			exit;
		}
		rtpengine_manage("replace-origin replace-session-connection");
		t_on_reply("MEDIA");
		t_relay();
		exit;
	}
	sl_send_reply("405", "Method Not Allowed");
}

route[PASSWORD] {
	$var(pw) = "";
` + p.passwordRoute() + `}

onreply_route[MEDIA] {
	if (has_body("application/sdp")) {
		rtpengine_manage("replace-origin replace-session-connection");
	}
}
`
}

// StartProvider starts rtpengine and Kamailio in h, serving p (p.Dir is
// made under l's directory if empty). Both stop with the lab.
func StartProvider(ctx context.Context, l *Lab, h *Host, p *Provider) error {
	if p.Dir == "" {
		p.Dir = filepath.Join(l.Dir(), "kamailio-"+h.Name())
	}
	p.host = h
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(p.Dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(kamailioConfig(*p)), 0o644); err != nil {
		return err
	}
	if _, err := h.Start(context.WithoutCancel(ctx), "rtpengine", "rtpengine", "--foreground", "--log-stderr",
		"--table=-1", "--interface="+p.Addr, "--listen-ng="+rtpengineNG,
		"--port-min=30000", "--port-max=30999", "--endpoint-learning=immediate",
		"--pidfile="+filepath.Join(p.Dir, "rtpengine.pid")); err != nil {
		return err
	}
	if out, err := h.Run(ctx, "kamailio", "-c", "-f", cfgPath); err != nil {
		return fmt.Errorf("kamailio rejects its config: %w\n%s", err, out)
	}
	_, err := h.Start(context.WithoutCancel(ctx), "kamailio", "kamailio", "-DD", "-E", "-f", cfgPath,
		"-Y", p.Dir, "-m", "32", "-M", "4")
	return err
}

// WaitBinding waits until Kamailio has a registration for user.
func (p *Provider) WaitBinding(ctx context.Context, user string) error {
	if p.host == nil {
		return errors.New("lab: provider not started")
	}
	for {
		out, err := p.host.Run(ctx, "kamcmd", "-s", "unix:"+p.ctl(), "ul.lookup", "location", user)
		if err == nil && strings.Contains(out, "Contact") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never registered at Kamailio: %v %s", user, err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
