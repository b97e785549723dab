package broker

import (
	"errors"
	"net/http"

	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
)

// The OSB error bodies are {"error": "CamelCase", "description": "…"}; the
// descriptions reach end users, so they say what to change and never carry
// secrets.

func failure(status int, code, description string) error {
	b := apiresponses.NewFailureResponseBuilder(errors.New(description), status, code)
	if code != "" {
		b = b.WithErrorKey(code)
	}
	return b.Build()
}

func badRequest(description string) error {
	return failure(http.StatusBadRequest, "BadRequest", description)
}

func invalidParameters(err error) error {
	return failure(http.StatusBadRequest, "InvalidParameters", err.Error())
}

func notFound(description string) error {
	return failure(http.StatusNotFound, "NotFound", description)
}

func conflict(description string) error {
	return failure(http.StatusConflict, "Conflict", description)
}

func concurrencyError(description string) error {
	return failure(http.StatusUnprocessableEntity, "ConcurrencyError", description)
}

func asyncRequired() error {
	return failure(http.StatusUnprocessableEntity, "AsyncRequired",
		"This plan runs on Kubernetes operators and needs asynchronous operations: send accepts_incomplete=true and poll last_operation.")
}

func planChangeNotSupported(err error) error {
	return failure(http.StatusUnprocessableEntity, "PlanChangeNotSupported", err.Error())
}

func unprocessable(code string, err error) error {
	return failure(http.StatusUnprocessableEntity, code, err.Error())
}

// internal is a 500 whose description says what failed in words, never
// the API server's address (publicDescription).
func internal(description string) error {
	return failure(http.StatusInternalServerError, "InternalError", publicDescription(description))
}

// gone is the empty-bodied 410 of DELETE and last_operation.
var gone = apiresponses.ErrInstanceDoesNotExist

var bindingGone = apiresponses.ErrBindingDoesNotExist

// tenantError passes a refusal of the tenant on and makes anything else
// (the API server failing) an InternalError.
func tenantError(err error) error {
	var fr *apiresponses.FailureResponse
	if errors.As(err, &fr) {
		return err
	}
	return internal("could not create the Cloud Foundry space's namespace: " + err.Error())
}
