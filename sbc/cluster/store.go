package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

func checkName(what, s string) error {
	if s == "" {
		return errors.New("cluster: empty " + what)
	}
	if len(s) > 1024 {
		return errors.New("cluster: " + what + " longer than 1024 bytes")
	}
	return nil
}

// ms rounds a positive duration up to whole milliseconds.
func ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// get reads one string key; ok is false when it does not exist.
func (c *Client) get(op, key string) ([]byte, bool, error) {
	if err := c.ready(); err != nil {
		return nil, false, err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	v, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, c.fail(op, err)
	case len(v) > MaxValue:
		c.nInvalid.Add(1)
		return nil, false, ErrTooLarge
	}
	return v, true, nil
}

// set writes one string key, expiring at the given time (zero: never).
func (c *Client) set(op, key string, v []byte, at time.Time) error {
	if len(v) > MaxValue {
		return ErrTooLarge
	}
	if err := c.ready(); err != nil {
		return err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	var err error
	if at.IsZero() {
		err = c.rdb.Set(ctx, key, v, 0).Err()
	} else {
		err = c.rdb.Do(ctx, "set", key, v, "pxat", ceilMilli(at)).Err()
	}
	return c.fail(op, err)
}

func (c *Client) del(op string, keys ...string) error {
	if err := c.ready(); err != nil {
		return err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	return c.fail(op, c.rdb.Del(ctx, keys...).Err())
}

// forEach scans the keys matching pattern and calls fn with the name that
// follows the key's fixed part and the value. fn's error stops the walk.
func (c *Client) forEach(pattern string, name func(string) (string, bool), fn func(string, []byte) error) error {
	if err := c.ready(); err != nil {
		return err
	}
	ctx := context.Background()
	keys, _, err := c.scan(ctx, pattern)
	if err != nil {
		return err
	}
	slices.Sort(keys)
	return c.getMany(ctx, keys, func(key string, v []byte) error {
		n, ok := name(key)
		if !ok || n == "" {
			c.nInvalid.Add(1)
			return nil
		}
		return fn(n, v)
	})
}

// --- Registrations ---

// PutRegistration stores the value of an AOR, expiring after ttl (> 0).
func (c *Client) PutRegistration(aor string, v []byte, ttl time.Duration) error {
	if err := checkName("aor", aor); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("cluster: registration without a positive ttl")
	}
	return c.set("put registration", c.keys.reg(aor), v, c.cfg.Now().Add(ttl))
}

// GetRegistration reads the value of an AOR; ok is false when there is none.
func (c *Client) GetRegistration(aor string) (v []byte, ok bool, err error) {
	if err := checkName("aor", aor); err != nil {
		return nil, false, err
	}
	return c.get("get registration", c.keys.reg(aor))
}

// DeleteRegistration removes an AOR; a missing one is no error.
func (c *Client) DeleteRegistration(aor string) error {
	if err := checkName("aor", aor); err != nil {
		return err
	}
	return c.del("delete registration", c.keys.reg(aor))
}

// ForEachRegistration calls fn for every registration, in AOR order; an
// error from fn stops the walk and is returned.
func (c *Client) ForEachRegistration(fn func(aor string, v []byte) error) error {
	return c.forEach(c.keys.regMatch(), c.keys.regAOR, fn)
}

// --- Nonce keys ---

// Key is an HMAC key of the digest layer, a field of "<p>:auth-keys".
type Key struct {
	ID      string    `json:"id"`
	Seq     uint64    `json:"seq"`
	Secret  []byte    `json:"secret"`
	Created time.Time `json:"created"`
}

// Keys returns the shared keys by Seq, skipping and counting bad ones.
func (c *Client) Keys() ([]Key, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	m, err := c.rdb.HGetAll(ctx, c.keys.authKeys()).Result()
	if err != nil {
		return nil, c.fail("keys", err)
	}
	out := make([]Key, 0, len(m))
	for id, v := range m {
		var k Key
		if len(v) > MaxValue || json.Unmarshal([]byte(v), &k) != nil || k.ID != id || len(k.Secret) == 0 {
			c.nInvalid.Add(1)
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.ID, b.ID)) })
	if len(out) > maxKeys {
		out = out[len(out)-maxKeys:]
	}
	return out, nil
}

