package waypointxds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// FaultAnnotation is our extension for fault injection: Gateway API has no
// fault filter (Istio offers it only in VirtualService). Its JSON value
// applies to every rule of the HTTPRoute or GRPCRoute it is set on:
//
//	ambient.dev/fault: '{"delay":{"fixedDelay":"2s","percentage":50},"abort":{"httpStatus":503,"percentage":10}}'
//
// percentage is a float in [0,100] (default 100).
const FaultAnnotation = "ambient.dev/fault"

type faultSpec struct {
	Delay *struct {
		FixedDelay gatewayv1.Duration `json:"fixedDelay"`
		Percentage *float64           `json:"percentage"`
	} `json:"delay"`
	Abort *struct {
		HTTPStatus uint32   `json:"httpStatus"`
		Percentage *float64 `json:"percentage"`
	} `json:"abort"`
}

// parseFault reads the fault annotation; "" means no fault.
func parseFault(v string) (*faultv3.HTTPFault, error) {
	if v == "" {
		return nil, nil
	}
	var fs faultSpec
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fs); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", FaultAnnotation, err)
	}
	f := &faultv3.HTTPFault{}
	if d := fs.Delay; d != nil {
		dur, err := parseDuration(d.FixedDelay)
		if err != nil || dur == 0 {
			return nil, fmt.Errorf("annotation %s: delay.fixedDelay %q must be a positive duration", FaultAnnotation, d.FixedDelay)
		}
		pct, err := percent(d.Percentage)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: delay.%w", FaultAnnotation, err)
		}
		f.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(dur)},
			Percentage:         pct,
		}
	}
	if a := fs.Abort; a != nil {
		if a.HTTPStatus < 200 || a.HTTPStatus > 599 {
			return nil, fmt.Errorf("annotation %s: abort.httpStatus %d must be in [200,599]", FaultAnnotation, a.HTTPStatus)
		}
		pct, err := percent(a.Percentage)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: abort.%w", FaultAnnotation, err)
		}
		f.Abort = &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: a.HTTPStatus}, Percentage: pct}
	}
	if f.Delay == nil && f.Abort == nil {
		return nil, fmt.Errorf("annotation %s: set delay and/or abort", FaultAnnotation)
	}
	return f, nil
}

// percent converts a 0-100 float into a per-million fraction.
func percent(p *float64) (*typev3.FractionalPercent, error) {
	v := 100.0
	if p != nil {
		v = *p
	}
	if v < 0 || v > 100 || math.IsNaN(v) {
		return nil, fmt.Errorf("percentage %v must be in [0,100]", v)
	}
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(v * 10000)), Denominator: typev3.FractionalPercent_MILLION}, nil
}
