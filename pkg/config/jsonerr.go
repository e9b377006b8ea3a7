package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The standard decoder says `json: unknown field "publc_key"` and nothing
// about where. describeJSONError walks the file again the way the decoder
// walked it, against Config's type, to find the key or value it refused,
// and says where it is (line, column, JSON path such as peers[0].publc_key)
// and what to write instead.

// exampleHint ends messages about the file as a whole.
const exampleHint = "rootfs/etc/peerline/peerlined.json in the peerline source is an example, and rootfs/etc/peerline/README.md explains every key"

// describeJSONError turns an error of the strict decoder on b into one that
// says where the problem is and how to fix it.
func describeJSONError(b []byte, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the file is empty; write the config as one JSON object, {...}: %s", exampleHint)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: the file ends inside the JSON; is a closing } or ] missing?", position(b, int64(len(b))))
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Offset is just past the character the decoder choked on.
		return fmt.Errorf("%s: %w", position(b, syn.Offset-1), err)
	}
	if p := locate(b, reflect.TypeFor[Config]()); p != nil {
		return p.error(b)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("%s: %q must be %s", position(b, typ.Offset), typ.Field, describeType(typ.Type))
	}
	return err
}

// position is "line L, column C" of offset off in b; columns count
// characters from 1.
func position(b []byte, off int64) string {
	off = min(max(off, 0), int64(len(b)))
	line := bytes.Count(b[:off], []byte("\n")) + 1
	col := utf8.RuneCount(b[bytes.LastIndexByte(b[:off], '\n')+1:off]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// jsonProblem is a key or value the strict decoder refuses.
type jsonProblem struct {
	off  int64  // where the key or value starts in the file
	path string // its JSON path, e.g. peers[0].public_key
	msg  string // what is wrong and what to write instead
}

func (p *jsonProblem) error(b []byte) error {
	where := p.path
	if who := owner(b, p.path); who != "" {
		where += " (" + who + ")"
	}
	msg := p.msg
	if h := valueHint(p.path); h != "" {
		msg += "; " + h
	}
	return fmt.Errorf("%s: %s: %s", position(b, p.off), where, msg)
}

// owner names the peer or rendezvous server a path lies in, by the name or
// address written there, so a message says whose key is wrong.
func owner(b []byte, path string) string {
	var field string
	switch {
	case strings.HasPrefix(path, "peers["):
		field = "name"
	case strings.HasPrefix(path, "rendezvous["):
		field = "address"
	default:
		return ""
	}
	list, rest, _ := strings.Cut(path, "[")
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ']')])
	if err != nil {
		return ""
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(b, &doc) != nil {
		return ""
	}
	var elems []map[string]json.RawMessage
	if json.Unmarshal(doc[list], &elems) != nil || n >= len(elems) {
		return ""
	}
	var s string
	if json.Unmarshal(elems[n][field], &s) != nil || s == "" {
		return ""
	}
	if field == "name" {
		return "peer " + s
	}
	return "server " + s
}

// valueHint says where a value comes from, for the fields people copy from
// another machine.
func valueHint(path string) string {
	switch {
	case strings.HasPrefix(path, "peers[") && strings.HasSuffix(path, ".public_key"):
		return "it is what `peerlined -public-key` prints on the peer"
	case strings.HasPrefix(path, "rendezvous[") && strings.HasSuffix(path, ".key"):
		return "it is what `rendezvousd -public-key` prints on the server"
	}
	return ""
}

// locate walks b as json.Decoder with DisallowUnknownFields decodes it into
// a value of type t and returns the first key or value it refuses: a key
// the struct does not have, a value of the wrong kind, a string its
// UnmarshalText rejects. It returns nil if it finds none (b is then refused
// for a reason it does not know, and the decoder's message stands).
func locate(b []byte, t reflect.Type) *jsonProblem {
	w := &walker{b: b, dec: json.NewDecoder(bytes.NewReader(b))}
	w.dec.UseNumber()
	p, _ := w.value("", t)
	return p
}

type walker struct {
	b   []byte
	dec *json.Decoder
}

