package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/config"
)

// adminServer is the admin HTTP API: health and readiness (no token, they
// tell nothing), Prometheus metrics and the /api/ endpoints (bearer token
// when one is configured). Mutations are POST or DELETE with the token in a
// header, never a cookie, so a browser cannot be made to send them.
type adminServer struct {
	a     *app
	token string
	// guard checks the token and limits wrong guesses (API and console).
	guard *tokenGuard
	log   *slog.Logger
	srv   *http.Server
	ln    net.Listener
	// console is the web console (admin.console), nil when off; stop ends
	// its sampler.
	console *console
	stop    chan struct{}
}

// readToken reads a token file: one line, at least 16 characters.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 || strings.ContainsAny(t, " \t\r\n") {
		return "", errors.New("the token must be one word of at least 16 characters")
	}
	return t, nil
}

// startAdmin binds the admin API; nil when admin.addr is empty.
func startAdmin(cfg *config.Config, a *app, log *slog.Logger) (*adminServer, error) {
	if cfg.Admin.Addr == "" {
		return nil, nil
	}
	s := &adminServer{a: a, log: log.With("component", "admin")}
	if cfg.Admin.TokenFile != "" {
		t, err := readToken(cfg.Admin.TokenFile)
		if err != nil {
			return nil, cfg.KeyError("admin.token_file", err)
		}
		s.token = t
	}
	s.guard = newTokenGuard(s.token)
	ln, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		return nil, cfg.KeyError("admin.addr", err)
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.auth(promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /api/status", s.auth(http.HandlerFunc(s.status)))
	mux.Handle("GET /api/calls", s.auth(http.HandlerFunc(s.calls)))
	mux.Handle("DELETE /api/calls/{id}", s.auth(http.HandlerFunc(s.hangup)))
	mux.Handle("GET /api/registrations", s.auth(http.HandlerFunc(s.registrations)))
	mux.Handle("GET /api/bans", s.auth(http.HandlerFunc(s.bans)))
	mux.Handle("POST /api/bans", s.auth(http.HandlerFunc(s.addBan)))
	mux.Handle("DELETE /api/bans", s.auth(http.HandlerFunc(s.unban)))
	mux.Handle("GET /api/locks", s.auth(http.HandlerFunc(s.locks)))
	mux.Handle("GET /api/fraud/blocks", s.auth(http.HandlerFunc(s.fraudBlocks)))
	mux.Handle("DELETE /api/fraud/blocks/{user}", s.auth(http.HandlerFunc(s.fraudUnblock)))
	mux.Handle("POST /api/reload", s.auth(http.HandlerFunc(s.reload)))
	mux.Handle("GET /api/why", s.auth(http.HandlerFunc(s.why)))
	s.stop = make(chan struct{})
	if cfg.Admin.Console {
		c, err := newConsole(s)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("web console: %w", err)
		}
		s.console = c
		c.routes(mux)
		go c.sample(s.stop)
		if ap, err := netip.ParseAddrPort(cfg.Admin.Addr); err == nil && !ap.Addr().IsLoopback() {
			s.log.Warn("the web console is served over plain HTTP on a non-loopback address: keep it on a management network or behind a TLS proxy", "addr", cfg.Admin.Addr)
		}
	}
	if cfg.Admin.Pprof {
		mux.Handle("GET /debug/pprof/", s.auth(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", s.auth(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", s.auth(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", s.auth(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", s.auth(http.HandlerFunc(pprof.Trace)))
	}
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "error", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "token", s.token != "", "console", s.console != nil)
	return s, nil
}

// Addr is where the API listens.
func (s *adminServer) Addr() string { return s.ln.Addr().String() }

func (s *adminServer) close() {
	if s == nil {
		return
	}
	close(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// auth requires the bearer token when one is configured.
func (s *adminServer) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !bearer {
				got = "" // no bearer token: refused, not counted as a guess
			}
			ok, limited := s.guard.check(remoteAddr(r), got)
			if limited {
				writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many wrong tokens from this address: wait a few minutes"})
				return
			}
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sipwall"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// readyz: ready while not draining and with at least one upstream up (or
// none configured).
func (s *adminServer) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := s.a.ready()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ok, "reason": why})
}

