package main

import (
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/hep"
)

// buildHEP makes the HEP exporter from the hep section; nil when off.
func buildHEP(cfg *config.Config, log *slog.Logger) (*hep.Exporter, error) {
	h := cfg.HEP
	if h.Addr == "" {
		return nil, nil
	}
	var password string
	if h.PasswordFile != "" {
		b, err := os.ReadFile(h.PasswordFile)
		if err != nil {
			return nil, cfg.KeyError("hep.password_file", err)
		}
		password = strings.TrimSpace(string(b))
	}
	e, err := hep.NewExporter(hep.Options{Addr: h.Addr, Transport: h.Transport, AgentID: uint32(h.AgentID), Password: password,
		Log: log.With("component", "hep")})
	if err != nil {
		return nil, cfg.KeyError("hep.addr", err)
	}
	return e, nil
}

// hepCapture is the server's capture hook feeding the exporter.
func hepCapture(e *hep.Exporter) func(src, dst netip.AddrPort, transport string, data []byte) {
	if e == nil {
		return nil
	}
	return func(src, dst netip.AddrPort, transport string, data []byte) {
		e.Send(hep.Message{Time: time.Now(), Src: src, Dst: dst, Transport: transport, Payload: data})
	}
}

// collectHEP reports the HEP exporter's counters.
func (c *appCollector) collectHEP(ch chan<- prometheus.Metric) {
	if c.a.hep == nil {
		return
	}
	hs := c.a.hep.Stats()
	counter(ch, dHEP, float64(hs.Sent), "sent")
	counter(ch, dHEP, float64(hs.Dropped), "dropped")
	counter(ch, dHEP, float64(hs.Errors), "error")
}
