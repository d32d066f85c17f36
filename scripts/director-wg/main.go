// director-wg: the small, static WireGuard configuration tool director-boot stages on its
// nodes. It drives a WireGuard device through wgctrl (the WireGuard project's own Go library),
// which speaks netlink to the kernel module and the UAPI socket to wireguard-go alike, so one
// tool serves hosts with and without the module. Unlike `wg setconf`, `apply` converges: it
// changes only what differs from the wanted configuration and never re-creates a peer that is
// already right, so running it every few seconds keeps every session (and connection) alive.
//
//	director-wg key FILE        ensure a private key in FILE (0600; generated on this host,
//	                            it never leaves it) and print its public key
//	director-wg pubkey FILE     print the public key of the private key in FILE
//	director-wg apply DEV JSON  make DEV match JSON; prints one line per change made
//	director-wg show DEV        the device and its peers as JSON (no private key)
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Config is what `apply` reads (written by director-boot's overlay role).
type Config struct {
	PrivateKeyFile string       `json:"private_key_file"`
	ListenPort     int          `json:"listen_port"`
	Peers          []PeerConfig `json:"peers"`
}

// PeerConfig is one wanted peer; a peer with no allowed IPs is known (its handshakes are
// answered) but routes nothing: how a rotated key is announced before it is used.
type PeerConfig struct {
	Name          string   `json:"name"`
	PublicKey     string   `json:"public_key"`
	Endpoint      string   `json:"endpoint"`
	AllowedIPs    []string `json:"allowed_ips"`
	KeepaliveSecs int      `json:"keepalive_secs"`
}

// Shown is what `show` prints.
type Shown struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	PublicKey  string      `json:"public_key"`
	ListenPort int         `json:"listen_port"`
	Peers      []ShownPeer `json:"peers"`
}

