package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/decision"
)

// The web console: server-rendered pages (html/template) under /console/
// on the admin address, a session cookie obtained by logging in with the
// admin token, and plain HTML forms for the few actions. The little
// JavaScript there is only refreshes the page's main part in place and
// asks for confirmation; without it every page and action still works.
//
// Defences: the session cookie is HttpOnly, SameSite=Strict and scoped to
// /console/; every state-changing request must be a POST that passes
// net/http's cross-origin protection (Sec-Fetch-Site / Origin) and carries
// the session's CSRF token; logins are rate limited per source address;
// pages are sent with a strict Content-Security-Policy (no inline script
// or style, nothing from elsewhere) and may not be framed.

//go:embed console
var consoleFiles embed.FS

const (
	sessionCookie = "sipwall_console"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 64
	consolePrefix = "/console/"
	maxCallRows   = 500
)

type session struct {
	csrf    string
	expires time.Time
}

// console serves the web console for an adminServer.
type console struct {
	s     *adminServer
	pages map[string]*template.Template
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]*session

	rate callRate
}

// callRate samples the calls started so the overview can show a rate.
type callRate struct {
	mu      sync.Mutex
	samples []rateSample // oldest first, at most a minute apart end to end
}

type rateSample struct {
	t time.Time
	n int64
}

func (c *callRate) add(t time.Time, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples = append(c.samples, rateSample{t, n})
	for len(c.samples) > 2 && t.Sub(c.samples[1].t) >= time.Minute {
		c.samples = c.samples[1:]
	}
}

// perMinute is the call rate over the samples kept (about the last
// minute), -1 before two samples exist.
func (c *callRate) perMinute() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.samples) < 2 {
		return -1
	}
	a, b := c.samples[0], c.samples[len(c.samples)-1]
	d := b.t.Sub(a.t)
	if d <= 0 {
		return -1
	}
	return float64(b.n-a.n) / d.Minutes()
}

var consolePages = []string{"login", "overview", "calls", "registrations", "bans", "why", "status"}

func newConsole(s *adminServer) (*console, error) {
	c := &console{s: s, now: time.Now, sessions: map[string]*session{},
		pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"ts":      func(t time.Time) string { return stamp(t) },
		"ago":     func(t time.Time) string { return span(c.now().Sub(t)) },
		"left":    func(t time.Time) string { return span(t.Sub(c.now())) },
		"since":   func(a, b time.Time) string { return span(b.Sub(a)) },
		"pretty":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"count":   func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
		"isZero":  func(t time.Time) bool { return t.IsZero() },
		"ipOrNet": ipOrNet,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(consoleFiles, "console/layout.html")
	if err != nil {
		return nil, err
	}
	for _, p := range consolePages {
		t, err := template.Must(base.Clone()).ParseFS(consoleFiles, "console/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console page %s: %w", p, err)
		}
		c.pages[p] = t
	}
	return c, nil
}

// routes adds the console's handlers to mux.
func (c *console) routes(mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFiles, "console/static")
	xo := http.NewCrossOriginProtection()
	post := func(h http.HandlerFunc) http.Handler { return xo.Handler(c.secure(c.authed(c.csrf(h)))) }
	get := func(h http.HandlerFunc) http.Handler { return c.secure(c.authed(h)) }

	mux.Handle("GET /console/static/", c.secure(http.StripPrefix("/console/static/", http.FileServerFS(static))))
	mux.Handle("GET /console/{$}", c.secure(http.RedirectHandler("/console/overview", http.StatusSeeOther)))
	mux.Handle("GET /console/login", c.secure(http.HandlerFunc(c.loginPage)))
	mux.Handle("POST /console/login", xo.Handler(c.secure(http.HandlerFunc(c.login))))
	mux.Handle("POST /console/logout", post(c.logout))
	mux.Handle("GET /console/overview", get(c.overview))
	mux.Handle("GET /console/calls", get(c.callsPage))
	mux.Handle("POST /console/calls/{id}/hangup", post(c.hangup))
	mux.Handle("GET /console/registrations", get(c.registrationsPage))
	mux.Handle("GET /console/bans", get(c.bansPage))
	mux.Handle("POST /console/bans", post(c.addBan))
	mux.Handle("POST /console/bans/unban", post(c.unban))
	mux.Handle("POST /console/blocks/unblock", post(c.unblock))
	mux.Handle("GET /console/why", get(c.why))
	mux.Handle("GET /console/status", get(c.status))
}