func (s *adminServer) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.a.status())
}

// calls lists the calls in progress: user is who authenticated the
// caller, claimed the caller's From (see b2bua.CallInfo); [] when none.
func (s *adminServer) calls(w http.ResponseWriter, _ *http.Request) {
	calls := s.a.b2b.Calls()
	if calls == nil {
		calls = []b2bua.CallInfo{}
	}
	writeJSON(w, http.StatusOK, calls)
}

func (s *adminServer) hangup(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		badRequest(w, "call id %q is not a number", r.PathValue("id"))
		return
	}
	if !s.a.b2b.HangUp(id, "admin") {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such call"})
		return
	}
	s.log.Info("call hung up by the admin API", "call", id)
	writeJSON(w, http.StatusOK, map[string]any{"hung_up": id})
}

// registrations lists the live bindings by AOR; each binding's
// registered_by is who authenticated its last REGISTER.
func (s *adminServer) registrations(w http.ResponseWriter, r *http.Request) {
	if s.a.reg == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			badRequest(w, "limit must be 1 to 100000")
			return
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, s.a.reg.All(limit))
}

func (s *adminServer) bans(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.a.sec.bans.Bans())
}

func (s *adminServer) locks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.a.sec.bans.LockedUsers())
}

// banRequest is the body of POST /api/bans.
type banRequest struct {
	Prefix   string `json:"prefix"`   // address or network
	Duration string `json:"duration"` // Go duration; empty: the ban store's escalation
	Evidence string `json:"evidence"`
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

func (s *adminServer) addBan(w http.ResponseWriter, r *http.Request) {
	var req banRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, "body: %v", err)
		return
	}
	p, err := parsePrefix(req.Prefix)
	if err != nil {
		badRequest(w, "prefix %q: %v", req.Prefix, err)
		return
	}
	var d time.Duration
	if req.Duration != "" {
		if d, err = time.ParseDuration(req.Duration); err != nil || d <= 0 {
			badRequest(w, "duration %q: want a positive Go duration such as 1h", req.Duration)
			return
		}
	}
	evidence := req.Evidence
	if evidence == "" {
		evidence = "admin API"
	}
	e, err := s.a.sec.bans.Ban(p, d, ban.ReasonManual, evidence)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	s.log.Info("ban added by the admin API", "prefix", e.Prefix, "until", e.Until)
	writeJSON(w, http.StatusOK, e)
}

func (s *adminServer) unban(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("prefix")
	p, err := parsePrefix(q)
	if err != nil {
		badRequest(w, "prefix %q: %v", q, err)
		return
	}
	found, err := s.a.sec.bans.Unban(p)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such ban"})
		return
	}
	s.log.Info("ban lifted by the admin API", "prefix", p)
	writeJSON(w, http.StatusOK, map[string]string{"unbanned": p.String()})
}

func (s *adminServer) fraudBlocks(w http.ResponseWriter, _ *http.Request) {
	if s.a.fraud == nil {
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	writeJSON(w, http.StatusOK, s.a.fraud.Blocked())
}

func (s *adminServer) fraudUnblock(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if s.a.fraud == nil || !s.a.fraud.Unblock(user) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such block"})
		return
	}
	s.log.Info("account unblocked by the admin API", "user", user)
	writeJSON(w, http.StatusOK, map[string]string{"unblocked": user})
}

func (s *adminServer) reload(w http.ResponseWriter, _ *http.Request) {
	res := s.a.reload(s.log)
	code := http.StatusOK
	if res.Error != "" {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, res)
}

// why searches the decision log: ?q= an address, a network, a user or a
// number (empty: the newest decisions), &limit= 1 to 1000 (default 200).
func (s *adminServer) why(w http.ResponseWriter, r *http.Request) {
	limit := 200
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			badRequest(w, "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	q := r.URL.Query().Get("q")
	if len(q) > 100 {
		badRequest(w, "q is longer than 100 characters")
		return
	}
	writeJSON(w, http.StatusOK, s.a.why(q, limit))
}
