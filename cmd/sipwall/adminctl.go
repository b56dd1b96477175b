package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/registrar"
)

// adminCommands are the sub-commands that talk to a running sipwall's
// admin API.
var adminCommands = map[string]string{
	"status":        "print the running sipwall's status",
	"calls":         "list calls in progress",
	"hangup":        "hangup ID: end a call in progress",
	"registrations": "list registered phones",
	"bans":          "list bans in force",
	"ban":           "ban PREFIX [-for 1h]: ban an address or network",
	"unban":         "unban PREFIX: lift a ban",
	"locks":         "list locked user names",
	"blocks":        "list accounts blocked by the anti-fraud rules",
	"unblock":       "unblock USER: lift an anti-fraud account block",
	"reload":        "re-read the configuration, rule file, policy and users file",
	"why":           "why ADDRESS|USER|NUMBER: the recent decisions about it",
}

// adminClient calls the admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// cmdAdmin runs one admin sub-command.
func cmdAdmin(name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file to take admin.addr and admin.token_file from")
	addr := fs.String("admin", "", "admin API address (default: the configuration's admin.addr, else 127.0.0.1:9090)")
	tokenFile := fs.String("token-file", "", "file holding the API token (default: the configuration's admin.token_file)")
	banFor := fs.Duration("for", 0, "ban: length of the ban (default: the ban store's escalation)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sipwall %s [-config FILE | -admin ADDR -token-file F] ...\n  %s\n", name, adminCommands[name])
		fs.PrintDefaults()
	}
	// Flags may come before or after the argument (ban 192.0.2.7 -for 1h).
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	c, err := newAdminClient(*cfgPath, *addr, *tokenFile)
	if err != nil {
		return err
	}
	arg := func() (string, error) {
		if len(positional) != 1 {
			fs.Usage()
			return "", fmt.Errorf("%s needs one argument", name)
		}
		return positional[0], nil
	}
	switch name {
	case "status":
		return c.print(stdout, http.MethodGet, "/api/status", nil)
	case "registrations":
		return c.registrations(stdout)
	case "locks":
		return c.locks(stdout)
	case "blocks":
		return c.blocks(stdout)
	case "calls":
		var calls []b2bua.CallInfo
		if err := c.do(http.MethodGet, "/api/calls", nil, &calls); err != nil {
			return err
		}
		if len(calls) == 0 {
			_, err := fmt.Fprintln(stdout, "no calls in progress")
			return err
		}
		// USER is who authenticated; CLAIMED is the caller's From,
		// which it writes as it likes.
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tUSER\tCLAIMED\tTO\tSINCE\tA-LEG CALL-ID")
		for _, ci := range calls {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ci.ID, ci.State, cell(ci.User), cell(ci.Claimed), cell(ci.To),
				time.Since(ci.Created).Round(time.Second), ci.ACallID)
		}
		return tw.Flush()
	case "bans":
		var bans []ban.Entry
		if err := c.do(http.MethodGet, "/api/bans", nil, &bans); err != nil {
			return err
		}
		if len(bans) == 0 {
			_, err := fmt.Fprintln(stdout, "no bans in force")
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tREASON\tUNTIL\tEVIDENCE")
		for _, e := range bans {
			until := "never"
			if !e.Until.IsZero() {
				until = e.Until.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Prefix, e.Reason, until, e.Evidence)
		}
		return tw.Flush()
	case "hangup":
		id, err := arg()
		if err != nil {
			return err
		}
		return c.print(stdout, http.MethodDelete, "/api/calls/"+url.PathEscape(id), nil)
	case "ban":
		p, err := arg()
		if err != nil {
			return err
		}
		req := banRequest{Prefix: p, Evidence: "sipwall ban"}
		if *banFor > 0 {
			req.Duration = banFor.String()
		}
		return c.print(stdout, http.MethodPost, "/api/bans", req)
	case "unban":
		p, err := arg()
		if err != nil {
			return err
		}
		return c.print(stdout, http.MethodDelete, "/api/bans?prefix="+url.QueryEscape(p), nil)
	case "unblock":
		u, err := arg()
		if err != nil {
			return err
		}
		return c.print(stdout, http.MethodDelete, "/api/fraud/blocks/"+url.PathEscape(u), nil)
	case "reload":
		return c.print(stdout, http.MethodPost, "/api/reload", nil)
	case "why":
		q, err := arg()
		if err != nil {
			return err
		}
		var entries []decision.Entry
		if err := c.do(http.MethodGet, "/api/why?q="+url.QueryEscape(q), nil, &entries); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WHEN	COUNT	LAYER	DECISION	WHY	REQUEST	SOURCE	USER	TO	DETAIL")
		for _, e := range entries {
			src := ""
			if e.Prefix.IsValid() {
				src = e.Prefix.String()
			} else if e.Source.IsValid() {
				src = e.Source.String()
			}
			verdict := e.Verdict
			if e.Status != 0 {
				verdict += fmt.Sprintf(" %d", e.Status)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Count, e.Layer, verdict,
				e.Why, e.Method, src, e.User, e.To, e.Detail)
		}
		if len(entries) == 0 {
			fmt.Fprintf(tw, "no decision about %q in the log\n", q)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown admin command %q", name)
}

// cell is a table cell: "-" for nothing (so columns stay columns), and
// text from the wire (users, numbers) quoted when it holds spaces or
// control characters and cut to 64 bytes.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == utf8.RuneError || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// registrations prints the bindings, one line each, AORs in order.
func (c *adminClient) registrations(w io.Writer) error {
	var all map[string][]registrar.Binding
	if err := c.do(http.MethodGet, "/api/registrations", nil, &all); err != nil {
		return err
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(w, "no registrations")
		return err
	}
	aors := slices.Sorted(maps.Keys(all))
	// REGISTERED BY is who authenticated the REGISTER ("-": sipwall did
	// not; the PBX may have).
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AOR\tREGISTERED BY\tCONTACT\tPEER\tTRANSPORT\tEXPIRES IN")
	for _, aor := range aors {
		for _, b := range all[aor] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cell(aor), cell(b.RegisteredBy), cell(b.Contact), b.Peer, b.Transport,
				time.Until(b.Expires).Round(time.Second))
		}
	}
	return tw.Flush()
}