// sample records the calls started every few seconds, for the rate.
func (c *console) sample(stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		c.rate.add(c.now(), c.s.a.b2b.Stats().Calls.Load())
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// secure sets the headers every console response carries.
func (c *console) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type sessionKey struct{}

// authed requires a live session: a page request without one is sent to
// the login page, a refresh request (fragment) or a POST gets 401.
func (c *console) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := c.session(r)
		if sess == nil {
			if r.Method == http.MethodGet && !isFragment(r) {
				http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in (or the session ended): log in again", http.StatusUnauthorized)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
		h(w, r)
	}
}

// csrf requires the session's token in the form field "csrf".
func (c *console) csrf(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, _ := r.Context().Value(sessionKey{}).(*session)
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if sess == nil || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (c *console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[ck.Value]
	if !ok {
		return nil
	}
	if !c.now().Before(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	return s
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *console) newSession() (string, *session) {
	id, s := randomToken(), &session{csrf: randomToken(), expires: c.now().Add(sessionTTL)}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for k, v := range c.sessions {
		if !now.Before(v.expires) {
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= maxSessions {
		// The session that ends first goes.
		var oldest string
		for k, v := range c.sessions {
			if oldest == "" || v.expires.Before(c.sessions[oldest].expires) {
				oldest = k
			}
		}
		delete(c.sessions, oldest)
	}
	c.sessions[id] = s
	return id, s
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			a, _ := netip.ParseAddr(h)
			return a.Unmap()
		}
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// pageData is what every page template gets.
type pageData struct {
	Page, Title string
	CSRF        string
	Msg, Err    string
	Refresh     int // seconds between refreshes, 0 for none
	Now         time.Time
	Data        any
}

func isFragment(r *http.Request) bool { return r.URL.Query().Get("fragment") == "1" }

func (c *console) render(w http.ResponseWriter, r *http.Request, page, title string, refresh int, data any) {
	c.page(w, r, http.StatusOK, page, title, refresh, clipText(r.URL.Query().Get("err")), data)
}

// renderStatus renders a page with a status other than 200 and an error.
func (c *console) renderStatus(w http.ResponseWriter, r *http.Request, status int, page, title, errText string, data any) {
	c.page(w, r, status, page, title, 0, errText, data)
}

func (c *console) page(w http.ResponseWriter, r *http.Request, status int, page, title string, refresh int, errText string, data any) {
	d := pageData{Page: page, Title: title, Refresh: refresh, Now: c.now(), Data: data,
		Msg: clipText(r.URL.Query().Get("msg")), Err: errText}
	if s, ok := r.Context().Value(sessionKey{}).(*session); ok {
		d.CSRF = s.csrf
	}
	name := "layout.html"
	if isFragment(r) {
		name = "content"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.pages[page].ExecuteTemplate(w, name, d); err != nil {
		c.s.log.Error("console page failed", "page", page, "error", err)
	}
}

// clipText bounds the messages echoed from the query string.
func clipText(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// back redirects after a POST to the page given in the form's "back"
// field (a console path only), with a message.
func back(w http.ResponseWriter, r *http.Request, fallback, key, msg string) {
	to := fallback
	for _, p := range consolePages[1:] {
		if r.PostFormValue("back") == consolePrefix+p {
			to = consolePrefix + p
		}
	}
	http.Redirect(w, r, to+"?"+key+"="+url.QueryEscape(msg), http.StatusSeeOther)
}

func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, "/console/overview", http.StatusSeeOther)
		return
	}
	c.render(w, r, "login", "Log in", 0, struct{ Next string }{safeNext(r.URL.Query().Get("next"))})
}

func safeNext(next string) string {
	for _, p := range consolePages[1:] {
		if next == consolePrefix+p {
			return next
		}
	}
	return "/console/overview"
}

func (c *console) login(w http.ResponseWriter, r *http.Request) {
	src := remoteAddr(r)
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	next := safeNext(r.PostFormValue("next"))
	ok, limited := c.s.guard.check(src, r.PostFormValue("token"))
	if limited {
		c.s.log.Warn("console login refused: too many wrong tokens", "source", src)
		c.renderStatus(w, r, http.StatusTooManyRequests, "login", "Log in",
			"too many wrong tokens: wait a few minutes", struct{ Next string }{next})
		return
	}
	if !ok {
		c.s.log.Warn("console login failed", "source", src)
		http.Redirect(w, r, "/console/login?err="+url.QueryEscape("wrong token")+"&next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	id, _ := c.newSession()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: consolePrefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(sessionTTL.Seconds())})
	c.s.log.Info("console login", "source", src)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: consolePrefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/console/login?msg="+url.QueryEscape("logged out"), http.StatusSeeOther)
}

// counted is one labelled value of a metric.
type counted struct {
	Label string
	Value float64
}

// gather reads the non-zero values of one metric family from the app's
// Prometheus registry, by the label given (joined with "/" when several),
// largest first.
func (c *console) gather(name string, labels ...string) []counted {
	fams, err := c.s.a.metrics.reg.Gather()
	if err != nil {
		return nil
	}
	var out []counted
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			v := familyValue(f, m)
			if v == 0 {
				continue
			}
			var parts []string
			for _, want := range labels {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == want {
						parts = append(parts, lp.GetValue())
					}
				}
			}
			out = append(out, counted{strings.Join(parts, "/"), v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Value != out[j].Value {
			return out[i].Value > out[j].Value
		}
		return out[i].Label < out[j].Label
	})
	return out
}

func familyValue(f *dto.MetricFamily, m *dto.Metric) float64 {
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return 0
}

type overviewData struct {
	CallsActive                 int
	CallsStarted, CallsAnswered int64
	CallsFailed                 int64
	RatePerMinute               float64
	AORs, Bindings              int
	Registrar                   bool
	Bans, Locks, Blocked        int
	Upstreams                   any
	Drops, AuthFailures         []counted
	Prefilter                   *prefilterView
	CertNotAfter                time.Time
	CertError                   string
	CertDays                    int
	Ready                       bool
	NotReady                    string
	Uptime                      time.Duration
	Version                     string
	Shared                      map[string]any
}

type prefilterView struct {
	Mode, Where string
	Attached    []string
	Dropped     uint64
	Reasons     []counted
}

func (c *console) overview(w http.ResponseWriter, r *http.Request) {
	a := c.s.a
	bs := a.b2b.Stats()
	d := overviewData{
		CallsActive: a.b2b.Active(), CallsStarted: bs.Calls.Load(), CallsAnswered: bs.Answered.Load(),
		CallsFailed: bs.Failed.Load(), RatePerMinute: c.rate.perMinute(),
		Upstreams: a.pool.Status(), Drops: c.gather("sipwall_server_dropped_total", "reason"),
		AuthFailures: c.gather("sipwall_auth_failures_total", "reason"),
		Uptime:       time.Since(a.started).Round(time.Second), Version: version,
	}
	d.Ready, d.NotReady = a.ready()
	bst := a.sec.bans.Stats()
	d.Bans, d.Locks = bst.Active, bst.Locked
	if a.fraud != nil {
		d.Blocked = a.fraud.Stats().BlockedAccounts
	}
	if a.reg != nil {
		d.Registrar = true
		d.AORs, d.Bindings = a.reg.Count()
	}
	if a.pf != nil {
		cn, where := a.pf.counters()
		pv := &prefilterView{Mode: a.pf.conf.Mode, Where: where, Dropped: cn.TotalDropped()}
		for i, v := range cn.Reasons {
			if v > 0 && bpf.Reason(i).Drops() {
				pv.Reasons = append(pv.Reasons, counted{bpf.Reason(i).String(), float64(v)})
			}
		}
		if f := a.pf.xdp.Load(); f != nil {
			for _, at := range f.Attachments() {
				pv.Attached = append(pv.Attached, at.Interface+" ("+at.Mode+")")
			}
		}
		d.Prefilter = pv
	}
	if a.certs != nil {
		ts := a.certs.Stats()
		d.CertNotAfter, d.CertError = ts.NotAfter, ts.LastError
		if !ts.NotAfter.IsZero() {
			d.CertDays = int(ts.NotAfter.Sub(c.now()).Hours() / 24)
		}
	}
	if a.shared != nil {
		d.Shared = sharedStatus(a.shared)
	}
	c.render(w, r, "overview", "Overview", 2, d)
}

func (c *console) callsPage(w http.ResponseWriter, r *http.Request) {
	calls := c.s.a.b2b.Calls()
	// Newest first, and not more than a page can show: under an INVITE
	// flood the table holds thousands.
	slices.SortFunc(calls, func(x, y b2bua.CallInfo) int { return y.Created.Compare(x.Created) })
	total := len(calls)
	if len(calls) > maxCallRows {
		calls = calls[:maxCallRows]
	}
	c.render(w, r, "calls", "Calls", 2, struct {
		Calls []b2bua.CallInfo
		Total int
	}{calls, total})
}

func (c *console) hangup(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "call id is not a number", http.StatusBadRequest)
		return
	}
	if !c.s.a.b2b.HangUp(id, "admin") {
		back(w, r, "/console/calls", "err", fmt.Sprintf("call %d is no longer there", id))
		return
	}
	c.s.log.Info("call hung up from the console", "call", id)
	c.s.a.decisions.Add(decision.Entry{Layer: "admin", Verdict: "hung up", Why: "from the console", Detail: "call " + strconv.FormatUint(id, 10)})
	back(w, r, "/console/calls", "msg", fmt.Sprintf("call %d hung up", id))
}

type regRow struct {
	AOR string
	// By is who authenticated the binding's last REGISTER.
	By      string
	Binding any
	Contact string
	Peer    string
	Tr      string
	Expires time.Time
	Node    string
}

func (c *console) registrationsPage(w http.ResponseWriter, r *http.Request) {
	var rows []regRow
	total := 0
	if c.s.a.reg != nil {
		all := c.s.a.reg.All(1000)
		aors := make([]string, 0, len(all))
		for k := range all {
			aors = append(aors, k)
		}
		sort.Strings(aors)
		for _, aor := range aors {
			for _, b := range all[aor] {
				rows = append(rows, regRow{AOR: aor, By: b.RegisteredBy, Contact: b.Contact, Peer: b.Peer, Tr: b.Transport, Expires: b.Expires, Node: b.Node})
			}
		}
		total, _ = c.s.a.reg.Count()
	}
	c.render(w, r, "registrations", "Registrations", 5, struct {
		Rows    []regRow
		On      bool
		AORs    int
		Limited bool
	}{rows, c.s.a.reg != nil, total, total > 1000})
}

type bansData struct {
	Bans   []ban.Entry
	Locks  []ban.UserLock
	Blocks any
	Fraud  bool
}

func (c *console) bansPage(w http.ResponseWriter, r *http.Request) {
	d := bansData{Bans: c.s.a.sec.bans.Bans(), Locks: c.s.a.sec.bans.LockedUsers(), Fraud: c.s.a.fraud != nil}
	if c.s.a.fraud != nil {
		d.Blocks = c.s.a.fraud.Blocked()
	}
	c.render(w, r, "bans", "Bans and blocks", 5, d)
}

func (c *console) addBan(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(strings.TrimSpace(r.PostFormValue("prefix")))
	if err != nil {
		back(w, r, "/console/bans", "err", "not an address or network: "+r.PostFormValue("prefix"))
		return
	}
	var d time.Duration
	if v := strings.TrimSpace(r.PostFormValue("duration")); v != "" {
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			back(w, r, "/console/bans", "err", "duration: want a positive Go duration such as 1h or 30m")
			return
		}
	}
	evidence := strings.TrimSpace(r.PostFormValue("evidence"))
	if evidence == "" {
		evidence = "web console"
	}
	e, err := c.s.a.sec.bans.Ban(p, d, ban.ReasonManual, evidence)
	if err != nil {
		back(w, r, "/console/bans", "err", err.Error())
		return
	}
	c.s.log.Info("ban added from the console", "prefix", e.Prefix, "until", e.Until)
	back(w, r, "/console/bans", "msg", "banned "+e.Prefix.String()+" until "+stamp(e.Until))
}

func (c *console) unban(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(strings.TrimSpace(r.PostFormValue("prefix")))
	if err != nil {
		back(w, r, "/console/bans", "err", "not an address or network: "+r.PostFormValue("prefix"))
		return
	}
	found, err := c.s.a.sec.bans.Unban(p)
	switch {
	case err != nil:
		back(w, r, "/console/bans", "err", err.Error())
	case !found:
		back(w, r, "/console/bans", "err", p.String()+" was not banned")
	default:
		c.s.log.Info("ban lifted from the console", "prefix", p)
		back(w, r, "/console/bans", "msg", "unbanned "+p.String())
	}
}

func (c *console) unblock(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	if c.s.a.fraud == nil || !c.s.a.fraud.Unblock(user) {
		back(w, r, "/console/bans", "err", "no block for that account")
		return
	}
	c.s.log.Info("account unblocked from the console", "user", strconv.Quote(user))
	c.s.a.decisions.Add(decision.Entry{Layer: "admin", Verdict: "unblocked", User: user, Why: "from the console"})
	back(w, r, "/console/bans", "msg", "unblocked "+user)
}

// whyData is the "why" page: the decisions found and what is in force
// now about what was searched.
type whyData struct {
	Q         string
	Searched  bool
	Entries   []decision.Entry
	Limit     int
	BannedNow *ban.Entry
	LockedNow *ban.UserLock
	Blocked   any
	Size      int
}

func (c *console) why(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 100 {
		q = q[:100]
	}
	d := whyData{Q: q, Searched: q != "", Limit: 200, Size: c.s.a.decisions.Size()}
	if q != "" {
		d.Entries = c.s.a.why(q, d.Limit)
		if a, err := netip.ParseAddr(q); err == nil {
			if e, ok := c.s.a.sec.bans.Banned(a.Unmap()); ok {
				d.BannedNow = &e
			}
		} else {
			for _, l := range c.s.a.sec.bans.LockedUsers() {
				if strings.EqualFold(l.User, q) {
					d.LockedNow = &l
				}
			}
			if c.s.a.fraud != nil {
				for _, b := range c.s.a.fraud.Blocked() {
					if strings.EqualFold(b.User, q) {
						d.Blocked = b
					}
				}
			}
		}
	}
	refresh := 0
	if q != "" {
		refresh = 5
	}
	c.render(w, r, "why", "Why", refresh, d)
}

type statusData struct {
	PolicyMode   string
	Policy       any
	PolicyError  string
	RulesFile    string
	RulesBuiltin bool
	Rules        any
	RulesReload  *rulesRecord
	LastReload   *reloadRecord
	ConfigFile   string
	DecisionSize int
	Decisions    uint64
}

func (c *console) status(w http.ResponseWriter, r *http.Request) {
	a := c.s.a
	d := statusData{PolicyMode: a.policyMode, RulesFile: a.rulesFile, RulesBuiltin: a.fraud != nil && a.fraud.Builtin(), RulesReload: a.lastRules.Load(),
		LastReload: a.lastReload.Load(), ConfigFile: a.cfgPath, DecisionSize: a.decisions.Size(), Decisions: a.decisions.Total()}
	if a.pol != nil {
		ps := a.pol.Status()
		d.Policy = ps
		if ps.LastError != nil {
			d.PolicyError = ps.LastError.Error()
		}
	}
	if a.fraud != nil {
		d.Rules = a.fraud.Stats()
	}
	c.render(w, r, "status", "Policy and rules", 5, d)
}

// stamp formats a time for the console: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// span formats a duration for people: 3d 4h, 2h 5m, 4m 10s, 12s.
func span(d time.Duration) string {
	if d < 0 {
		return "0s"
	}
	d = d.Round(time.Second)
	days, h, m, s := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60, int(d/time.Second)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// ipOrNet shows a ban's prefix as an address when it is one.
func ipOrNet(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