// ShownPeer is one peer as the device sees it.
type ShownPeer struct {
	PublicKey       string   `json:"public_key"`
	Endpoint        string   `json:"endpoint"`
	AllowedIPs      []string `json:"allowed_ips"`
	LatestHandshake int64    `json:"latest_handshake"`
	RxBytes         int64    `json:"rx_bytes"`
	TxBytes         int64    `json:"tx_bytes"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "director-wg: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: director-wg key FILE | pubkey FILE | apply DEV CONFIG.json | show DEV")
	}
	switch args[0] {
	case "key":
		k, err := ensureKey(args[1])
		if err != nil {
			return err
		}
		fmt.Println(k.PublicKey().String())
	case "pubkey":
		k, err := readKey(args[1])
		if err != nil {
			return err
		}
		fmt.Println(k.PublicKey().String())
	case "apply":
		if len(args) != 3 {
			return errors.New("usage: director-wg apply DEV CONFIG.json")
		}
		return apply(args[1], args[2])
	case "show":
		return show(args[1])
	default:
		return fmt.Errorf("unknown command %q (key, pubkey, apply, show)", args[0])
	}
	return nil
}

func readKey(path string) (wgtypes.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("%s: not a WireGuard private key: %v", path, err)
	}
	return k, nil
}

// ensureKey returns the key in path, generating it first (atomically, 0600) when missing.
func ensureKey(path string) (wgtypes.Key, error) {
	if k, err := readKey(path); err == nil {
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wgtypes.Key{}, err
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return wgtypes.Key{}, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		return wgtypes.Key{}, err
	}
	if _, err := tmp.WriteString(k.String() + "\n"); err != nil {
		return wgtypes.Key{}, err
	}
	if err := tmp.Sync(); err != nil {
		return wgtypes.Key{}, err
	}
	if err := tmp.Close(); err != nil {
		return wgtypes.Key{}, err
	}
	return k, os.Rename(tmp.Name(), path)
}

func parseNets(list []string) ([]net.IPNet, error) {
	out := make([]net.IPNet, 0, len(list))
	for _, s := range list {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *n)
	}
	return out, nil
}

func netStrings(list []net.IPNet) []string {
	out := make([]string, 0, len(list))
	for _, n := range list {
		out = append(out, n.String())
	}
	sort.Strings(out)
	return out
}

func apply(dev, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var want Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	key, err := readKey(want.PrivateKeyFile)
	if err != nil {
		return err
	}
	c, err := wgctrl.New()
	if err != nil {
		return err
	}
	defer c.Close()
	d, err := c.Device(dev)
	if err != nil {
		return fmt.Errorf("device %s: %v", dev, err)
	}
	var cfg wgtypes.Config
	var changes []string
	if d.PublicKey != key.PublicKey() {
		cfg.PrivateKey = &key
		changes = append(changes, fmt.Sprintf("private key: public key now %s", key.PublicKey()))
	}
	if want.ListenPort != 0 && d.ListenPort != want.ListenPort {
		port := want.ListenPort
		cfg.ListenPort = &port
		changes = append(changes, fmt.Sprintf("listen port %d -> %d", d.ListenPort, port))
	}
	have := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range d.Peers {
		have[p.PublicKey] = p
	}
	wanted := map[wgtypes.Key]bool{}
	for _, w := range want.Peers {
		pk, err := wgtypes.ParseKey(w.PublicKey)
		if err != nil {
			return fmt.Errorf("peer %s: public key: %v", w.Name, err)
		}
		wanted[pk] = true
		ips, err := parseNets(w.AllowedIPs)
		if err != nil {
			return fmt.Errorf("peer %s: allowed_ips: %v", w.Name, err)
		}
		var ep *net.UDPAddr
		if w.Endpoint != "" {
			if ep, err = net.ResolveUDPAddr("udp", w.Endpoint); err != nil {
				return fmt.Errorf("peer %s: endpoint: %v", w.Name, err)
			}
		}
		keepalive := time.Duration(w.KeepaliveSecs) * time.Second
		pc := wgtypes.PeerConfig{PublicKey: pk}
		cur, ok := have[pk]
		changed := false
		if !ok {
			changes = append(changes, fmt.Sprintf("peer %s added (%s)", w.Name, short(pk)))
			changed = true
		}
		if !ok || strings.Join(netStrings(cur.AllowedIPs), ",") != strings.Join(netStrings(ips), ",") {
			if ok {
				changes = append(changes, fmt.Sprintf("peer %s allowed IPs [%s] -> [%s]", w.Name,
					strings.Join(netStrings(cur.AllowedIPs), " "), strings.Join(netStrings(ips), " ")))
			}
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = ips
			changed = true
		}
		if ep != nil && (!ok || cur.Endpoint == nil || cur.Endpoint.String() != ep.String()) {
			if ok {
				changes = append(changes, fmt.Sprintf("peer %s endpoint %v -> %v", w.Name, cur.Endpoint, ep))
			}
			pc.Endpoint = ep
			changed = true
		}
		if !ok || cur.PersistentKeepaliveInterval != keepalive {
			if ok {
				changes = append(changes, fmt.Sprintf("peer %s keepalive %v -> %v", w.Name, cur.PersistentKeepaliveInterval, keepalive))
			}
			pc.PersistentKeepaliveInterval = &keepalive
			changed = true
		}
		if changed {
			cfg.Peers = append(cfg.Peers, pc)
		}
	}
	for pk := range have {
		if !wanted[pk] {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: pk, Remove: true})
			changes = append(changes, fmt.Sprintf("peer %s removed", short(pk)))
		}
	}
	if len(changes) == 0 {
		return nil
	}
	// Removals first: an added peer may take over allowed IPs a removed one held.
	sort.SliceStable(cfg.Peers, func(i, j int) bool { return cfg.Peers[i].Remove && !cfg.Peers[j].Remove })
	if err := c.ConfigureDevice(dev, cfg); err != nil {
		return fmt.Errorf("configure %s: %v", dev, err)
	}
	for _, l := range changes {
		fmt.Println(l)
	}
	return nil
}

// short names a key in messages without printing all of it.
func short(k wgtypes.Key) string { return k.String()[:8] + "…" }

func show(dev string) error {
	c, err := wgctrl.New()
	if err != nil {
		return err
	}
	defer c.Close()
	d, err := c.Device(dev)
	if err != nil {
		return fmt.Errorf("device %s: %v", dev, err)
	}
	out := Shown{Name: d.Name, Type: d.Type.String(), PublicKey: d.PublicKey.String(), ListenPort: d.ListenPort, Peers: []ShownPeer{}}
	for _, p := range d.Peers {
		sp := ShownPeer{
			PublicKey:  p.PublicKey.String(),
			AllowedIPs: netStrings(p.AllowedIPs),
			RxBytes:    p.ReceiveBytes,
			TxBytes:    p.TransmitBytes,
		}
		if p.Endpoint != nil {
			sp.Endpoint = p.Endpoint.String()
		}
		if !p.LastHandshakeTime.IsZero() {
			sp.LatestHandshake = p.LastHandshakeTime.Unix()
		}
		out.Peers = append(out.Peers, sp)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}
