package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Users looks up the stored secrets of a user. ha1 maps an algorithm name
// (SHA256, SHA512256, MD5) to HA1 in hex. ok is false for an unknown user.
type Users interface {
	Lookup(username, realm string) (ha1 map[string]string, disabled bool, ok bool)
}

// UserEntry is one user of a users file.
type UserEntry struct {
	Name     string            `yaml:"name"`
	HA1      map[string]string `yaml:"ha1"`
	Disabled bool              `yaml:"disabled"`
}

type usersFile struct {
	Users []UserEntry `yaml:"users"`
}

// FileUsers is a Users backed by a YAML file holding HA1 values only:
//
//	users:
//	  - name: alice
//	    ha1: {SHA-256: "…", MD5: "…"}
//	    disabled: false
//
// The HA1 values bind the realm they were computed for, so one file serves
// one realm. It is immutable after loading; reload by loading again.
type FileUsers struct {
	users map[string]UserEntry
}

// LoadUsersFile reads a users file.
func LoadUsersFile(path string) (*FileUsers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	u, err := ParseUsers(data)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return u, nil
}

// ParseUsers parses the YAML of a users file. Unknown keys, a plaintext
// "password" key among them, are refused rather than ignored.
func ParseUsers(data []byte) (*FileUsers, error) {
	var f usersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse users: %w", err)
	}
	fu := &FileUsers{users: make(map[string]UserEntry, len(f.Users))}
	for i, u := range f.Users {
		if !ValidUserName(u.Name) {
			return nil, fmt.Errorf("user %d: invalid name %q", i+1, u.Name)
		}
		if _, dup := fu.users[u.Name]; dup {
			return nil, fmt.Errorf("user %q listed twice", u.Name)
		}
		if len(u.HA1) == 0 {
			return nil, fmt.Errorf("user %q: no ha1", u.Name)
		}
		norm := make(map[string]string, len(u.HA1))
		for alg, h := range u.HA1 {
			n := hexLen(alg)
			if n == 0 {
				return nil, fmt.Errorf("user %q: unsupported algorithm %q", u.Name, alg)
			}
			h = strings.ToLower(h)
			if len(h) != n || strings.Trim(h, "0123456789abcdef") != "" {
				return nil, fmt.Errorf("user %q: %s ha1 is not %d hex digits", u.Name, alg, n)
			}
			norm[alg] = h
		}
		u.HA1 = norm
		fu.users[u.Name] = u
	}
	return fu, nil
}

// Lookup implements Users. The realm is not checked here: the layer only
// asks for its own realm.
func (f *FileUsers) Lookup(username, _ string) (map[string]string, bool, bool) {
	u, ok := f.users[username]
	if !ok {
		return nil, false, false
	}
	return u.HA1, u.Disabled, true
}

// Len is the number of users loaded.
func (f *FileUsers) Len() int { return len(f.users) }
