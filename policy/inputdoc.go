package policy

import (
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputDoc is the input document as an OPA object whose shape is built
// once: its keys, its nested objects and one term per leaf stay, and fill
// overwrites the leaves' values for each decision. Filling allocates only
// for a string or number the leaf did not hold in its previous use (a
// boxed ast.String), and for a non-empty destination.features.
//
// A doc is used by one evaluation at a time (evalState, pooled) and never
// once that evaluation has returned: OPA does not keep its input, and the
// decision is read out of the result before the doc is filled again.
//
// An object caches the hash of its keys and values, so after its leaves
// change each object is given one of its values again (Object.Insert of a
// key it has), which recomputes that hash; TestInputDocReuse checks the
// hashes against fresh values.
type inputDoc struct {
	root objNode

	method, transport, side, trusted, route, userAgent, dialog str

	peer     objNode
	peerIP   str
	peerPort num

	identity         *ast.Term // null or identityObj
	identityObj      objNode
	idUser, idRealm  str
	from, to, reqURI partyNode

	dest             objNode
	raw, e164, class str
	valid, features  *ast.Term

	time *ast.Term // a shared object (Time.term)

	counters               *ast.Term // null or countersObj
	countersObj            objNode
	inProgress, lastMinute num
}

// str is a leaf holding a string.
type str struct {
	t *ast.Term
	s string
}

func newStr() str { return str{t: ast.NewTerm(internedTerms[""].Value)} }

func (l *str) set(s string) {
	if s == l.s {
		return
	}
	if w, ok := internedTerms[s]; ok {
		l.t.Value = w.Value
	} else {
		l.t.Value = ast.String(s)
	}
	l.s = s
}

// num is a leaf holding an integer.
type num struct {
	t *ast.Term
	n int
}

func newNum() num { return num{t: ast.NewTerm(ast.InternedTerm(0).Value)} }

func (l *num) set(n int) {
	if n == l.n {
		return
	}
	if ast.HasInternedIntNumberTerm(n) {
		l.t.Value = ast.InternedTerm(n).Value
	} else {
		l.t.Value = ast.Number(strconv.Itoa(n)) // as encoding/json writes it
	}
	l.n = n
}

// objNode is an object and one of its items, given again to refresh the
// object's hash.
type objNode struct {
	obj  ast.Object
	k, v *ast.Term
}

func newObjNode(items ...[2]*ast.Term) objNode {
	return objNode{obj: ast.NewObject(items...), k: items[0][0], v: items[0][1]}
}

func (n objNode) refresh() { n.obj.Insert(n.k, n.v) }

// partyNode is {user, host}.
type partyNode struct {
	node       objNode
	user, host str
}

func newPartyNode() partyNode {
	p := partyNode{user: newStr(), host: newStr()}
	p.node = newObjNode(ast.Item(stringTerm("user"), p.user.t), ast.Item(stringTerm("host"), p.host.t))
	return p
}

func (p *partyNode) set(x Party) {
	p.user.set(x.User)
	p.host.set(x.Host)
	p.node.refresh()
}

// emptyArray is destination.features when no feature was stripped.
var emptyArray = ast.NewArray()

func newInputDoc() *inputDoc {
	d := &inputDoc{
		method: newStr(), transport: newStr(), side: newStr(), trusted: newStr(),
		route: newStr(), userAgent: newStr(), dialog: newStr(),
		peerIP: newStr(), peerPort: newNum(),
		idUser: newStr(), idRealm: newStr(),
		from: newPartyNode(), to: newPartyNode(), reqURI: newPartyNode(),
		raw: newStr(), e164: newStr(), class: newStr(),
		inProgress: newNum(), lastMinute: newNum(),
		identity: ast.NullTerm(), counters: ast.NullTerm(), time: ast.NullTerm(),
		valid: ast.BooleanTerm(false), features: ast.NullTerm(),
	}
	s := stringTerm
	d.peer = newObjNode(ast.Item(s("ip"), d.peerIP.t), ast.Item(s("port"), d.peerPort.t))
	d.identityObj = newObjNode(ast.Item(s("user"), d.idUser.t), ast.Item(s("realm"), d.idRealm.t))
	d.dest = newObjNode(
		ast.Item(s("raw"), d.raw.t),
		ast.Item(s("e164"), d.e164.t),
		ast.Item(s("valid"), d.valid),
		ast.Item(s("class"), d.class.t),
		ast.Item(s("features"), d.features))
	d.countersObj = newObjNode(
		ast.Item(s("calls_in_progress"), d.inProgress.t),
		ast.Item(s("calls_last_minute"), d.lastMinute.t))
	d.root = newObjNode(
		ast.Item(s("method"), d.method.t),
		ast.Item(s("transport"), d.transport.t),
		ast.Item(s("peer"), ast.NewTerm(d.peer.obj)),
		ast.Item(s("side"), d.side.t),
		ast.Item(s("trusted"), d.trusted.t),
		ast.Item(s("identity"), d.identity),
		ast.Item(s("from"), ast.NewTerm(d.from.node.obj)),
		ast.Item(s("to"), ast.NewTerm(d.to.node.obj)),
		ast.Item(s("request_uri"), ast.NewTerm(d.reqURI.node.obj)),
		ast.Item(s("route"), d.route.t),
		ast.Item(s("destination"), ast.NewTerm(d.dest.obj)),
		ast.Item(s("user_agent"), d.userAgent.t),
		ast.Item(s("time"), d.time),
		ast.Item(s("dialog"), d.dialog.t),
		ast.Item(s("counters"), d.counters),
	)
	return d
}

// fill sets the document to in and returns it; it stays valid until the
// next fill.
func (d *inputDoc) fill(in *Input) ast.Value {
	d.method.set(in.Method)
	d.transport.set(in.Transport)
	d.peerIP.set(in.Peer.IP)
	d.peerPort.set(in.Peer.Port)
	d.peer.refresh()
	d.side.set(in.Side)
	d.trusted.set(in.Trusted)
	if in.Identity == nil {
		d.identity.Value = ast.Null{}
	} else {
		d.idUser.set(in.Identity.User)
		d.idRealm.set(in.Identity.Realm)
		d.identityObj.refresh()
		d.identity.Value = d.identityObj.obj
	}
	d.from.set(in.From)
	d.to.set(in.To)
	d.reqURI.set(in.RequestURI)
	d.route.set(in.Route)
	d.raw.set(in.Destination.Raw)
	d.e164.set(in.Destination.E164)
	d.valid.Value = ast.Boolean(in.Destination.Valid)
	d.class.set(in.Destination.Class)
	switch fs := in.Destination.Features; {
	case fs == nil:
		d.features.Value = ast.Null{} // as encoding/json writes a nil slice
	case len(fs) == 0:
		d.features.Value = emptyArray
	default:
		ts := make([]*ast.Term, len(fs))
		for i, f := range fs {
			ts[i] = stringTerm(f)
		}
		d.features.Value = ast.NewArray(ts...)
	}
	d.dest.refresh()
	d.userAgent.set(in.UserAgent)
	d.time.Value = in.Time.term().Value
	d.dialog.set(in.Dialog)
	if in.Counters == nil {
		d.counters.Value = ast.Null{}
	} else {
		d.inProgress.set(in.Counters.CallsInProgress)
		d.lastMinute.set(in.Counters.CallsLastMinute)
		d.countersObj.refresh()
		d.counters.Value = d.countersObj.obj
	}
	d.root.refresh()
	return d.root.obj
}