// AddKey stores k unless a key with its ID exists (HSETNX); added tells
// which.
func (c *Client) AddKey(k Key) (added bool, err error) {
	if err := checkName("key id", k.ID); err != nil {
		return false, err
	}
	if len(k.Secret) == 0 {
		return false, errors.New("cluster: key without a secret")
	}
	v, err := json.Marshal(k)
	if err != nil {
		return false, err
	}
	if len(v) > MaxValue {
		return false, ErrTooLarge
	}
	if err := c.ready(); err != nil {
		return false, err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	added, err = c.rdb.HSetNX(ctx, c.keys.authKeys(), k.ID, v).Result()
	return added, c.fail("add key", err)
}

// DeleteKey removes the key with this ID; a missing one is no error.
func (c *Client) DeleteKey(id string) error {
	if err := checkName("key id", id); err != nil {
		return err
	}
	if err := c.ready(); err != nil {
		return err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	return c.fail("delete key", c.rdb.HDel(ctx, c.keys.authKeys(), id).Err())
}

// TryLock takes the lock "<p>:lock:<name>" for ttl (SET NX PX) with this
// node's name as value; false when another holder has it. The lock ends
// with its ttl or Unlock.
func (c *Client) TryLock(name string, ttl time.Duration) (bool, error) {
	if err := checkName("lock name", name); err != nil {
		return false, err
	}
	if ttl <= 0 {
		return false, errors.New("cluster: lock without a positive ttl")
	}
	if err := c.ready(); err != nil {
		return false, err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	err := c.rdb.Do(ctx, "set", c.keys.lock(name), c.cfg.Node, "nx", "px", ms(ttl)).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, c.fail("lock", err)
	}
	return true, nil
}

// unlockScript deletes the lock only when this node holds it.
var unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Unlock releases a lock that this node holds; false when it did not hold it.
func (c *Client) Unlock(name string) (bool, error) {
	if err := checkName("lock name", name); err != nil {
		return false, err
	}
	if err := c.ready(); err != nil {
		return false, err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	n, err := unlockScript.Run(ctx, c.rdb, []string{c.keys.lock(name)}, c.cfg.Node).Int64()
	if err != nil {
		return false, c.fail("unlock", err)
	}
	return n == 1, nil
}

// --- Fraud counters ---

func parseFloat(op string, s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("cluster: " + op + ": not a number in redis")
	}
	return f, nil
}

// AddCounter adds delta to the fixed window of counter key that starts at
// start ("<p>:cnt:{<key>}:<start unix ns>", INCRBYFLOAT, expiring at
// end+(end-start)) and returns it with the value of the previous window,
// the one starting at prevStart (0 when there is none, or when prevStart is
// zero). A delta of 0 only reads. One round trip; atomic across nodes.
func (c *Client) AddCounter(key string, start, end, prevStart time.Time, delta float64) (cur, prev float64, err error) {
	if err := checkName("counter", key); err != nil {
		return 0, 0, err
	}
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return 0, 0, errors.New("cluster: counter delta is not a number")
	}
	if !end.After(start) {
		return 0, 0, errors.New("cluster: counter window ends before it starts")
	}
	if err := c.ready(); err != nil {
		return 0, 0, err
	}
	curKey := c.keys.counter(key, start)
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	var curCmd *redis.Cmd
	var prevCmd *redis.StringCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if delta != 0 {
			curCmd = p.Do(ctx, "incrbyfloat", curKey, strconv.FormatFloat(delta, 'f', -1, 64))
			p.PExpireAt(ctx, curKey, end.Add(end.Sub(start)))
		} else {
			curCmd = p.Do(ctx, "get", curKey)
		}
		if !prevStart.IsZero() {
			prevCmd = p.Get(ctx, c.keys.counter(key, prevStart))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, c.fail("counter", err)
	}
	if s, err := curCmd.Text(); err == nil {
		if cur, err = parseFloat("counter", s); err != nil {
			c.nInvalid.Add(1)
			return 0, 0, err
		}
	} else if !errors.Is(err, redis.Nil) {
		return 0, 0, c.fail("counter", err)
	}
	if prevCmd != nil {
		if s, err := prevCmd.Result(); err == nil {
			if prev, err = parseFloat("counter", s); err != nil {
				c.nInvalid.Add(1)
				prev = 0
			}
		} else if !errors.Is(err, redis.Nil) {
			return 0, 0, c.fail("counter", err)
		}
	}
	return cur, prev, nil
}

// AddGauge adds delta (which may be negative) to "<p>:gauge:<key>" and
// returns the new value; each change sets the expiry to ttl from now (no
// expiry when ttl <= 0), so a gauge left by a dead node fades away.
func (c *Client) AddGauge(key string, delta float64, ttl time.Duration) (float64, error) {
	if err := checkName("gauge", key); err != nil {
		return 0, err
	}
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return 0, errors.New("cluster: gauge delta is not a number")
	}
	if err := c.ready(); err != nil {
		return 0, err
	}
	gk := c.keys.gauge(key)
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	var cmd *redis.Cmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = p.Do(ctx, "incrbyfloat", gk, strconv.FormatFloat(delta, 'f', -1, 64))
		if ttl > 0 {
			p.Do(ctx, "pexpire", gk, ms(ttl))
		}
		return nil
	})
	if err != nil {
		return 0, c.fail("gauge", err)
	}
	s, err := cmd.Text()
	if err != nil {
		return 0, c.fail("gauge", err)
	}
	v, err := parseFloat("gauge", s)
	if err != nil {
		c.nInvalid.Add(1)
	}
	return v, err
}