// locks prints the user names locked after failed logins.
func (c *adminClient) locks(w io.Writer) error {
	var locks []ban.UserLock
	if err := c.do(http.MethodGet, "/api/locks", nil, &locks); err != nil {
		return err
	}
	if len(locks) == 0 {
		_, err := fmt.Fprintln(w, "no user locks")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSINCE\tUNTIL\tEVIDENCE")
	for _, l := range locks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(l.User), l.Since.Format(time.RFC3339), l.Until.Format(time.RFC3339), l.Evidence)
	}
	return tw.Flush()
}

// blocks prints the accounts the anti-fraud rules blocked.
func (c *adminClient) blocks(w io.Writer) error {
	var blocks []rules.Block
	if err := c.do(http.MethodGet, "/api/fraud/blocks", nil, &blocks); err != nil {
		return err
	}
	if len(blocks) == 0 {
		_, err := fmt.Fprintln(w, "no blocked accounts")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tRULE\tSINCE\tUNTIL\tREASON")
	for _, b := range blocks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(b.User), b.Rule, b.Since.Format(time.RFC3339), b.Until.Format(time.RFC3339), b.Reason)
	}
	return tw.Flush()
}

func newAdminClient(cfgPath, addr, tokenFile string) (*adminClient, error) {
	if cfgPath != "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			addr = cfg.Admin.Addr
		}
		if tokenFile == "" {
			tokenFile = cfg.Admin.TokenFile
		}
	}
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	c := &adminClient{base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}
	if tokenFile != "" {
		t, err := readToken(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file %s: %w", tokenFile, err)
		}
		c.token = t
	}
	return c, nil
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *adminClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w (is sipwall running, with admin.addr %s?)", err, strings.TrimPrefix(c.base, "http://"))
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s: %s", res.Status, e.Error)
		}
		return fmt.Errorf("admin API: %s", res.Status)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// print sends a request and prints the JSON answer.
func (c *adminClient) print(w io.Writer, method, path string, body any) error {
	var raw json.RawMessage
	if err := c.do(method, path, body, &raw); err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("admin API: empty answer")
	}
	_, err := w.Write(raw)
	return err
}
