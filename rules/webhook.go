package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// webhookRetries is how many times a failed POST is tried again.
const webhookRetries = 3

// alert hands an alert to OnAlert and queues it for the webhook; a full
// queue drops it and counts the drop.
func (e *Engine) alert(a Alert) {
	// One Info line per rule and level a minute; the rest at Debug, so a
	// flood of calls cannot flood the log.
	e.mu.Lock()
	lk := a.Rule + "|" + a.Level
	info := a.Time.Sub(e.logged[lk]) >= time.Minute || a.Time.Before(e.logged[lk])
	if info {
		e.logged[lk] = a.Time
	}
	e.mu.Unlock()
	if info {
		e.log.Info("fraud alert", "rule", a.Rule, "level", a.Level, "measure", a.Measure,
			"key", quote(a.Key), "value", a.Value, "limit", a.Limit, "action", a.Action, "shadow", a.Shadow)
	} else {
		e.log.Debug("fraud alert", "rule", a.Rule, "level", a.Level, "measure", a.Measure,
			"key", quote(a.Key), "value", a.Value, "limit", a.Limit)
	}
	if e.opt.OnAlert != nil {
		e.opt.OnAlert(a)
	}
	if e.opt.Webhook == "" {
		return
	}
	select {
	case e.queue <- a:
	default:
		e.mu.Lock()
		e.stats.WebhookDropped++
		e.mu.Unlock()
	}
}

func (e *Engine) sender(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-e.queue:
			err := e.deliver(ctx, a)
			e.mu.Lock()
			if err != nil {
				e.stats.WebhookFailed++
			} else {
				e.stats.WebhookSent++
			}
			e.mu.Unlock()
			if err != nil {
				e.log.Warn("webhook failed", "rule", a.Rule, "err", err)
			}
		}
	}
}

// deliver POSTs one alert, retrying with doubling backoff.
func (e *Engine) deliver(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	wait := e.backoff
	for attempt := 0; ; attempt++ {
		err = e.post(ctx, body)
		if err == nil || attempt == webhookRetries {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
}

func (e *Engine) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.opt.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.opt.Webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: status %d", resp.StatusCode)
	}
	return nil
}