// --- Account blocks ---

// PutBlock stores the block of a user until the given time (zero: no end).
func (c *Client) PutBlock(user string, v []byte, until time.Time) error {
	if err := checkName("user", user); err != nil {
		return err
	}
	if !until.IsZero() && !until.After(c.cfg.Now()) {
		return c.DeleteBlock(user)
	}
	return c.set("put block", c.keys.block(user), v, until)
}

// GetBlock reads the block of a user; ok is false when there is none.
func (c *Client) GetBlock(user string) ([]byte, bool, error) {
	if err := checkName("user", user); err != nil {
		return nil, false, err
	}
	return c.get("get block", c.keys.block(user))
}

// DeleteBlock removes the block of a user; a missing one is no error.
func (c *Client) DeleteBlock(user string) error {
	if err := checkName("user", user); err != nil {
		return err
	}
	return c.del("delete block", c.keys.block(user))
}

// ForEachBlock calls fn for every block, in user order; an error from fn
// stops the walk and is returned.
func (c *Client) ForEachBlock(fn func(user string, v []byte) error) error {
	return c.forEach(c.keys.blockMatch(), c.keys.blockUser, fn)
}

// --- Countries ---

// AddCountry adds cc to the set of countries the user has called
// ("<p>:cc:<user>", SADD) and sets the set's expiry to ttl from now (none
// when ttl <= 0); isNew tells whether cc was not in the set.
func (c *Client) AddCountry(user, cc string, ttl time.Duration) (isNew bool, err error) {
	if err := checkName("user", user); err != nil {
		return false, err
	}
	if err := checkName("country", cc); err != nil {
		return false, err
	}
	if err := c.ready(); err != nil {
		return false, err
	}
	key := c.keys.countries(user)
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	var add *redis.IntCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		add = p.SAdd(ctx, key, cc)
		if ttl > 0 {
			p.Do(ctx, "pexpire", key, ms(ttl))
		}
		return nil
	})
	if err != nil {
		return false, c.fail("country", err)
	}
	return add.Val() == 1, nil
}

// --- Batches ---

