// Drives the fault proxy with the stock Go client (github.com/Shopify/toxiproxy/v2/client),
// unchanged, through every call it makes and its error paths.
// Usage: go run . API_URL ECHO_PORT. Exits non-zero on the first failed check.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func wantAPIError(err error, status int, message string, what string) {
	var apiErr *toxiproxy.ApiError
	if !errors.As(err, &apiErr) {
		fail("%s: expected an ApiError, got %v", what, err)
	}
	if apiErr.Status != status || apiErr.Message != message {
		fail("%s: got %d %q, want %d %q", what, apiErr.Status, apiErr.Message, status, message)
	}
}

func roundtrip(listen string) (time.Duration, error) {
	started := time.Now()
	conn, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return 0, err
	}
	buf := make([]byte, 4)
	got := 0
	for got < 4 {
		n, err := conn.Read(buf[got:])
		if err != nil {
			return 0, err
		}
		got += n
	}
	if string(buf) != "ping" {
		return 0, fmt.Errorf("echo returned %q", buf)
	}
	return time.Since(started), nil
}

func main() {
	api, echo := os.Args[1], "127.0.0.1:"+os.Args[2]
	client := toxiproxy.NewClient(api)

	version, err := client.Version()
	check(err, "version")
	if !strings.Contains(string(version), "2.12.0") {
		fail("version: %s", version)
	}

	proxy, err := client.CreateProxy("go_a", "localhost:0", echo)
	check(err, "create")
	if !strings.HasPrefix(proxy.Listen, "127.0.0.1:") || !proxy.Enabled {
		fail("create: %+v", proxy)
	}
	if _, err := roundtrip(proxy.Listen); err != nil {
		fail("traffic: %v", err)
	}
	_, err = client.CreateProxy("go_a", "localhost:0", echo)
	wantAPIError(err, 409, "proxy already exists", "duplicate proxy")

	proxies, err := client.Proxies()
	check(err, "proxies")
	if proxies["go_a"] == nil || proxies["go_a"].Upstream != echo {
		fail("proxies: %+v", proxies)
	}
	got, err := client.Proxy("go_a")
	check(err, "get")
	if got.Listen != proxy.Listen {
		fail("get: %+v", got)
	}
	_, err = client.Proxy("missing")
	wantAPIError(err, 404, "proxy not found", "missing proxy")

	toxic, err := proxy.AddToxic("lat", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 100})
	check(err, "add toxic")
	if toxic.Name != "lat" || toxic.Attributes["latency"] != float64(100) {
		fail("add toxic: %+v", toxic)
	}
	took, err := roundtrip(proxy.Listen)
	check(err, "traffic with latency")
	if took < 100*time.Millisecond {
		fail("latency toxic: round trip took %v", took)
	}
	_, err = proxy.AddToxic("lat", "latency", "downstream", 1, nil)
	wantAPIError(err, 409, "toxic already exists", "duplicate toxic")
	_, err = proxy.AddToxic("", "latency", "sideways", 1, nil)
	wantAPIError(err, 400, "stream was invalid, can be either upstream or downstream", "bad stream")
	_, err = proxy.AddToxic("", "bogus", "", 1, nil)
	wantAPIError(err, 400, "invalid toxic type", "bad type")

	updated, err := proxy.UpdateToxic("lat", 0.5, toxiproxy.Attributes{"jitter": 10})
	check(err, "update toxic")
	if updated.Toxicity != 0.5 || updated.Attributes["latency"] != float64(100) ||
		updated.Attributes["jitter"] != float64(10) {
		fail("update toxic: %+v", updated)
	}
	toxics, err := proxy.Toxics()
	check(err, "toxics")
	if len(toxics) != 1 || toxics[0].Name != "lat" {
		fail("toxics: %+v", toxics)
	}
	added, err := client.AddToxic(&toxiproxy.ToxicOptions{
		ProxyName: "go_a", ToxicName: "up", ToxicType: "bandwidth", Stream: "upstream",
		Toxicity: 1, Attributes: toxiproxy.Attributes{"rate": 1000},
	})
	check(err, "client add toxic")
	if added.Stream != "upstream" {
		fail("client add toxic: %+v", added)
	}
	_, err = client.UpdateToxic(&toxiproxy.ToxicOptions{
		ProxyName: "go_a", ToxicName: "up", Toxicity: 1, Attributes: toxiproxy.Attributes{"rate": 2000},
	})
	check(err, "client update toxic")
	check(client.RemoveToxic(&toxiproxy.ToxicOptions{ProxyName: "go_a", ToxicName: "up"}), "client remove toxic")

	check(proxy.Disable(), "disable")
	if _, err := roundtrip(proxy.Listen); err == nil {
		fail("disabled proxy still accepts connections")
	}
	check(proxy.Enable(), "enable")
	if _, err := roundtrip(proxy.Listen); err != nil {
		fail("re-enabled proxy: %v", err)
	}

	check(proxy.RemoveToxic("lat"), "remove toxic")
	wantAPIError(proxy.RemoveToxic("lat"), 404, "toxic not found", "remove missing toxic")

	// Toxiproxy keeps an upstream it cannot resolve; it dials only when a client connects.
	proxy.Upstream = "somehost:12345"
	check(proxy.Save(), "save with a new upstream")
	again, err := client.Proxy("go_a")
	check(err, "get after save")
	if again.Upstream != "somehost:12345" {
		fail("save: %+v", again)
	}

	populated, err := client.Populate([]toxiproxy.Proxy{
		{Name: "go_b", Listen: "localhost:0", Upstream: echo, Enabled: true},
		{Name: "go_c", Listen: "localhost:0", Upstream: echo, Enabled: true},
	})
	check(err, "populate")
	if len(populated) != 2 {
		fail("populate: %+v", populated)
	}
	_, err = populated[0].AddToxic("", "timeout", "downstream", 1, toxiproxy.Attributes{"timeout": 0})
	check(err, "timeout toxic")
	// Proxies that Populate returns are not marked as created: Save would POST /proxies
	// again (409 on Toxiproxy as here), so fetch it first.
	goC, err := client.Proxy("go_c")
	check(err, "get populated")
	check(goC.Disable(), "disable before reset")
	check(client.ResetState(), "reset")
	after, err := client.Proxies()
	check(err, "proxies after reset")
	for name, p := range after {
		toxics, err := p.Toxics()
		check(err, "toxics after reset")
		if !p.Enabled || len(toxics) != 0 {
			fail("reset left %s: enabled=%v toxics=%d", name, p.Enabled, len(toxics))
		}
	}
	for _, name := range []string{"go_a", "go_b", "go_c"} {
		check(after[name].Delete(), "delete "+name)
	}
	wantAPIError(after["go_a"].Delete(), 404, "proxy not found", "delete twice")
	fmt.Println("all checks passed")
}