// next is the offset of the next token: the decoder's offset, past the
// blanks, commas and colons it has not consumed yet.
func (w *walker) next() int64 {
	off := w.dec.InputOffset()
	for off < int64(len(w.b)) && strings.IndexByte(" \t\r\n,:", w.b[off]) >= 0 {
		off++
	}
	return off
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// value reads one value at path that decodes into t (nil: anything goes).
// A non-nil error means the JSON itself is broken, which the decoder has
// reported already.
func (w *walker) value(path string, t reflect.Type) (*jsonProblem, error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	off := w.next()
	tok, err := w.dec.Token()
	if err != nil {
		return nil, err
	}
	text := t != nil && reflect.PointerTo(t).Implements(textUnmarshaler)
	if d, ok := tok.(json.Delim); ok {
		if text {
			return &jsonProblem{off, path, "must be " + describeType(reflect.TypeFor[string]())}, nil
		}
		if d == '[' {
			return w.array(path, off, t)
		}
		return w.object(path, off, t)
	}
	if t == nil || tok == nil { // null leaves any field as it is
		return nil, nil
	}
	if text {
		s, ok := tok.(string)
		if !ok {
			return &jsonProblem{off, path, fmt.Sprintf("%s must be %s", tokenString(tok), describeType(reflect.TypeFor[string]()))}, nil
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return &jsonProblem{off, path, err.Error()}, nil
		}
		return nil, nil
	}
	ok := false
	switch v := tok.(type) {
	case string:
		ok = t.Kind() == reflect.String
	case bool:
		ok = t.Kind() == reflect.Bool
	case json.Number:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			_, err := strconv.ParseInt(v.String(), 10, t.Bits())
			ok = err == nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			_, err := strconv.ParseUint(v.String(), 10, t.Bits())
			ok = err == nil
		case reflect.Float32, reflect.Float64:
			ok = true
		}
	}
	if !ok && t.Kind() != reflect.Interface {
		return &jsonProblem{off, path, fmt.Sprintf("%s must be %s", tokenString(tok), describeType(t))}, nil
	}
	return nil, nil
}

func (w *walker) array(path string, off int64, t reflect.Type) (*jsonProblem, error) {
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			elem = t.Elem()
		case reflect.Interface:
		default:
			return &jsonProblem{off, path, "must be " + describeType(t) + ", not a list"}, nil
		}
	}
	for i := 0; w.dec.More(); i++ {
		if p, err := w.value(fmt.Sprintf("%s[%d]", path, i), elem); p != nil || err != nil {
			return p, err
		}
	}
	_, err := w.dec.Token()
	return nil, err
}

func (w *walker) object(path string, off int64, t reflect.Type) (*jsonProblem, error) {
	var fields map[string]reflect.Type
	var names []string
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields, names = jsonFields(t)
		case reflect.Map, reflect.Interface:
		default:
			return &jsonProblem{off, path, "must be " + describeType(t) + ", not an object"}, nil
		}
	}
	for w.dec.More() {
		koff := w.next()
		tok, err := w.dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		child := key
		if path != "" {
			child = path + "." + key
		}
		var ft reflect.Type
		switch {
		case fields != nil:
			var ok bool
			if ft, ok = lookupField(fields, key); !ok {
				return &jsonProblem{koff, child, unknownKey(key, names)}, nil
			}
		case t != nil && t.Kind() == reflect.Map:
			ft = t.Elem()
		}
		if p, err := w.value(child, ft); p != nil || err != nil {
			return p, err
		}
	}
	_, err := w.dec.Token()
	return nil, err
}

// jsonFields are the keys of struct type t as encoding/json names them,
// and the names in the struct's order.
func jsonFields(t reflect.Type) (map[string]reflect.Type, []string) {
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	return fields, names
}

// lookupField matches a key as encoding/json does: exactly, or else
// without regard to case.
func lookupField(fields map[string]reflect.Type, key string) (reflect.Type, bool) {
	if ft, ok := fields[key]; ok {
		return ft, true
	}
	for name, ft := range fields {
		if strings.EqualFold(name, key) {
			return ft, true
		}
	}
	return nil, false
}

// unknownKey says a key is not one of names, and which one was likely
// meant: the nearest by edit distance, if near enough to be a typo, else
// the whole list.
func unknownKey(key string, names []string) string {
	best, bestD := "", -1
	for _, n := range names {
		if d := EditDistance(strings.ToLower(key), n); bestD < 0 || d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" && bestD <= max(2, len(key)/3) {
		return fmt.Sprintf("unknown key; did you mean %q?", best)
	}
	return "unknown key; the keys here are " + strings.Join(names, ", ")
}

// EditDistance is the Levenshtein distance between a and b, in bytes: how
// config and the boot file (pkg/bootconfig) tell a typo from a wrong key.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeType says in words what JSON a Go type takes.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return `a string in double quotes, "..."`
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list, [...]"
	case reflect.Struct, reflect.Map:
		return "an object, {...}"
	}
	return t.String()
}

// tokenString shows a scalar token as it was written.
func tokenString(tok json.Token) string {
	switch v := tok.(type) {
	case string:
		return strconv.Quote(v)
	case json.Number:
		return v.String()
	}
	return fmt.Sprint(tok)
}