// Op is one counter or gauge operation of a Batch: a counter's (as
// AddCounter) when End is set, else a gauge's (as AddGauge, kept TTL
// after the change). Batch fills in Cur (the counter's window, or the
// gauge), Prev (the counter's previous window) and Err.
type Op struct {
	Key                   string
	Start, End, PrevStart time.Time
	TTL                   time.Duration
	Delta                 float64

	Cur, Prev float64
	Err       error
}

func (o *Op) counter() bool { return !o.End.IsZero() }

// Batch runs the operations in one pipelined round trip, instead of one
// round trip each: the fraud rules count every call in several counters
// and gauges. An operation that is invalid, or whose value in Redis is not
// a number, gets its own Err; when the round trip fails, every operation
// gets that error, which Batch also returns.
func (c *Client) Batch(ops []Op) error {
	type pending struct {
		cur  *redis.Cmd
		prev *redis.StringCmd
	}
	cmds := make([]pending, len(ops))
	valid := 0
	for i := range ops {
		o := &ops[i]
		o.Cur, o.Prev, o.Err = 0, 0, nil
		what := "gauge"
		if o.counter() {
			what = "counter"
		}
		switch {
		case checkName(what, o.Key) != nil:
			o.Err = checkName(what, o.Key)
		case math.IsNaN(o.Delta) || math.IsInf(o.Delta, 0):
			o.Err = errors.New("cluster: " + what + " delta is not a number")
		case o.counter() && !o.End.After(o.Start):
			o.Err = errors.New("cluster: counter window ends before it starts")
		default:
			valid++
		}
	}
	if valid == 0 {
		return nil
	}
	if err := c.ready(); err != nil {
		for i := range ops {
			if ops[i].Err == nil {
				ops[i].Err = err
			}
		}
		return err
	}
	ctx, cancel := c.ctx(context.Background())
	defer cancel()
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range ops {
			o := &ops[i]
			if o.Err != nil {
				continue
			}
			if !o.counter() {
				gk := c.keys.gauge(o.Key)
				cmds[i].cur = p.Do(ctx, "incrbyfloat", gk, strconv.FormatFloat(o.Delta, 'f', -1, 64))
				if o.TTL > 0 {
					p.Do(ctx, "pexpire", gk, ms(o.TTL))
				}
				continue
			}
			ck := c.keys.counter(o.Key, o.Start)
			if o.Delta != 0 {
				cmds[i].cur = p.Do(ctx, "incrbyfloat", ck, strconv.FormatFloat(o.Delta, 'f', -1, 64))
				p.PExpireAt(ctx, ck, o.End.Add(o.End.Sub(o.Start)))
			} else {
				cmds[i].cur = p.Do(ctx, "get", ck)
			}
			if !o.PrevStart.IsZero() {
				cmds[i].prev = p.Get(ctx, c.keys.counter(o.Key, o.PrevStart))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		err = c.fail("batch", err)
		for i := range ops {
			if ops[i].Err == nil {
				ops[i].Err = err
			}
		}
		return err
	}
	for i := range ops {
		o := &ops[i]
		if o.Err != nil {
			continue
		}
		what := "gauge"
		if o.counter() {
			what = "counter"
		}
		s, err := cmds[i].cur.Text()
		switch {
		case err == nil:
			if o.Cur, err = parseFloat(what, s); err != nil {
				c.nInvalid.Add(1)
				o.Cur, o.Err = 0, err
				continue
			}
		case errors.Is(err, redis.Nil) && o.counter():
			// A window not counted yet.
		default:
			o.Err = c.fail(what, err)
			continue
		}
		if cmds[i].prev != nil {
			if s, err := cmds[i].prev.Result(); err == nil {
				if o.Prev, err = parseFloat(what, s); err != nil {
					c.nInvalid.Add(1)
					o.Prev = 0
				}
			} else if !errors.Is(err, redis.Nil) {
				o.Cur, o.Err = 0, c.fail(what, err)
			}
		}
	}
	return nil
}
