// Package charts holds the Helm charts that deploy Strata and helpers that render them.
package charts
