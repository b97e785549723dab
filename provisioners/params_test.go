package provisioners

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

// A refused parameter is a typed error naming the parameter, which the
// broker turns into 400 InvalidParameters (or 422 UnsupportedChange) at
// its edge without reading the message.
func TestParameterErrorsNameTheParameter(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct {
		err   error
		field string
	}{
		{AtMost("parameters.resources.cpu", "8", "2"), "parameters.resources.cpu"},
		{AtMost("parameters.resources.memory", "lots", "4Gi"), "parameters.resources.memory"},
		{DecodeParams(map[string]any{"replicas": "two"}, &struct {
			Replicas int `json:"replicas"`
		}{}), "parameters"},
		{fmtWrapped(ParamErrorf("parameters.storage_gb", "volumes can grow but not shrink")), "parameters.storage_gb"},
	} {
		var pe *ParameterError
		g.Expect(errors.As(tc.err, &pe)).To(BeTrue(), "%v", tc.err)
		g.Expect(pe.Field).To(Equal(tc.field))
		g.Expect(tc.err.Error()).To(ContainSubstring(tc.field + ": "))
	}
	g.Expect(AtMost("parameters.resources.cpu", "1", "2")).To(Succeed())
}

func fmtWrapped(err error) error { return errors.Join(errors.New("while checking the update"), err) }
