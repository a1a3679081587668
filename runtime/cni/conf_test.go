package cni

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// prevResult is what the bridge plugin hands on for an instance at
// 172.30.0.7 behind bridge nimbus0.
const prevResult = `{
  "cniVersion": "1.0.0",
  "interfaces": [
    {"name": "nimbus0", "mac": "02:00:00:00:00:01"},
    {"name": "veth0a1b2c3d", "mac": "02:00:00:00:00:02"},
    {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/cni-1"}
  ],
  "ips": [{"interface": 2, "address": "172.30.0.7/20", "gateway": "172.30.0.1"}],
  "routes": [{"dst": "0.0.0.0/0", "gw": "172.30.0.1"}]
}`

// shippedConf is the configuration the runtime passes nimbus-cni for
// network n of the shipped conflists (cninet.DefaultClient): the plugin's
// entry with the list's name and version, the port mappings and the
// previous result, as libcni injects them. edit, if set, changes the entry
// first.
func shippedConf(t *testing.T, n cninet.Network, mappings []PortMapping, edit func(map[string]any)) []byte {
	t.Helper()
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(cninet.DefaultClient().Conflists()[n.Name+".conflist"], &list); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list.Plugins, func(p map[string]any) bool { return p["type"] == cninet.PluginType })
	if i < 0 {
		t.Fatalf("the %s conflist has no %s entry", n.Name, cninet.PluginType)
	}
	conf := list.Plugins[i]
	conf["name"], conf["cniVersion"] = list.Name, list.CNIVersion
	conf["runtimeConfig"] = map[string]any{"portMappings": mappings}
	conf["prevResult"] = json.RawMessage(prevResult)
	if edit != nil {
		edit(conf)
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseShipped(t *testing.T, n cninet.Network, mappings []PortMapping, edit func(map[string]any)) *Conf {
	t.Helper()
	conf, err := Parse(shippedConf(t, n, mappings, edit))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return conf
}

// The plugin reads exactly the policy cninet writes into the shipped
// conflists, and the runtime's port mappings and previous result.
func TestParseShippedNetworks(t *testing.T) {
	c := cninet.DefaultClient()
	mappings := []PortMapping{{HostPort: 24000, ContainerPort: 24000, Protocol: "tcp"}, {HostPort: 24000, ContainerPort: 24000, Protocol: "udp"}}
	for _, n := range c.Networks() {
		conf := parseShipped(t, n, mappings, nil)
		got, want := conf.Policy, c.Policy(n)
		if got.Type != want.Type || got.Egress != want.Egress || got.Bridge != want.Bridge || got.Subnet != want.Subnet ||
			!slices.Equal(got.GatewayPorts, want.GatewayPorts) || !slices.Equal(got.Deny, want.Deny) {
			t.Errorf("%s: parsed policy %+v, the conflist says %+v", n.Name, got, want)
		}
		if conf.Name != n.Name || conf.CNIVersion != "1.0.0" || conf.Type != cninet.PluginType {
			t.Errorf("%s: CNI fields name %q, version %q, type %q", n.Name, conf.Name, conf.CNIVersion, conf.Type)
		}
		if !slices.Equal(conf.RuntimeConfig.PortMappings, mappings) {
			t.Errorf("%s: port mappings %v, want %v", n.Name, conf.RuntimeConfig.PortMappings, mappings)
		}
		if conf.PrevResult == nil {
			t.Errorf("%s: the previous result was not parsed", n.Name)
		}
		if err := validate(conf); err != nil {
			t.Errorf("%s: the shipped configuration does not validate: %v", n.Name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	public := cninet.DefaultClient().Public
	for _, tc := range []struct {
		name string
		conf []byte
		want string
	}{
		{"not JSON", []byte(`{"name": "nimbus",`), "nimbus-cni: cannot parse the network configuration: "},
		{"deny is not a list", shippedConf(t, public, nil, func(c map[string]any) { c["deny"] = "10.0.0.0/8" }),
			"nimbus-cni: cannot parse the network configuration: "},
		{"no bridge", shippedConf(t, public, nil, func(c map[string]any) { delete(c, "bridge") }),
			`nimbus-cni: network "nimbus" needs "bridge" and "subnet" (see examples/platform/cni)`},
		{"no subnet", shippedConf(t, public, nil, func(c map[string]any) { c["subnet"] = "" }),
			`nimbus-cni: network "nimbus" needs "bridge" and "subnet" (see examples/platform/cni)`},
		{"no egress", shippedConf(t, public, nil, func(c map[string]any) { delete(c, "egress") }),
			`nimbus-cni: network "nimbus" has egress ""; use "public" or "none"`},
		{"unknown egress", shippedConf(t, public, nil, func(c map[string]any) { c["egress"] = "private" }),
			`nimbus-cni: network "nimbus" has egress "private"; use "public" or "none"`},
		{"previous result unreadable", shippedConf(t, public, nil, func(c map[string]any) { c["prevResult"] = map[string]any{"ips": "172.30.0.7"} }),
			"nimbus-cni: could not parse prevResult: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := Parse(tc.conf)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", conf)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

// What the ruleset renders is checked before nft sees it, on ADD and
// CHECK; DEL never refuses a configuration it could parse.
func TestValidate(t *testing.T) {
	public := cninet.DefaultClient().Public
	set := func(key string, v any) func(map[string]any) { return func(c map[string]any) { c[key] = v } }
	const (
		badSubnet = `nimbus-cni: network "nimbus" has subnet %q; it must be an IPv4 prefix such as 172.30.0.0/20`
		badDeny   = `nimbus-cni: network "nimbus" denies %q; "deny" lists IPv4 prefixes (10.0.0.0/8), addresses or ranges (10.0.0.1-10.0.0.9)`
	)
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string // empty: valid
	}{
		{"prefix too long", set("subnet", "172.30.0.0/33"), fmt.Sprintf(badSubnet, "172.30.0.0/33")},
		{"subnet without length", set("subnet", "172.30.0.0"), fmt.Sprintf(badSubnet, "172.30.0.0")},
		{"IPv6 subnet", set("subnet", "fd00::/64"), fmt.Sprintf(badSubnet, "fd00::/64")},
		{"subnet is a name", set("subnet", "nimbus0"), fmt.Sprintf(badSubnet, "nimbus0")},
		{"malformed denied prefix", set("deny", []string{"169.254.0.0/16", "10.0.0.0/8x"}), fmt.Sprintf(badDeny, "10.0.0.0/8x")},
		{"IPv6 denied prefix", set("deny", []string{"fe80::/10"}), fmt.Sprintf(badDeny, "fe80::/10")},
		{"denied host name", set("deny", []string{"metadata.internal"}), fmt.Sprintf(badDeny, "metadata.internal")},
		{"backwards range", set("deny", []string{"10.0.0.9-10.0.0.1"}), fmt.Sprintf(badDeny, "10.0.0.9-10.0.0.1")},
		{"port out of range", set("gatewayPorts", []int{9650, 70000}), `nimbus-cni: network "nimbus" lists gateway port 70000; a port is at most 65535`},
		{"denied address, prefix and range", set("deny", []string{"10.0.0.5", "192.168.0.0/16", "10.0.1.1-10.0.1.9"}), ""},
		{"no gateway ports", set("gatewayPorts", []int{}), ""},
		{"allowed private address and prefix", set("allow", []string{"10.0.5.10", "192.168.7.0/24"}), ""},
		{"allowed host name", set("allow", []string{"db.internal"}),
			`nimbus-cni: network "nimbus" allows "db.internal"; "allow" lists IPv4 prefixes (10.0.5.0/24) or addresses (10.0.5.10)`},
		{"allowed link-local", set("allow", []string{"169.254.169.254"}),
			`nimbus-cni: network "nimbus" allows 169.254.169.254, which overlaps link-local addresses or the network's own subnet; no instance may reach those`},
		{"allowed own subnet", set("allow", []string{"172.30.0.0/16"}),
			`nimbus-cni: network "nimbus" allows 172.30.0.0/16, which overlaps link-local addresses or the network's own subnet; no instance may reach those`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := parseShipped(t, public, nil, tc.edit)
			err := validate(conf)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid configuration refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("validate: %v\nwant: %s", err, tc.want)
			}
			// ADD and CHECK report it before they touch nf_tables or a
			// link (this test has neither root nor a namespace).
			if _, err := Add(conf); err == nil || err.Error() != tc.want {
				t.Errorf("Add: %v, want the validation error", err)
			}
			if err := Check(conf); err == nil || err.Error() != tc.want {
				t.Errorf("Check: %v, want the validation error", err)
			}
			// DEL still succeeds, so that the bridge plugin's DEL runs
			// after it and releases the address.
			if err := Del(conf); err != nil {
				t.Errorf("Del: %v", err)
			}
		})
	}
}

// ADD needs the bridge plugin's result, and says so before any work.
func TestAddNeedsTheBridgeResult(t *testing.T) {
	conf := parseShipped(t, cninet.DefaultClient().Public, nil, func(c map[string]any) { delete(c, "prevResult") })
	_, err := Add(conf)
	if want := `nimbus-cni: network "nimbus" must list nimbus-cni after the bridge plugin`; err == nil || err.Error() != want {
		t.Errorf("Add: %v, want %s", err, want)
	}
}
