package dhcpd

// New MACs may take lines at newMACRate per second with bursts of
// newMACBurst: a switch full of phones powering up together is served in a
// few seconds, while a flood of random MACs cannot make the server do
// unbounded work (each new MAC costs an EnsureLine). Known MACs are never
// limited.
const (
	newMACRate  = 5
	newMACBurst = 10
)
