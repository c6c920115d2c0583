package load

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Management reads counts from RabbitMQ's management API.
type Management struct {
	// URL is the API's base URL with credentials, such as
	// http://guest:guest@127.0.0.1:15672; "" disables every count.
	URL string
}

// mgmtClient keeps no idle connections: its calls are few, and nothing of
// the tool's should outlive a scenario.
var mgmtClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func (m Management) get(path string, v any) error {
	u, err := url.Parse(strings.TrimSuffix(m.URL, "/") + path)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
	}
	resp, err := mgmtClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management API %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Queues returns how many queues of the default vhost have names starting
// with prefix, or -1 when the API is disabled or fails.
func (m Management) Queues(prefix string) int {
	if m.URL == "" || prefix == "" {
		return -1
	}
	var qs []struct {
		Name string `json:"name"`
	}
	if err := m.get("/api/queues/%2F?columns=name", &qs); err != nil {
		return -1
	}
	n := 0
	for _, q := range qs {
		if strings.HasPrefix(q.Name, prefix) {
			n++
		}
	}
	return n
}

// Bindings returns how many bindings the exchange has in the default
// vhost, or -1 when the API is disabled or fails.
func (m Management) Bindings(exchange string) int {
	if m.URL == "" {
		return -1
	}
	var bs []json.RawMessage
	if err := m.get("/api/exchanges/%2F/"+url.PathEscape(exchange)+"/bindings/source", &bs); err != nil {
		return -1
	}
	return len(bs)
}
