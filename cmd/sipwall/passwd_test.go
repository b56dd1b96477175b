package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc/auth"
)

const pwRealm = "sip.example.test"

// existingUsers is a users file written by hand, with a comment and two
// users, bob disabled and with an MD5 HA1.
func existingUsers() string {
	return "# managed by hand and by sipwall passwd\n" +
		"users:\n" +
		"  - name: bob # the boss\n" +
		"    ha1: {SHA-256: \"" + auth.HashPassword("bob", pwRealm, "old-bob", auth.SHA256) + "\", MD5: \"" + auth.HashPassword("bob", pwRealm, "old-bob", auth.MD5) + "\"}\n" +
		"    disabled: true\n" +
		"  - name: \"1001\"\n" +
		"    ha1: {SHA-256: \"" + auth.HashPassword("1001", pwRealm, "ext", auth.SHA256) + "\"}\n"
}

type wantUser struct {
	name     string
	pw       string // "" when the HA1s are not to be checked
	algs     []string
	disabled bool
}

func TestPasswd(t *testing.T) {
	all := []string{auth.SHA256, auth.SHA512256, auth.MD5}
	for _, tc := range []struct {
		name    string
		initial string // "" for no file
		args    []string
		stdin   string
		errSub  string     // wanted error substring; "" for success
		want    []wantUser // users in file order after the command
	}{
		{name: "create", args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "crlf-and-more-lines", args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret\r\nignored\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "no-newline", args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "spaces-kept", args: []string{"-realm", pwRealm, "alice"}, stdin: " pass phrase \n",
			want: []wantUser{{"alice", " pass phrase ", all, false}}},
		{name: "md5", args: []string{"-realm", pwRealm, "-md5", "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "no-md5", args: []string{"-realm", pwRealm, "-no-md5", "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", []string{auth.SHA256, auth.SHA512256}, false}}},
		{name: "md5-and-no-md5", args: []string{"-realm", pwRealm, "-md5", "-no-md5", "alice"}, stdin: "s3cret\n", errSub: "exclude"},
		{name: "no-md5-with-disable", initial: existingUsers(), args: []string{"-no-md5", "-disable", "bob"}, errSub: "-no-md5"},
		{name: "flags-after-user", args: []string{"alice", "-realm", pwRealm}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "add-keeps-others", initial: existingUsers(), args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"bob", "old-bob", []string{auth.SHA256, auth.MD5}, true}, {"1001", "ext", []string{auth.SHA256}, false}, {"alice", "s3cret", all, false}}},
		// A new password replaces every HA1 (the old MD5 one too) and does
		// not re-enable the account.
		{name: "replace", initial: existingUsers(), args: []string{"-realm", pwRealm, "bob"}, stdin: "new-bob\n",
			want: []wantUser{{"bob", "new-bob", all, true}, {"1001", "ext", []string{auth.SHA256}, false}}},
		{name: "numeric-name", initial: existingUsers(), args: []string{"-realm", pwRealm, "1001"}, stdin: "ext2\n",
			want: []wantUser{{"bob", "old-bob", []string{auth.SHA256, auth.MD5}, true}, {"1001", "ext2", all, false}}},
		{name: "enable", initial: existingUsers(), args: []string{"-enable", "bob"}, stdin: "must not be read\n",
			want: []wantUser{{"bob", "old-bob", []string{auth.SHA256, auth.MD5}, false}, {"1001", "ext", []string{auth.SHA256}, false}}},
		{name: "disable", initial: existingUsers(), args: []string{"-disable", "1001"}, stdin: "must not be read\n",
			want: []wantUser{{"bob", "old-bob", []string{auth.SHA256, auth.MD5}, true}, {"1001", "ext", []string{auth.SHA256}, true}}},
		{name: "delete", initial: existingUsers(), args: []string{"-delete", "bob"}, stdin: "must not be read\n",
			want: []wantUser{{"1001", "ext", []string{auth.SHA256}, false}}},
		{name: "delete-last", initial: "users:\n  - {name: x, ha1: {MD5: \"" + strings.Repeat("0", 32) + "\"}}\n", args: []string{"-delete", "x"},
			want: nil},
		{name: "empty-file", initial: "\n", args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},
		{name: "users-null", initial: "users:\n", args: []string{"-realm", pwRealm, "alice"}, stdin: "s3cret\n",
			want: []wantUser{{"alice", "s3cret", all, false}}},

		{name: "empty-password", args: []string{"-realm", pwRealm, "alice"}, stdin: "\n", errSub: "empty password"},
		{name: "empty-crlf-password", args: []string{"-realm", pwRealm, "alice"}, stdin: "\r\n", errSub: "empty password"},
		{name: "no-stdin", args: []string{"-realm", pwRealm, "alice"}, stdin: "", errSub: "empty password"},
		{name: "long-password", args: []string{"-realm", pwRealm, "alice"}, stdin: strings.Repeat("x", maxPasswordLen+1) + "\n", errSub: "longer than"},
		{name: "bad-name-quote", args: []string{"-realm", pwRealm, `al"ice`}, stdin: "pw\n", errSub: "invalid user name"},
		{name: "bad-name-backslash", args: []string{"-realm", pwRealm, `al\ice`}, stdin: "pw\n", errSub: "invalid user name"},
		{name: "bad-name-newline", args: []string{"-realm", pwRealm, "al\nice"}, stdin: "pw\n", errSub: "invalid user name"},
		{name: "no-realm", args: []string{"alice"}, stdin: "pw\n", errSub: "-realm"},
		{name: "bad-realm", args: []string{"-realm", `a"b`, "alice"}, stdin: "pw\n", errSub: "-realm"},
		{name: "no-user", args: []string{"-realm", pwRealm}, stdin: "pw\n", errSub: "one user name"},
		{name: "two-users", args: []string{"-realm", pwRealm, "alice", "bob"}, stdin: "pw\n", errSub: "one user name"},
		{name: "two-modes", initial: existingUsers(), args: []string{"-enable", "-delete", "bob"}, errSub: "exclude"},
		{name: "md5-with-delete", initial: existingUsers(), args: []string{"-md5", "-delete", "bob"}, errSub: "-md5"},
		{name: "disable-unknown", initial: existingUsers(), args: []string{"-disable", "carol"}, errSub: `no user "carol"`},
		{name: "delete-no-file", args: []string{"-delete", "carol"}, errSub: `no user "carol"`},
		{name: "broken-file", initial: "users:\n  - name: x\n    password: plain\n", args: []string{"-realm", pwRealm, "alice"}, stdin: "pw\n", errSub: "does not load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yaml")
			if tc.initial != "" {
				if err := os.WriteFile(path, []byte(tc.initial), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb bytes.Buffer
			stdin := strings.NewReader(tc.stdin)
			err := cmdPasswd(append([]string{"-file", path}, tc.args...), stdin, &out, &errb)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err %v, want one containing %q", err, tc.errSub)
				}
				after, rerr := os.ReadFile(path)
				if tc.initial == "" && rerr == nil {
					t.Fatalf("file created on error:\n%s", after)
				}
				if tc.initial != "" && string(after) != tc.initial {
					t.Fatalf("file changed on error:\n%s", after)
				}
				if out.Len() != 0 {
					t.Fatalf("stdout on error: %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("passwd: %v (stderr %q)", err, errb.String())
			}
			user, setPassword := "", true
			for i, a := range tc.args {
				switch {
				case a == "-enable" || a == "-disable" || a == "-delete":
					setPassword = false
				case !strings.HasPrefix(a, "-") && (i == 0 || tc.args[i-1] != "-realm"):
					user = a
				}
			}
			if !setPassword && stdin.Len() != len(tc.stdin) {
				t.Fatal("stdin read without a password to set")
			}
			checkUsersFile(t, path, tc.want)
			if tc.initial == existingUsers() && !strings.Contains(readFile(t, path), "# managed by hand") {
				t.Fatal("comment lost")
			}
			// One line, naming the user, without secrets.
			line := out.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, `"`+user+`"`) {
				t.Fatalf("confirmation %q for user %q", line, user)
			}
			for _, w := range tc.want {
				for _, alg := range w.algs {
					if w.pw != "" && (strings.Contains(line, auth.HashPassword(w.name, pwRealm, w.pw, alg))) {
						t.Fatalf("confirmation shows a hash: %q", line)
					}
				}
			}
			if pw := strings.TrimSpace(tc.stdin); setPassword && strings.Contains(line, pw) {
				t.Fatalf("confirmation shows the password: %q", line)
			}
			// Mode: 0600 for a new file, kept for an existing one.
			wantMode := os.FileMode(0o600)
			if tc.initial != "" {
				wantMode = 0o640
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != wantMode {
				t.Fatalf("mode %v (%v), want %v", fi.Mode().Perm(), err, wantMode)
			}
			// No temporary file left beside it.
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Fatalf("%d files in the directory, want 1", len(ents))
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkUsersFile loads path as sipwall does and checks the users, their
// order, their HA1s (recomputed) and their disabled flags.
func checkUsersFile(t *testing.T, path string, want []wantUser) {
	t.Helper()
	u, err := auth.LoadUsersFile(path)
	if err != nil {
		t.Fatalf("written file does not load: %v\n%s", err, readFile(t, path))
	}
	if u.Len() != len(want) {
		t.Fatalf("%d users, want %d:\n%s", u.Len(), len(want), readFile(t, path))
	}
	body := readFile(t, path)
	last := -1
	for _, w := range want {
		ha1, disabled, ok := u.Lookup(w.name, pwRealm)
		if !ok {
			t.Fatalf("user %q missing:\n%s", w.name, body)
		}
		if disabled != w.disabled {
			t.Fatalf("user %q disabled=%v, want %v", w.name, disabled, w.disabled)
		}
		if len(ha1) != len(w.algs) {
			t.Fatalf("user %q has HA1s %v, want %v", w.name, ha1, w.algs)
		}
		for _, alg := range w.algs {
			if got, want := ha1[alg], auth.HashPassword(w.name, pwRealm, w.pw, alg); got != want {
				t.Fatalf("user %q %s HA1 %s, want %s", w.name, alg, got, want)
			}
		}
		// File order: each user's HA1 after the previous one's.
		i := strings.Index(body, ha1[auth.SHA256])
		if i < last {
			t.Fatalf("user %q out of order:\n%s", w.name, body)
		}
		last = i
	}
}

// TestPasswdSequence runs the commands one after the other on one file,
// through Main for the ones that need no stdin.
func TestPasswdSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	run := func(stdin string, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if err := cmdPasswd(append([]string{"-file", path}, args...), strings.NewReader(stdin), &out, &errb); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	run("pw-a\n", "-realm", pwRealm, "alice")
	run("pw-c\n", "-realm", pwRealm, "-md5", "carol")
	run("pw-a2\n", "-realm", pwRealm, "alice")
	var out, errb bytes.Buffer
	if code := Main([]string{"passwd", "-file", path, "-disable", "carol"}, &out, &errb); code != 0 {
		t.Fatalf("Main passwd -disable: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"carol" disabled`) {
		t.Fatalf("confirmation %q", out.String())
	}
	out.Reset()
	// -no-md5 on a new password drops the MD5 HA1 stored before.
	if err := cmdPasswd([]string{"-file", path, "-realm", pwRealm, "-no-md5", "carol"}, strings.NewReader("pw-c\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), ", still disabled\n") {
		t.Fatalf("new password for a disabled user: %q", out.String())
	}
	checkUsersFile(t, path, []wantUser{
		{"alice", "pw-a2", []string{auth.SHA256, auth.SHA512256, auth.MD5}, false},
		{"carol", "pw-c", []string{auth.SHA256, auth.SHA512256}, true},
	})
	if code := Main([]string{"passwd", "-file", path, "-delete", "alice"}, &out, &errb); code != 0 {
		t.Fatalf("Main passwd -delete: %d %s", code, errb.String())
	}
	checkUsersFile(t, path, []wantUser{{"carol", "pw-c", []string{auth.SHA256, auth.SHA512256}, true}})
	errb.Reset()
	if code := Main([]string{"passwd", "-file", path, "-delete", "alice"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), `no user "alice"`) {
		t.Fatalf("second delete: %d %q", code, errb.String())
	}
}

// TestPasswdSymlink writes through a symlink to its target and keeps the
// link.
func TestPasswdSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(target, []byte(existingUsers()), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "users.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	var out, errb bytes.Buffer
	if err := cmdPasswd([]string{"-file", link, "-delete", "bob"}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced by a file")
	}
	checkUsersFile(t, target, []wantUser{{"1001", "ext", []string{auth.SHA256}, false}})
}
