package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestProblems has at least one failing case for every key. Each input
// holds exactly one mistake, and the test checks that exactly one problem
// comes back, on the right line, under the right key path.
func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		key  string // "" for problems with the document or top-level keys
		msg  string // substring of the message
	}{
		// The document and the top level.
		{"unknown top key suggests", "log: {}\nupstream: []\n", 2, "", `unknown key "upstream" (did you mean "upstreams"?)`},
		{"unknown top key lists keys", "foo: 1\n", 1, "", `unknown key "foo" (valid keys: listen, upstreams, health, outbound, limits, calls, registrar, auth, bans, topology, media, dialplan, policy, rules, tls, prefilter, store, log, admin, hep)`},
		{"tls listener without certificate", "listen:\n  - {transport: tls, addr: \"0.0.0.0:5061\"}\n", 2, "listen[0].transport", "a tls listener needs a certificate"},
		{"tls acme and files", "tls:\n  acme: {names: [sip.example.com]}\n  cert_file: a.pem\n  key_file: a.key\n", 3, "tls.cert_file", "not both"},
		{"tls key without cert", "tls:\n  key_file: a.key\n", 2, "tls.key_file", "go together"},
		{"tls acme bad name", "tls:\n  acme:\n    names: [\"not a name\"]\n", 3, "tls.acme.names[0]", "is not a DNS name"},
		{"tls acme plain http CA", "tls:\n  acme:\n    ca: http://ca.example.com/dir\n", 3, "tls.acme.ca", "is not an https URL"},
		{"tls version", "tls:\n  min_version: \"1.1\"\n", 2, "tls.min_version", "is not one of 1.2, 1.3"},
		{"tls crl without ca", "tls:\n  crl_file: x.crl\n", 2, "tls.crl_file", "needs tls.client_ca"},
		{"tcp and tls on one port", "listen:\n  - {transport: tcp, addr: \"0.0.0.0:5061\"}\n  - {transport: tls, addr: \"0.0.0.0:5061\"}\ntls: {cert_file: a, key_file: b}\n", 3, "listen[1].addr", "duplicate listener"},
		{"prefilter xdp without interfaces", "prefilter:\n  mode: xdp\n", 2, "prefilter.mode", "mode xdp needs at least one NIC in prefilter.interfaces"},
		{"media fastpath tc without interfaces", "media:\n  fastpath: tc\n", 2, "media.fastpath", "fastpath tc needs the NICs media arrives on in prefilter.interfaces"},
		{"media fastpath value", "media:\n  fastpath: xdp\n", 2, "media.fastpath", "is not one of auto, tc, off"},
		{"media encryption pass on one side", "media:\n  encryption: {outside: pass}\n", 2, "media.encryption.outside", "pass needs pass on both sides"},
		{"media encryption required, passed", "media:\n  encryption: {outside: pass, inside: pass, require: true}\n", 2, "media.encryption.require", "needs media.encryption.outside auto, sdes or dtls"},
		{"trusted peer encryption value", "auth:\n  trusted:\n    - {name: c, cidrs: [192.0.2.0/24], encryption: pass}\n", 3, "auth.trusted[0].encryption", "is not one of auto, sdes, dtls, off"},
		{"prefilter bad network", "prefilter:\n  deny: [10.0.0.0/33]\n", 2, "prefilter.deny[0]", `"10.0.0.0/33" is not an IP network`},
		{"prefilter rate without burst", "prefilter:\n  rates:\n    junk: {rate: 3, burst: 0}\n", 3, "prefilter.rates.junk.burst", "must be 1 to 10000000 packets when prefilter.rates.junk.rate is set"},
		{"prefilter share", "prefilter:\n  verified_share: 120\n", 2, "prefilter.verified_share", "from 0 to 100"},
		{"admin addr", "admin:\n  addr: localhost\n", 2, "admin.addr", "is not IP:port"},
		{"admin not loopback without token", "admin:\n  addr: 10.0.0.1:9090\n", 2, "admin.addr", "is not a loopback address"},
		{"admin console without token", "admin:\n  console: true\n", 2, "admin.console", "needs admin.addr and admin.token_file"},
		{"admin decision log", "admin:\n  decision_log: 10\n", 2, "admin.decision_log", "must be 100 to 1000000"},
		{"unknown key case and separators", "Limits: {}\n", 1, "", `(did you mean "limits"?)`},
		{"duplicate top key", "log: {level: info}\nlog: {level: debug}\n", 2, "", `duplicate key "log" (first set on line 1)`},
		{"top level is a list", "- listen\n", 1, "", "want a mapping of keys at the top level, got a list"},
		{"top level is a scalar", "\n\nhello\n", 3, "", `want a mapping of keys at the top level, got "hello"`},
		{"syntax error unclosed list", "log:\n  level: [info\n", 2, "", "invalid YAML: did not find expected ',' or ']'"},
		{"syntax error dedent", "log:\n  level: info\n format: x\n", 3, "", "invalid YAML: did not find expected key"},
		{"syntax error missing colon", "log:\n  level: info\n  bad\n", 3, "", "invalid YAML: could not find expected ':'"},
		{"syntax error on line 1", "a: b: c\n", 1, "", "invalid YAML: mapping values are not allowed in this context"},
		{"syntax error unclosed quote", "log:\n  level: \"info\n", 2, "", "invalid YAML: found unexpected end of stream"},
		{"syntax error unknown anchor", "log: {}\ncalls:\n  ring_timeout: *rt\n", 3, "", "invalid YAML: unknown anchor 'rt' referenced"},
		{"tab indentation", "log:\n\tlevel: info\n", 2, "", "invalid YAML:"},
		{"two documents", "log: {}\n---\nlog: {}\n", 2, "", "more than one YAML document"},
		{"key is a list", "? [a]\n: 1\n", 1, "", "keys must be plain strings, got a list"},
		{"merge of a scalar", "health:\n  <<: 5\n", 2, "health", "a merge (<<) needs a mapping or a list of mappings"},
		{"merge list with a scalar", "health:\n  <<: [5]\n", 2, "health", "a merge (<<) needs a mapping"},
		{"unknown key in a merged mapping", "x: &x {intervl: 1s}\n", 1, "", `unknown key "x"`},

		// listen
		{"listen not a list", "listen: udp\n", 1, "listen", `want a list, got "udp"`},
		{"listen empty", "listen: []\n", 1, "listen", "at least one listener is required"},
		{"listener not a mapping", "listen:\n  - udp\n", 2, "listen[0]", `want a mapping, got "udp"`},
		{"listener unknown key", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    adr: 1.2.3.4:5\n", 4, "listen[0]", `unknown key "adr" (did you mean "addr"?)`},
		{"listener duplicate key", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    transport: tcp\n", 4, "listen[0]", `duplicate key "transport" (first set on line 2)`},
		{"transport bad", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n  - transport: sctp\n    addr: 0.0.0.0:5061\n", 4, "listen[1].transport", `"sctp" is not one of udp, tcp`},
		{"transport case", "listen:\n  - {transport: UDP, addr: 0.0.0.0:5060}\n", 2, "listen[0].transport", `"UDP" is not one of udp, tcp`},
		{"transport wrong type", "listen:\n  - addr: 0.0.0.0:5060\n    transport: {udp: 1}\n", 3, "listen[0].transport", "want a string, got a mapping"},
		{"long value is cut short", "listen:\n  - addr: 0.0.0.0:5060\n    transport: " + strings.Repeat("x", 200) + "\n", 3, "listen[0].transport", `"` + strings.Repeat("x", 60) + `"... is not one of udp, tcp`},
		{"transport missing", "listen:\n  - addr: 0.0.0.0:5060\n", 2, "listen[0].transport", "is required (one of udp, tcp, tls, wss)"},
		{"addr missing", "listen:\n  - transport: udp\n", 2, "listen[0].addr", "is required"},
		{"addr no port", "listen:\n  - transport: udp\n    addr: 192.0.2.1\n", 3, "listen[0].addr", `"192.0.2.1" is not an IP:port address: missing port in address`},
		{"addr host name", "listen:\n  - transport: udp\n    addr: localhost:5060\n", 3, "listen[0].addr", `"localhost" is not an IP address`},
		{"addr no host", "listen:\n  - transport: udp\n    addr: :5060\n", 3, "listen[0].addr", `has no IP address; use "0.0.0.0:5060"`},
		{"addr ipv6 without brackets", "listen:\n  - transport: udp\n    addr: \"::1:5060\"\n", 3, "listen[0].addr", "too many colons"},
		{"addr ipv4 in brackets", "listen:\n  - transport: udp\n    addr: \"[192.0.2.1]:5060\"\n", 3, "listen[0].addr", "only IPv6 addresses go in brackets"},
		{"addr port too big", "listen:\n  - transport: udp\n    addr: 0.0.0.0:65536\n", 3, "listen[0].addr", `port "65536" is not a number from 0 to 65535`},
		{"addr port negative", "listen:\n  - transport: udp\n    addr: 0.0.0.0:-1\n", 3, "listen[0].addr", `port "-1"`},
		{"addr port name", "listen:\n  - transport: udp\n    addr: 0.0.0.0:sip\n", 3, "listen[0].addr", `port "sip"`},
		{"addr wrong type", "listen:\n  - transport: udp\n    addr: [0.0.0.0]\n", 3, "listen[0].addr", "want a string, got a list"},
		{"side bad", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    side: dmz\n", 4, "listen[0].side", `"dmz" is not one of external, internal`},
		{"side empty", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    side: \"\"\n", 4, "listen[0].side", "is required (one of external, internal)"},
		{"side wrong type", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    side: [internal]\n", 4, "listen[0].side", "want a string, got a list"},
		{"advertise port 0", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: sbc.example.com:0\n", 4, "listen[0].advertise", `port "0" is not a number from 1 to 65535`},
		{"advertise port junk", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: \"[2001:db8::1]:x\"\n", 4, "listen[0].advertise", `port "x"`},
		{"advertise wildcard", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: 0.0.0.0\n", 4, "listen[0].advertise", "is a wildcard address"},
		{"advertise bad name", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: sbc_1.example.com\n", 4, "listen[0].advertise", "is neither an IP address nor a host name"},
		{"advertise bad ipv4", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: 10.0.0.300\n", 4, "listen[0].advertise", "is neither an IP address nor a host name"},
		{"advertise bare ipv6", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: \"2001:db8::1\"\n", 4, "listen[0].advertise", "IPv6 addresses go in brackets"},
		{"advertise name in brackets", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: \"[sbc]\"\n", 4, "listen[0].advertise", "in brackets is not an IPv6 address"},
		{"advertise ipv4 in brackets", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: \"[192.0.2.1]:5060\"\n", 4, "listen[0].advertise", "only IPv6 addresses go in brackets"},
		{"advertise zone", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: \"[fe80::1%eth0]\"\n", 4, "listen[0].advertise", "a zone (%eth0) means nothing to peers"},
		{"advertise wrong type", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n    advertise: {a: b}\n", 4, "listen[0].advertise", "want a string, got a mapping"},
		{"duplicate listener", "listen:\n  - transport: udp\n    addr: 0.0.0.0:5060\n  - transport: tcp\n    addr: 0.0.0.0:5060\n  - transport: udp\n    addr: 0.0.0.0:5060\n", 7, "listen[2].addr", "duplicate listener udp 0.0.0.0:5060 (same as listen[0])"},
		{"duplicate listener ipv6 spelled differently", "listen:\n  - {transport: tcp, addr: \"[::]:5060\"}\n  - {transport: tcp, addr: \"[0::0]:5060\"}\n", 3, "listen[1].addr", "duplicate listener tcp [::]:5060 (same as listen[0])"},

		// upstreams
		{"upstreams not a list", "upstreams: pbx\n", 1, "upstreams", `want a list, got "pbx"`},
		{"upstream not a mapping", "upstreams:\n  - sip:10.0.0.1\n", 2, "upstreams[0]", `want a mapping, got "sip:10.0.0.1"`},
		{"upstream unknown key", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    wieght: 2\n", 4, "upstreams[0]", `unknown key "wieght" (did you mean "weight"?)`},
		{"upstream duplicate key", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    name: b\n", 4, "upstreams[0]", `duplicate key "name" (first set on line 2)`},
		{"name missing", "upstreams:\n  - uri: sip:10.0.0.1\n", 2, "upstreams[0].name", "is required"},
		{"name blank", "upstreams:\n  - uri: sip:10.0.0.1\n    name: \" \"\n", 3, "upstreams[0].name", "is required"},
		{"name duplicate", "upstreams:\n  - name: pbx\n    uri: sip:10.0.0.1\n  - name: pbx\n    uri: sip:10.0.0.2\n", 4, "upstreams[1].name", `duplicate name "pbx" (also upstreams[0])`},
		{"name wrong type", "upstreams:\n  - uri: sip:10.0.0.1\n    name: [a]\n", 3, "upstreams[0].name", "want a string, got a list"},
		{"uri missing", "upstreams:\n  - name: a\n", 2, "upstreams[0].uri", "is required"},
		{"uri host name", "upstreams:\n  - name: a\n    uri: sip:pbx.example.com\n", 3, "upstreams[0].uri", `host "pbx.example.com" is not an IP address`},
		{"uri scheme", "upstreams:\n  - name: a\n    uri: http://10.0.0.1/\n", 3, "upstreams[0].uri", "scheme must be sip (for TLS use ;transport=tls)"},
		{"uri no scheme", "upstreams:\n  - name: a\n    uri: 10.0.0.1\n", 3, "upstreams[0].uri", "scheme must be sip (for TLS use ;transport=tls)"},
		{"uri bad port", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1:five\n", 3, "upstreams[0].uri", "is not a valid SIP URI"},
		{"uri port too big", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1:65536\n", 3, "upstreams[0].uri", "port 65536 is not from 1 to 65535"},
		{"uri no host", "upstreams:\n  - name: a\n    uri: \"sip:\"\n", 3, "upstreams[0].uri", "has no host"},
		{"uri unclosed ipv6", "upstreams:\n  - name: a\n    uri: \"sip:[::1\"\n", 3, "upstreams[0].uri", "is not a valid SIP URI"},
		{"uri ipv4 in brackets", "upstreams:\n  - name: a\n    uri: \"sip:[10.0.0.1]\"\n", 3, "upstreams[0].uri", "is not an IP address"},
		{"uri wildcard host", "upstreams:\n  - name: a\n    uri: sip:0.0.0.0\n", 3, "upstreams[0].uri", "is a wildcard address"},
		{"uri star", "upstreams:\n  - name: a\n    uri: \"*\"\n", 3, "upstreams[0].uri", "scheme must be sip (for TLS use ;transport=tls)"},
		{"uri transport", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1;transport=sctp\n", 3, "upstreams[0].uri", "transport=sctp is not one of udp, tcp"},
		{"uri wrong type", "upstreams:\n  - name: a\n    uri: {host: 10.0.0.1}\n", 3, "upstreams[0].uri", "want a string, got a mapping"},
		{"priority zero", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    priority: 0\n", 4, "upstreams[0].priority", "must be at least 1, got 0"},
		{"priority wrong type", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    priority: high\n", 4, "upstreams[0].priority", `want an integer, got "high"`},
		{"priority float", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    priority: 1.5\n", 4, "upstreams[0].priority", `want an integer, got "1.5"`},
		{"priority quoted", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    priority: \"2\"\n", 4, "upstreams[0].priority", `want an integer, got "2"`},
		{"weight negative", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    weight: -3\n", 4, "upstreams[0].weight", "must be at least 1, got -3"},
		{"weight wrong type", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    weight: [1]\n", 4, "upstreams[0].weight", "want an integer, got a list"},
		{"weight overflow", "upstreams:\n  - name: a\n    uri: sip:10.0.0.1\n    weight: 99999999999999999999\n", 4, "upstreams[0].weight", "want an integer"},

		// health
		{"health not a mapping", "health: 10s\n", 1, "health", `want a mapping, got "10s"`},
		{"health unknown key", "health:\n  intervall: 5s\n", 2, "health", `unknown key "intervall" (did you mean "interval"?)`},
		{"health duplicate key", "health:\n  failures: 2\n  failures: 3\n", 3, "health", `duplicate key "failures" (first set on line 2)`},
		{"interval not a duration", "health:\n  interval: 10 sec\n", 2, "health.interval", `"10 sec" is not a duration (use e.g. "300ms", "10s", "2h")`},
		{"interval negative", "health:\n  interval: -5s\n", 2, "health.interval", `"-5s" is negative`},
		{"interval no unit", "health:\n  interval: 10\n", 2, "health.interval", "it needs a unit"},
		{"interval wrong type", "health:\n  interval: [10s]\n", 2, "health.interval", "want a duration"},
		{"interval shorter than default timeout", "log: {}\nhealth:\n  interval: 1s\n", 3, "health.interval", "health.timeout (2s) must be shorter than health.interval (1s)"},
		{"timeout not a duration", "health:\n  timeout: fast\n", 2, "health.timeout", `"fast" is not a duration`},
		{"timeout negative", "health:\n  timeout: -1ms\n", 2, "health.timeout", "is negative"},
		{"timeout equals interval", "health:\n  interval: 5s\n  timeout: 5s\n", 3, "health.timeout", "must be shorter than health.interval"},
		{"timeout zero while on", "health:\n  timeout: 0s\n", 2, "health.timeout", "must be greater than 0 while health checks are on"},
		{"failures zero", "health:\n  failures: 0\n", 2, "health.failures", "must be at least 1, got 0"},
		{"failures wrong type", "health:\n  failures: three\n", 2, "health.failures", `want an integer, got "three"`},
		{"successes negative", "health:\n  successes: -1\n", 2, "health.successes", "must be at least 1, got -1"},
		{"successes wrong type", "health:\n  successes: true\n", 2, "health.successes", `want an integer, got "true"`},

		// outbound
		{"outbound not a mapping", "outbound: sip:203.0.113.5\n", 1, "outbound", `want a mapping, got "sip:203.0.113.5"`},
		{"outbound unknown key", "outbound:\n  uri: sip:203.0.113.5\n  url: sip:203.0.113.6\n", 3, "outbound", `unknown key "url" (did you mean "uri"?)`},
		{"outbound duplicate key", "outbound:\n  uri: sip:203.0.113.5\n  uri: sip:203.0.113.6\n", 3, "outbound", `duplicate key "uri" (first set on line 2)`},
		{"outbound uri missing", "log: {}\noutbound: {}\n", 2, "outbound.uri", "is required"},
		{"outbound uri host name", "outbound:\n  uri: sip:trunk.example.net\n", 2, "outbound.uri", "is not an IP address"},
		{"outbound uri scheme", "outbound:\n  uri: tel:+15551234\n", 2, "outbound.uri", "scheme must be sip (for TLS use ;transport=tls)"},
		{"outbound uri wrong type", "outbound:\n  uri: 5\n", 2, "outbound.uri", "scheme must be sip (for TLS use ;transport=tls)"},

		// limits
		{"limits not a mapping", "limits: [1]\n", 1, "limits", "want a mapping, got a list"},
		{"limits unknown key", "limits:\n  max_dialog: 5\n", 2, "limits", `unknown key "max_dialog" (did you mean "max_dialogs"?)`},
		{"limits duplicate key", "limits:\n  max_dialogs: 5\n  max_inflight: 5\n  max_dialogs: 6\n", 4, "limits", `duplicate key "max_dialogs" (first set on line 2)`},
		{"max_inflight zero", "limits:\n  max_inflight: 0\n", 2, "limits.max_inflight", "must be at least 1, got 0"},
		{"max_inflight wrong type", "limits:\n  max_inflight: lots\n", 2, "limits.max_inflight", `want an integer, got "lots"`},
		{"max_dialogs wrong type", "limits:\n  max_dialogs: many\n", 2, "limits.max_dialogs", `want an integer, got "many"`},
		{"max_dialogs negative", "limits:\n  max_dialogs: -1\n", 2, "limits.max_dialogs", "must be at least 1, got -1"},
		{"max_message_size small", "limits:\n  max_message_size: 512\n", 2, "limits.max_message_size", "must be between 1024 and 65535, got 512"},
		{"max_message_size big", "limits:\n  max_message_size: 65536\n", 2, "limits.max_message_size", "must be between 1024 and 65535, got 65536"},
		{"max_message_size wrong type", "limits:\n  max_message_size: 64k\n", 2, "limits.max_message_size", `want an integer, got "64k"`},
		{"tcp not a mapping", "limits:\n  tcp: yes\n", 2, "limits.tcp", `want a mapping, got "yes"`},
		{"tcp unknown key", "limits:\n  tcp:\n    max_con: 3\n", 3, "limits.tcp", `unknown key "max_con" (did you mean "max_conns"?)`},
		{"tcp duplicate key", "limits:\n  tcp:\n    max_conns: 3\n    max_conns: 4\n", 4, "limits.tcp", `duplicate key "max_conns" (first set on line 3)`},
		{"tcp max_conns zero", "limits:\n  tcp:\n    max_conns: 0\n", 3, "limits.tcp.max_conns", "must be at least 1, got 0"},
		{"tcp max_conns wrong type", "limits:\n  tcp:\n    max_conns: {n: 1}\n", 3, "limits.tcp.max_conns", "want an integer, got a mapping"},
		{"tcp max_conns_per_source negative", "limits:\n  tcp:\n    max_conns_per_source: -1\n", 3, "limits.tcp.max_conns_per_source", "must be at least 1, got -1"},
		{"tcp max_conns_per_source wrong type", "limits:\n  tcp:\n    max_conns_per_source: 1e3\n", 3, "limits.tcp.max_conns_per_source", `want an integer, got "1e3"`},
		{"tcp idle_timeout zero", "limits:\n  tcp:\n    idle_timeout: 0s\n", 3, "limits.tcp.idle_timeout", "must be greater than 0, got 0s"},
		{"tcp idle_timeout negative", "limits:\n  tcp:\n    idle_timeout: -2m\n", 3, "limits.tcp.idle_timeout", `"-2m" is negative`},
		{"tcp write_timeout bad", "limits:\n  tcp:\n    write_timeout: soon\n", 3, "limits.tcp.write_timeout", `"soon" is not a duration`},
		{"tcp write_timeout zero", "limits:\n  tcp:\n    write_timeout: 0\n", 3, "limits.tcp.write_timeout", "must be greater than 0, got 0s"},
		{"tcp message_timeout bad", "limits:\n  tcp:\n    message_timeout: soon\n", 3, "limits.tcp.message_timeout", `"soon" is not a duration`},
		{"tcp message_timeout zero", "limits:\n  tcp:\n    message_timeout: 0\n", 3, "limits.tcp.message_timeout", "must be greater than 0, got 0s"},

		// calls
		{"calls not a mapping", "calls: 1\n", 1, "calls", `want a mapping, got "1"`},
		{"calls unknown key", "calls:\n  ring_timout: 5s\n", 2, "calls", `unknown key "ring_timout" (did you mean "ring_timeout"?)`},
		{"calls duplicate key", "calls:\n  ring_timeout: 5s\n  ring_timeout: 6s\n", 3, "calls", `duplicate key "ring_timeout" (first set on line 2)`},
		{"ring_timeout zero", "calls:\n  ring_timeout: 0s\n", 2, "calls.ring_timeout", "must be greater than 0, got 0s"},
		{"ring_timeout bad", "calls:\n  ring_timeout: 2 minutes\n", 2, "calls.ring_timeout", `"2 minutes" is not a duration`},
		{"max_duration negative", "calls:\n  max_duration: -1h\n", 2, "calls.max_duration", `"-1h" is negative`},
		{"max_duration wrong type", "calls:\n  max_duration: {h: 1}\n", 2, "calls.max_duration", "want a duration"},
		{"session_timeout zero", "calls:\n  session_timeout: 0\n", 2, "calls.session_timeout", "must be greater than 0, got 0s"},
		{"session_timeout bad", "calls:\n  session_timeout: 1d\n", 2, "calls.session_timeout", `"1d" is not a duration`},
		{"follow_redirects yes", "calls:\n  follow_redirects: yes\n", 2, "calls.follow_redirects", `want true or false, got "yes"`},
		{"follow_redirects number", "calls:\n  follow_redirects: 1\n", 2, "calls.follow_redirects", `want true or false, got "1"`},
		{"max_per_user negative", "calls:\n  max_per_user: -1\n", 2, "calls.max_per_user", "must be 0 (no cap) to 1000000, got -1"},
		{"max_per_user huge", "calls:\n  max_per_user: 1000001\n", 2, "calls.max_per_user", "must be 0 (no cap) to 1000000, got 1000001"},
		{"max_per_user text", "calls:\n  max_per_user: ten\n", 2, "calls.max_per_user", "want an integer"},
		{"max_per_source negative", "calls:\n  ring_timeout: 10s\n  max_per_source: -5\n", 3, "calls.max_per_source", "must be 0 (no cap) to 1000000, got -5"},
		{"max_per_trusted negative", "calls:\n  max_per_trusted: -1\n", 2, "calls.max_per_trusted", "must be 0 (no cap) to 1000000"},

		// registrar
		{"registrar not a mapping", "registrar: relay\n", 1, "registrar", `want a mapping, got "relay"`},
		{"registrar unknown key", "registrar:\n  max_binding: 3\n", 2, "registrar", `unknown key "max_binding" (did you mean "max_bindings"?)`},
		{"registrar duplicate key", "registrar:\n  mode: off\n  mode: relay\n", 3, "registrar", `duplicate key "mode" (first set on line 2)`},
		{"mode bad", "registrar:\n  mode: proxy\n", 2, "registrar.mode", `"proxy" is not one of relay, local, off`},
		{"mode wrong type", "registrar:\n  mode: [relay]\n", 2, "registrar.mode", "want a string, got a list"},
		{"domains not a list", "registrar:\n  domains: example.com\n", 2, "registrar.domains", `want a list, got "example.com"`},
		{"domain bad", "registrar:\n  domains: [example.com, \"ex ample\"]\n", 2, "registrar.domains[1]", `"ex ample" is neither a host name nor an IP address`},
		{"domain bare ipv6", "registrar:\n  domains: [\"2001:db8::1\"]\n", 2, "registrar.domains[0]", "is neither a host name nor an IP address"},
		{"domain wrong type", "registrar:\n  domains: [{a: b}]\n", 2, "registrar.domains[0]", "want a string, got a mapping"},
		{"domain duplicate", "registrar:\n  domains: [example.com, EXAMPLE.com]\n", 2, "registrar.domains[1]", `duplicate domain "EXAMPLE.com" (also registrar.domains[0])`},
		{"local without domains", "registrar:\n  mode: local\n  users: [alice]\n", 2, "registrar.domains", "at least one domain is required when registrar.mode is local"},
		{"local without users", "registrar:\n  mode: local\n  domains: [example.com]\nauth: {mode: \"off\"}\npolicy: {mode: \"off\"}\n", 2, "registrar.users", "at least one user is required"},
		{"auth off with built-in policy", "auth:\n  mode: \"off\"\n", 2, "auth.mode", "the built-in policy refuses every untrusted request"},
		{"auth mode bad", "auth:\n  mode: basic\n", 2, "auth.mode", `"basic" is not one of digest, off`},
		{"auth realm quote", "auth:\n  realm: 'a\"b'\n", 2, "auth.realm", "without quotes"},
		{"auth algorithm unknown", "auth:\n  algorithms: [SHA-1]\n", 2, "auth.algorithms[0]", `"SHA-1" is not one of SHA-256, SHA-512-256, MD5`},
		{"auth profile bad regexp", "auth:\n  profiles:\n    - name: x\n      user_agent: \"(\"\n      algorithms: [MD5]\n", 4, "auth.profiles[0].user_agent", "not a regular expression"},
		{"auth profile algorithm unknown", "auth:\n  profiles:\n    - name: x\n      user_agent: x\n      algorithms: [SHA-1]\n", 5, "auth.profiles[0].algorithms[0]", `"SHA-1" is not one of`},
		{"auth profile no algorithms", "auth:\n  profiles:\n    - name: x\n      user_agent: x\n", 3, "auth.profiles[0].algorithms", "required"},
		{"auth algorithm twice", "auth:\n  algorithms: [MD5, MD5]\n", 2, "auth.algorithms[1]", "duplicate algorithm"},
		{"auth nonce ttl short", "auth:\n  nonce_ttl: 1s\n", 2, "auth.nonce_ttl", "at least 10s"},
		{"auth rotation shorter than ttl", "auth:\n  key_rotation: 60s\n", 2, "auth.key_rotation", "must not be shorter than auth.nonce_ttl"},
		{"auth trusted bad cidr", "auth:\n  trusted:\n    - name: c\n      cidrs: [10.0.0.0/33]\n", 4, "auth.trusted[0].cidrs[0]", "is not an IP network"},
		{"auth trusted no cidrs", "auth:\n  trusted:\n    - name: c\n", 3, "auth.trusted[0].cidrs", "at least one network"},
		{"auth trusted dup name", "auth:\n  trusted:\n    - {name: c, cidrs: [10.0.0.1]}\n    - {name: c, cidrs: [10.0.0.2]}\n", 4, "auth.trusted[1].name", "duplicate name"},
		{"auth identity core header", "auth:\n  assert_identity: Via\n", 2, "auth.assert_identity", "a header the SBC writes itself"},
		{"auth identity bad name", "auth:\n  assert_identity: 'X Y'\n", 2, "auth.assert_identity", "is not a header name"},
		{"auth source without key", "auth:\n  source_header: X-Src\n", 2, "auth.source_key_file", "is required with auth.source_header"},
		{"topology guard bad", "topology:\n  guard: maybe\n", 2, "topology.guard", `"maybe" is not one of block, log, off`},
		{"topology net bad", "topology:\n  internal_nets: [10.0.0.0/40]\n", 2, "topology.internal_nets[0]", "is not an IP network"},
		{"topology name bad", "topology:\n  internal_names: ['a b']\n", 2, "topology.internal_names[0]", "is not a host name"},
		{"topology header bad", "topology:\n  to_outside: [Via]\n", 2, "topology.to_outside[0]", "a header the SBC writes itself"},
		{"topology keep reason bad", "topology:\n  keep_reasons: [486, 99]\n", 2, "topology.keep_reasons[1]", "99 is not a status code"},
		{"topology keep reason twice", "topology:\n  keep_reasons: [486, 486]\n", 2, "topology.keep_reasons[1]", "listed twice"},
		{"topology text policy bad", "topology:\n  text_headers:\n    reason: hide\n", 3, "topology.text_headers.reason", `"hide" is not one of keep, scrub, drop`},
		{"topology text header unknown", "topology:\n  text_headers:\n    server: drop\n", 3, "topology.text_headers", `unknown key "server"`},
		{"topology display names bad", "topology:\n  display_names: keep\n", 2, "topology.display_names", `"keep" is not one of scrub, drop`},
		{"topology sdp attribute bad", "topology:\n  sdp_attributes: [rtpmap, 'a b']\n", 2, "topology.sdp_attributes[1]", "not an SDP attribute name"},
		{"topology product none not alone", "topology:\n  product_words: [none, asterisk]\n", 2, "topology.product_words[0]", "must be alone"},
		{"media mode bad", "media:\n  mode: proxy\n", 2, "media.mode", `"proxy" is not one of relay, off`},
		{"media port odd", "media:\n  port_min: 40001\n", 2, "media.port_min", "must be an even port"},
		{"media range small", "media:\n  port_min: 40000\n  port_max: 40001\n", 3, "media.port_max", "leave room"},
		{"media ip bad", "media:\n  external_ip: eth0\n", 2, "media.external_ip", "is not an IP address"},
		{"media advertise wildcard", "media:\n  advertise_external: 0.0.0.0\n", 2, "media.advertise_external", "must not be a wildcard"},
		{"policy mode bad", "policy:\n  mode: audit\n", 2, "policy.mode", `"audit" is not one of enforce, shadow, off`},
		{"policy query bad", "policy:\n  query: sipwall.decision\n", 2, "policy.query", "must be a reference under data"},
		{"policy timeout long", "policy:\n  timeout: 2s\n", 2, "policy.timeout", "at most 1s"},
		{"policy fail status", "policy:\n  fail_status: 404\n", 2, "policy.fail_status", "must be 403 or 500"},
		{"policy zone bad", "policy:\n  zone: Mars/Olympus\n", 2, "policy.zone", "is not an IANA time zone"},
		{"policy country bad", "policy:\n  country: gbr\n", 2, "policy.country", "ISO 3166 alpha-2"},
		{"policy country unknown", "policy:\n  country: XX\n", 2, "policy.country", "must be one of"},
		{"dialplan country unknown", "dialplan:\n  country: XX\n", 2, "dialplan.country", "must be one of AT, BE, CA"},
		{"dialplan country differs", "policy: {country: GB}\ndialplan:\n  country: FR\n", 3, "dialplan.country", "differ"},
		{"dialplan trunk prefix", "dialplan:\n  trunk_prefix: o\n", 2, "dialplan.trunk_prefix", "1 to 3 digits"},
		{"dialplan international prefix", "dialplan:\n  international_prefix: \"+\"\n", 2, "dialplan.international_prefix", "1 to 4 digits"},
		{"dialplan prefixes equal", "dialplan:\n  country: GB\n  trunk_prefix: \"00\"\n  international_prefix: \"00\"\n", 4, "dialplan.international_prefix", "are both"},
		{"dialplan lengths need a country", "dialplan:\n  national_lengths: [10]\n", 2, "dialplan.national_lengths", "needs dialplan.country"},
		{"dialplan length", "dialplan:\n  country: GB\n  national_lengths: [10, 3]\n", 3, "dialplan.national_lengths[1]", "4 to 14"},
		{"dialplan extension pattern", "dialplan:\n  extensions: ['[0-9']\n", 2, "dialplan.extensions[0]", "not a regular expression"},
		{"dialplan service pattern", "dialplan:\n  service_codes: ['*9']\n", 2, "dialplan.service_codes[0]", "not a regular expression"},
		{"dialplan emergency", "dialplan:\n  emergency: [\"999\", \"1-1-2\"]\n", 2, "dialplan.emergency[1]", "1 to 8 digits"},
		{"dialplan feature", "dialplan:\n  features: [\"*67\", \"x\"]\n", 2, "dialplan.features[1]", "digits, * or #"},
		{"dialplan tel_uri", "dialplan:\n  tel_uri: drop\n", 2, "dialplan.tel_uri", "carry, refuse"},
		{"rules builtin type", "rules:\n  builtin: sometimes\n", 2, "rules.builtin", ""},
		{"rules webhook bad", "rules:\n  webhook: ftp://x\n", 2, "rules.webhook", "is not an http or https URL"},
		{"rules webhook timeout", "rules:\n  webhook_timeout: 2m\n", 2, "rules.webhook_timeout", "at most 1m"},
		{"bans threshold zero", "bans:\n  threshold: 0\n", 2, "bans.threshold", "at least 1"},
		{"bans max shorter", "bans:\n  max_ban_time: 10m\n", 2, "bans.max_ban_time", "must not be shorter than bans.ban_time"},
		{"bans scanner none not alone", "bans:\n  scanner_agents: [none, x]\n", 2, "bans.scanner_agents[0]", "must be alone"},
		{"user bad", "registrar:\n  users: [\"alice@example.com\"]\n", 2, "registrar.users[0]", "is not a SIP user part"},
		{"user empty", "registrar:\n  users: [\"\"]\n", 2, "registrar.users[0]", "is not a SIP user part"},
		{"user duplicate", "registrar:\n  users: [bob, bob]\n", 2, "registrar.users[1]", `duplicate user "bob" (also registrar.users[0])`},
		{"min_expires zero", "registrar:\n  min_expires: 0s\n", 2, "registrar.min_expires", "must be a whole number of seconds, at least 1s, got 0s"},
		{"min_expires fraction", "registrar:\n  min_expires: 1500ms\n", 2, "registrar.min_expires", "must be a whole number of seconds"},
		{"min_expires bad", "registrar:\n  min_expires: a minute\n", 2, "registrar.min_expires", `"a minute" is not a duration`},
		{"max_expires below default min", "registrar:\n  max_expires: 30s\n", 2, "registrar.max_expires", "registrar.max_expires (30s) must not be shorter than registrar.min_expires (1m0s)"},
		{"min_expires above default max", "registrar:\n  min_expires: 2h\n", 2, "registrar.min_expires", "registrar.max_expires (1h0m0s) must not be shorter than registrar.min_expires (2h0m0s)"},
		{"max_expires zero", "registrar:\n  max_expires: 0s\n", 2, "registrar.max_expires", "must be a whole number of seconds"},
		{"phone_expires below min", "registrar:\n  phone_expires: 30s\n", 2, "registrar.phone_expires", "registrar.phone_expires (30s) must be from registrar.min_expires (1m0s) to registrar.max_expires (1h0m0s)"},
		{"min_expires above default phone", "registrar:\n  min_expires: 2m\n", 2, "registrar.min_expires", "registrar.phone_expires (1m0s) must be from registrar.min_expires (2m0s)"},
		{"phone_expires wrong type", "registrar:\n  phone_expires: 60\n", 2, "registrar.phone_expires", "it needs a unit"},
		{"upstream_expires below phone", "registrar:\n  phone_expires: 2m\n  upstream_expires: 90s\n", 3, "registrar.upstream_expires", "registrar.upstream_expires (1m30s) must not be shorter than registrar.phone_expires (2m0s)"},
		{"phone_expires above default upstream", "registrar:\n  phone_expires: 90m\n  max_expires: 2h\n", 2, "registrar.phone_expires", "must not be shorter than registrar.phone_expires (1h30m0s)"},
		{"upstream_expires negative", "registrar:\n  upstream_expires: -1h\n", 2, "registrar.upstream_expires", `"-1h" is negative`},
		{"refresh_percent too big", "registrar:\n  refresh_percent: 95\n", 2, "registrar.refresh_percent", "must be from 0 to 90, got 95"},
		{"refresh_percent negative", "registrar:\n  refresh_percent: -1\n", 2, "registrar.refresh_percent", "must be from 0 to 90, got -1"},
		{"refresh_percent float", "registrar:\n  refresh_percent: 0.5\n", 2, "registrar.refresh_percent", `want an integer, got "0.5"`},
		{"max_bindings zero", "registrar:\n  max_bindings: 0\n", 2, "registrar.max_bindings", "must be at least 1, got 0"},
		{"max_aors zero", "registrar:\n  max_aors: 0\n", 2, "registrar.max_aors", "must be at least 1, got 0"},
		{"max_aors wrong type", "registrar:\n  max_aors: lots\n", 2, "registrar.max_aors", `want an integer, got "lots"`},
		{"when_full bad", "registrar:\n  when_full: drop\n", 2, "registrar.when_full", `"drop" is not one of reject, replace_oldest`},
		{"other_domain_status bad", "registrar:\n  other_domain_status: 401\n", 2, "registrar.other_domain_status", "must be 403 or 404, got 401"},
		{"redirect outside local mode", "registrar:\n  redirect: true\n", 2, "registrar.redirect", "needs registrar.mode local"},
		{"redirect wrong type", "registrar:\n  redirect: yes\n", 2, "registrar.redirect", `want true or false, got "yes"`},

		// store
		{"store not a mapping", "store: state\n", 1, "store", `want a mapping, got "state"`},
		{"store unknown key", "store:\n  dir: state\n", 2, "store", `unknown key "dir" (valid keys: path, backend, redis)`},
		{"store duplicate key", "store:\n  path: a\n  path: b\n", 3, "store", `duplicate key "path" (first set on line 2)`},
		{"path empty", "store:\n  path: \"\"\n", 2, "store.path", "must not be empty"},
		{"path wrong type", "store:\n  path: [a, b]\n", 2, "store.path", "want a string, got a list"},
		{"backend unknown", "store:\n  backend: etcd\n", 2, "store.backend", "etcd"},
		{"redis without addrs", "store:\n  backend: redis\n", 2, "store.redis.addrs", "at least one address"},
		{"redis addr without port", "store:\n  backend: redis\n  redis:\n    addrs: [redis.local]\n", 4, "store.redis.addrs", "host:port"},
		{"redis cluster and sentinel", "store:\n  backend: redis\n  redis:\n    addrs: [\"a:1\"]\n    master_name: m\n    cluster: true\n", 6, "store.redis.cluster", "exclude"},
		{"redis db range", "store:\n  backend: redis\n  redis:\n    addrs: [\"a:1\"]\n    db: 16\n", 5, "store.redis.db", "0 to 15"},
		{"redis prefix glob", "store:\n  backend: redis\n  redis:\n    addrs: [\"a:1\"]\n    prefix: \"a*\"\n", 5, "store.redis.prefix", "glob"},
		{"redis resync short", "store:\n  backend: redis\n  redis:\n    addrs: [\"a:1\"]\n    resync: 100ms\n", 5, "store.redis.resync", "1s to 1h"},
		{"redis fail_closed unknown", "store:\n  backend: redis\n  redis:\n    addrs: [\"a:1\"]\n    fail_closed: [bans]\n", 5, "store.redis.fail_closed", "bans"},

		// log
		{"log not a mapping", "log: debug\n", 1, "log", `want a mapping, got "debug"`},
		{"log unknown key", "log:\n  levl: debug\n", 2, "log", `unknown key "levl" (did you mean "level"?)`},
		{"log duplicate key", "log:\n  format: text\n  format: json\n", 3, "log", `duplicate key "format" (first set on line 2)`},
		{"level bad", "log:\n  level: verbose\n", 2, "log.level", `"verbose" is not one of debug, info, warn, error`},
		{"level empty", "log:\n  level: \"\"\n", 2, "log.level", "is required (one of debug, info, warn, error)"},
		{"level wrong type", "log:\n  level: [debug]\n", 2, "log.level", "want a string, got a list"},
		{"format bad", "log:\n  format: xml\n", 2, "log.format", `"xml" is not one of text, json`},
		{"format wrong type", "log:\n  format: {a: b}\n", 2, "log.format", "want a string, got a mapping"},

		// Aliases: a bad value is reported where it is used.
		{"bad aliased value", "calls:\n  ring_timeout: &t 5s\nhealth:\n  failures: *t\n", 4, "health.failures", `want an integer, got "5s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), "test.yaml")
			if err == nil {
				t.Fatalf("no error; parsed %+v", c)
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if len(cerr.Problems) != 1 {
				t.Fatalf("want exactly one problem, got %d:\n%v", len(cerr.Problems), err)
			}
			p := cerr.Problems[0]
			if p.Line != tt.line || p.Key != tt.key || !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("got  %+v\nwant line %d, key %q, message containing %q", p, tt.line, tt.key, tt.msg)
			}
			prefix := "test.yaml:" + strconv.Itoa(tt.line) + ": "
			if tt.key != "" {
				prefix += tt.key + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("message %q does not start with %q", err, prefix)
			}
		})
	}
}
