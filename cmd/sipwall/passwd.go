package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sipwall/sipwall/sbc/auth"
)

// maxPasswordLen bounds the password line read from stdin.
const maxPasswordLen = 1024

const passwdUsage = `usage: sipwall passwd -file FILE -realm REALM [-no-md5] USER   (password on stdin)
       sipwall passwd -file FILE -disable|-enable|-delete USER
`

// cmdPasswd adds or changes a user of a users file (sbc/auth), or disables,
// enables or deletes one. The password is the first line of stdin; only
// its HA1s are written.
func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("passwd", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprint(stderr, passwdUsage)
		flags.PrintDefaults()
	}
	file := flags.String("file", "", "users file (created 0600 if missing)")
	realm := flags.String("realm", "", "realm the HA1s are computed for (required to set a password)")
	noMD5 := flags.Bool("no-md5", false, "store no MD5 HA1: the account never authenticates with MD5 (for accounts whose phones all answer SHA-256)")
	// -md5 was needed before MD5 was stored by default; still accepted.
	md5 := flags.Bool("md5", false, "store an MD5 HA1 (the default; kept for old scripts)")
	disable := flags.Bool("disable", false, "disable the user (no password read)")
	enable := flags.Bool("enable", false, "enable the user (no password read)")
	del := flags.Bool("delete", false, "delete the user")
	if err := flags.Parse(args); err != nil {
		return err
	}
	// Accept flags after the user name too: passwd alice -file x.
	var rest []string
	for flags.NArg() > 0 {
		rest = append(rest, flags.Arg(0))
		if err := flags.Parse(flags.Args()[1:]); err != nil {
			return err
		}
	}
	if len(rest) != 1 {
		flags.Usage()
		return errors.New("passwd: need exactly one user name")
	}
	user := rest[0]
	if *file == "" {
		return errors.New("passwd: -file is required")
	}
	if !auth.ValidUserName(user) {
		return fmt.Errorf("passwd: invalid user name %q", user)
	}
	var modes int
	for _, b := range []bool{*disable, *enable, *del} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		return errors.New("passwd: -disable, -enable and -delete exclude each other")
	}
	setPassword := modes == 0
	if !setPassword && (*md5 || *noMD5) {
		return errors.New("passwd: -md5 and -no-md5 only apply when setting a password")
	}
	if *md5 && *noMD5 {
		return errors.New("passwd: -md5 and -no-md5 exclude each other")
	}
	if setPassword && (*realm == "" || strings.ContainsAny(*realm, "\"\\\r\n")) {
		return fmt.Errorf("passwd: invalid or missing -realm %q", *realm)
	}

	path, mode, data, err := readUsersFile(*file)
	if err != nil {
		return err
	}
	doc, users, err := usersNode(data)
	if err != nil {
		return fmt.Errorf("passwd: %s: %w", *file, err)
	}
	idx := findUser(users, user)
	if !setPassword && idx < 0 {
		return fmt.Errorf("passwd: %s: no user %q", *file, user)
	}

	var done string
	switch {
	case *del:
		users.Content = append(users.Content[:idx], users.Content[idx+1:]...)
		done = "deleted"
	case *disable, *enable:
		setKey(deref(users.Content[idx]), "disabled", boolNode(*disable))
		done = "enabled"
		if *disable {
			done = "disabled"
		}
	default:
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		// Every algorithm by default: what a phone can answer is not known
		// when the account is made, and most desk phones answer only MD5.
		algs := []string{auth.SHA256, auth.SHA512256, auth.MD5}
		if *noMD5 {
			algs = algs[:2]
		}
		// A fresh set: an HA1 of the old password (an MD5 one left over,
		// say) must not stay valid.
		ha1 := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, alg := range algs {
			ha1.Content = append(ha1.Content, strNode(alg), strNode(auth.HashPassword(user, *realm, pw, alg)))
		}
		if idx < 0 {
			entry := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			setKey(entry, "name", strNode(user))
			users.Content = append(users.Content, entry)
			idx = len(users.Content) - 1
			done = "added"
		} else {
			done = "password changed"
		}
		// disabled stays as it was: a new password does not re-enable.
		entry := deref(users.Content[idx])
		setKey(entry, "ha1", ha1)
		done += " (realm " + *realm + ", " + strings.Join(algs, ", ") + ")"
		if d := value(entry, "disabled"); d != nil && deref(d).Value == "true" {
			done += ", still disabled"
		}
	}

	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("passwd: encode %s: %w", *file, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("passwd: encode %s: %w", *file, err)
	}
	// What we write must be what sipwall loads.
	if _, err := auth.ParseUsers(out.Bytes()); err != nil {
		return fmt.Errorf("passwd: result does not load, %s left unchanged: %w", *file, err)
	}
	if err := writeFileAtomic(path, out.Bytes(), mode); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	fmt.Fprintf(stdout, "%s: user %q %s\n", *file, user, done)
	return nil
}

// readPassword returns the first line of r without its line end.
func readPassword(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("passwd: no password on stdin")
	}
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordLen+3)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("passwd: read password: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case pw == "":
		return "", errors.New("passwd: empty password (give it as the first line of stdin)")
	case len(pw) > maxPasswordLen:
		return "", fmt.Errorf("passwd: password longer than %d bytes", maxPasswordLen)
	}
	return pw, nil
}

// readUsersFile returns the file to write (symlinks resolved), the mode to
// give it and its content; a missing file reads as empty, mode 0600. A
// file that does not load is refused rather than rewritten.
func readUsersFile(name string) (string, fs.FileMode, []byte, error) {
	path, err := filepath.EvalSymlinks(name)
	if errors.Is(err, fs.ErrNotExist) {
		return name, 0o600, nil, nil
	}
	if err != nil {
		return "", 0, nil, fmt.Errorf("passwd: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, nil, fmt.Errorf("passwd: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, nil, fmt.Errorf("passwd: %s is not a regular file", name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, nil, fmt.Errorf("passwd: %w", err)
	}
	if _, err := auth.ParseUsers(data); err != nil {
		return "", 0, nil, fmt.Errorf("passwd: %s does not load, fix it first: %w", name, err)
	}
	return path, fi.Mode().Perm(), data, nil
}

// usersNode parses the file as a YAML tree, so that comments and the order
// of users survive the edit, and returns the document and its users list.
func usersNode(data []byte) (*yaml.Node, *yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, err
	}
	if doc.Kind == 0 { // empty file
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil, errors.New("not a single YAML document")
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		*root = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, errors.New("top level is not a mapping")
	}
	users := value(root, "users")
	if users == nil || (users.Kind == yaml.ScalarNode && users.Tag == "!!null") {
		users = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		setKey(root, "users", users)
	}
	if users.Kind != yaml.SequenceNode {
		return nil, nil, errors.New("users is not a list")
	}
	return &doc, users, nil
}

// findUser returns the index of the entry named user in the users list, -1
// if there is none.
func findUser(users *yaml.Node, user string) int {
	for i, e := range users.Content {
		if n := value(deref(e), "name"); n != nil && deref(n).Value == user {
			return i
		}
	}
	return -1
}

func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// value returns the value of key in mapping m, nil if absent.
func value(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setKey sets key in mapping m to v, in place if present, else at the end.
func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, strNode(key), v)
}

// strNode is a string scalar; the encoder quotes it where YAML would read
// it as something else (true, 123, null).
func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(b)}
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, so that a reader (sipwall's reload) sees the old file or
// the new one, never a part.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable; not every system can sync a directory.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
