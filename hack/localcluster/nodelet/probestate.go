package nodelet

// ProbeState counts consecutive probe outcomes; Result flips only when a
// threshold is reached, as the kubelet's prober does.
type ProbeState struct {
	Result    bool
	Successes int32 // consecutive
	Failures  int32 // consecutive
}

// Observe records one probe outcome with the probe's successThreshold and
// failureThreshold (values < 1 mean 1).
func (s ProbeState) Observe(ok bool, successThreshold, failureThreshold int32) ProbeState {
	successThreshold = max(successThreshold, 1)
	failureThreshold = max(failureThreshold, 1)
	if ok {
		s.Failures = 0
		s.Successes++
		if s.Successes >= successThreshold {
			s.Result = true
		}
	} else {
		s.Successes = 0
		s.Failures++
		if s.Failures >= failureThreshold {
			s.Result = false
		}
	}
	return s
}
