package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"eventsproxy/internal/membroker"
)

// sendDev publishes the message into the running dev at o.devURL, through
// the endpoint that only dev serves.
func (o *publishOptions) sendDev(ctx context.Context) error {
	q := url.Values{"exchange": {o.exchange}, "routingKey": {o.routingKey}}
	if len(o.cc) > 0 {
		q["cc"] = o.cc
	}
	for _, h := range o.headers {
		q.Add("header", h[0]+"="+h[1])
	}
	target := strings.TrimSuffix(o.devURL, "/") + membroker.PublishPath + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(o.body))
	if err != nil {
		return fmt.Errorf("--dev-url %q: %v", o.devURL, err)
	}
	req.Header.Set("Content-Type", o.contentType)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach eventsproxy dev at %s: %v", o.devURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e membroker.PublishError
	_ = json.Unmarshal(body, &e)
	switch {
	case resp.StatusCode == http.StatusNotFound && e.Code != "ExchangeNotFound",
		resp.StatusCode == http.StatusMethodNotAllowed && e.Code == "":
		// `serve`, or something else altogether.
		return fmt.Errorf("%s is not an eventsproxy dev (it answered %s to %s): only dev takes messages over HTTP; publish to RabbitMQ with --amqp-url", o.devURL, resp.Status, membroker.PublishPath)
	case e.Message != "":
		return fmt.Errorf("%s refused the message: %s", o.devURL, e.Message)
	}
	return fmt.Errorf("%s answered %s", o.devURL, resp.Status)
}
