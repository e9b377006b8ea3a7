package rendezvous

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var inviteID = [InviteIDLen]byte{0xa1, 0xb2, 0xc3, 15: 0xff}

func TestInviteGet(t *testing.T) {
	b := AppendInviteGet(nil, inviteID, nil)
	if len(b) != InviteGetLen {
		t.Fatalf("InviteGet is %d bytes, want %d", len(b), InviteGetLen)
	}
	if id, join, err := ParseInviteGet(b); err != nil || id != inviteID || join != nil {
		t.Fatalf("ParseInviteGet(AppendInviteGet(%x)) = %x, %x, %v", inviteID, id, join, err)
	}
	box := bytes.Repeat([]byte{0xbb}, MaxInviteJoin)
	withJoin := AppendInviteGet(nil, inviteID, box)
	if id, join, err := ParseInviteGet(withJoin); len(withJoin) != InviteGetLen || err != nil || id != inviteID || !bytes.Equal(join, box) {
		t.Fatalf("InviteGet with a full join box: %d bytes, %x, %d-byte box, %v", len(withJoin), id, len(join), err)
	}
	if _, join, _ := ParseInviteGet(AppendInviteGet(nil, inviteID, append(box, 1))); join != nil {
		t.Error("an oversized join box was sent")
	}
	withType := func(typ Type) []byte { c := bytes.Clone(b); c[2] = byte(typ); return c }
	nonZeroPad := bytes.Clone(b)
	nonZeroPad[len(b)-1] = 1
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"one byte short", b[:len(b)-1], ErrMalformed},
		{"one byte long", append(bytes.Clone(b), 0), ErrMalformed},
		{"id only", b[:HeaderLen+InviteIDLen], ErrMalformed},
		{"header only", b[:HeaderLen], ErrMalformed},
		{"empty", nil, ErrShort},
		{"non-zero padding", nonZeroPad, ErrMalformed},
		{"invite type", withType(TypeInvite), ErrType},
		{"register type", withType(TypeRegister), ErrType},
		{"not rendezvous", append([]byte{1}, b[1:]...), ErrMagic},
	}
	for _, tt := range tests {
		if _, _, err := ParseInviteGet(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseInviteGet(%d bytes) = %v, want %v", tt.name, len(tt.b), err, tt.want)
		}
	}
}

func TestInvite(t *testing.T) {
	full := bytes.Repeat([]byte{0x5a}, MaxInviteBlob)
	for _, blob := range [][]byte{nil, []byte("sealed invite"), full} {
		b := AppendInvite(nil, inviteID, blob)
		if len(b) > InviteGetLen {
			t.Errorf("Invite with a %d-byte blob is %d bytes, longer than an InviteGet (%d)", len(blob), len(b), InviteGetLen)
		}
		id, got, err := ParseInvite(b)
		if err != nil || id != inviteID || !bytes.Equal(got, blob) || (len(blob) == 0) != (got == nil) {
			t.Errorf("ParseInvite(AppendInvite(%d bytes)) = %x, %d bytes (nil %v), %v", len(blob), id, len(got), got == nil, err)
		}
		for n := range len(b) {
			if _, _, err := ParseInvite(b[:n]); err == nil {
				t.Errorf("ParseInvite of %d of %d bytes succeeded", n, len(b))
			}
		}
		if _, _, err := ParseInvite(append(bytes.Clone(b), 0)); err == nil {
			t.Errorf("ParseInvite with a trailing byte after a %d-byte blob succeeded", len(blob))
		}
	}
	if b := AppendInvite(nil, inviteID, make([]byte, MaxInviteBlob+1)); len(b) != HeaderLen+InviteIDLen+2 {
		t.Errorf("AppendInvite with an oversized blob made %d bytes; want the empty answer", len(b))
	}
	long := append(AppendInvite(nil, inviteID, full), 0)
	long[HeaderLen+InviteIDLen+1]++ // length MaxInviteBlob+1, and the bytes to match
	if _, _, err := ParseInvite(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("ParseInvite of a %d-byte blob = %v, want ErrTooLong", MaxInviteBlob+1, err)
	}
	if _, _, err := ParseInvite(AppendInviteGet(nil, inviteID, nil)); !errors.Is(err, ErrType) {
		t.Errorf("ParseInvite(InviteGet) = %v, want ErrType", err)
	}
}

func TestInviteTypes(t *testing.T) {
	tests := []struct {
		t                        Type
		name                     string
		sealed, request, unknown bool
	}{
		{TypeInvitePut, "invite-put", true, true, false},
		{TypeInvitePutReply, "invite-put-reply", true, false, false},
		{TypeInviteGet, "invite-get", false, false, false},
		{TypeInvite, "invite", false, false, false},
	}
	for _, tt := range tests {
		if tt.t.String() != tt.name || tt.t.Sealed() != tt.sealed || tt.t.Request() != tt.request {
			t.Errorf("%#x: String, Sealed, Request = %s, %v, %v; want %s, %v, %v", uint8(tt.t), tt.t, tt.t.Sealed(), tt.t.Request(), tt.name, tt.sealed, tt.request)
		}
		if _, err := ParseHeader(AppendHeader(nil, tt.t)); err != nil {
			t.Errorf("ParseHeader(%s) = %v", tt.t, err)
		}
	}
}

func TestInvitePutBody(t *testing.T) {
	// The zero time and times before 1970 travel as 0 and come back zero.
	for _, exp := range []time.Time{{}, time.Unix(-5, 0)} {
		m, err := ParseBody(TypeInvitePut, InvitePut{ID: inviteID, Expires: exp}.Append(nil))
		if err != nil || !m.(InvitePut).Expires.IsZero() {
			t.Errorf("InvitePut with expiry %v = %+v, %v; want the zero time", exp, m, err)
		}
	}
	tooLong := InvitePut{ID: inviteID, Expires: time.Unix(1, 0), Blob: make([]byte, MaxInviteBlob+1)}.Append(nil)
	farFuture := InvitePut{ID: inviteID}.Append(nil)
	farFuture[InviteIDLen] = 0x80 // negative as int64
	stored2 := InvitePutReply{ID: inviteID, Stored: true}.Append(nil)
	stored2[len(stored2)-1] = 2
	tests := []struct {
		name string
		t    Type
		b    []byte
		want error
	}{
		{"blob too long", TypeInvitePut, tooLong, ErrTooLong},
		{"expiry out of range", TypeInvitePut, farFuture, ErrMalformed},
		{"stored is 2", TypeInvitePutReply, stored2, ErrMalformed},
		{"put without blob length", TypeInvitePut, make([]byte, InviteIDLen+8), ErrShort},
	}
	for _, tt := range tests {
		if _, err := ParseBody(tt.t, tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseBody = %v, want %v", tt.name, err, tt.want)
		}
	}
	// A full InvitePut fits one datagram sealed.
	if n := EnvelopeOverhead + len(InvitePut{Blob: make([]byte, MaxInviteBlob)}.Append(nil)); n > MaxPacket {
		t.Errorf("largest InvitePut is %d bytes sealed, more than %d", n, MaxPacket)
	}
}
