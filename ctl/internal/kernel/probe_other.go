//go:build !linux

package kernel

// Probe reports every feature missing: capture needs Linux.
func Probe() Result {
	r := Result{Failures: map[string]string{}}
	for _, f := range Features {
		r.Missing = append(r.Missing, f.Name)
		r.Failures[f.Name] = "not Linux"
	}
	return r
}
