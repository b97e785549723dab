package load

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"time"
)

// WriteHistogramHTML writes the latency histogram as one self-contained
// HTML page: an inline SVG drawn here (bars per latency bucket on a log
// scale, lines at p50/p95/p99) and the summary. No script, no stylesheet
// or font from anywhere: it opens offline, and it is well-formed XML, so a
// test can check it with encoding/xml.
func WriteHistogramHTML(w io.Writer, r *Result) error {
	const (
		width, height         = 900, 380
		left, right, top, bot = 70, 20, 20, 50
		plotW, plotH          = width - left - right, height - top - bot
	)
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	esc := html.EscapeString
	p("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	p("<title>strata-load: %s</title>\n", esc(r.Workload))
	p("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td{padding:2px 12px;border-bottom:1px solid #ddd}td.v{text-align:right;font-variant-numeric:tabular-nums}</style>\n</head>\n<body>\n")
	p("<h1>Latency histogram</h1>\n<p>%s: %d %s in %.2f s, %.1f %s/s, %d errors.</p>\n",
		esc(r.Workload), r.Ops, esc(r.Unit), r.Elapsed.Seconds(), r.Throughput(), esc(r.Unit), r.Errors)

	buckets := r.Latency.Buckets()
	p("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"latency histogram\">\n", width, height, width, height)
	p("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n", left, top, plotW, plotH)
	if len(buckets) > 0 {
		lo := math.Log10(float64(buckets[0].Low.Nanoseconds() + 1))
		hi := math.Log10(float64(buckets[len(buckets)-1].High.Nanoseconds() + 1))
		// At least one decade across, so a narrow distribution is not
		// stretched into one wide bar.
		if hi-lo < 1 {
			mid := (hi + lo) / 2
			lo, hi = mid-0.5, mid+0.5
		}
		x := func(d time.Duration) float64 {
			return left + (math.Log10(float64(d.Nanoseconds()+1))-lo)/(hi-lo)*plotW
		}
		// A bar's height is its count over its width on the log axis, so
		// that areas compare: buckets double in width at each power of two
		// of nanoseconds, and raw counts would jump there.
		density := func(bk Bucket) float64 { return float64(bk.Count) / (x(bk.High) - x(bk.Low)) }
		maxDensity := 0.0
		for _, bk := range buckets {
			maxDensity = max(maxDensity, density(bk))
		}
		for _, bk := range buckets {
			x0, x1 := x(bk.Low), x(bk.High)
			h := density(bk) / maxDensity * plotH
			p("<rect class=\"bucket\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#4878a8\"><title>%s – %s: %d</title></rect>\n",
				x0, top+plotH-h, math.Max(x1-x0, 0.5), h, fmtDur(bk.Low), fmtDur(bk.High), bk.Count)
		}
		// Axis ticks at 1, 2 and 5 of each decade.
		for e := math.Floor(lo); e <= math.Ceil(hi); e++ {
			for _, m := range []float64{1, 2, 5} {
				d := time.Duration(m * math.Pow(10, e))
				tx := x(d)
				if tx < left || tx > left+plotW {
					continue
				}
				p("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#999\"/>\n", tx, top+plotH, tx, top+plotH+5)
				p("<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", tx, top+plotH+18, fmtDur(d))
			}
		}
		for _, q := range []struct {
			name  string
			p     float64
			color string
		}{{"p50", 50, "#2a2"}, {"p95", 95, "#d80"}, {"p99", 99, "#c22"}} {
			d := r.Latency.Percentile(q.p)
			qx := x(d)
			p("<line class=\"percentile\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"4 3\"/>\n", qx, top, qx, top+plotH, q.color)
			p("<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"%s\">%s %s</text>\n", qx+3, top+12, q.color, q.name, fmtDur(d))
		}
	}
	p("<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">latency (log scale)</text>\n", left+plotW/2, height-8)
	p("<text x=\"15\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 15 %d)\">%s (bar area ∝ count)</text>\n", top+plotH/2, top+plotH/2, esc(r.Unit))
	p("</svg>\n")

	p("<h2>Summary</h2>\n<table>\n")
	var sum bytes.Buffer
	if err := r.WriteSummary(&sum); err != nil {
		return err
	}
	for line := range bytes.Lines(sum.Bytes()) {
		k, v := splitSummary(string(bytes.TrimRight(line, "\n")))
		p("<tr><td>%s</td><td class=\"v\">%s</td></tr>\n", esc(k), esc(v))
	}
	p("</table>\n</body>\n</html>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteHistogramFile writes the page to path.
func WriteHistogramFile(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteHistogramHTML(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// splitSummary splits a summary line at its column gap.
func splitSummary(line string) (string, string) {
	if i := bytes.Index([]byte(line), []byte("  ")); i >= 0 {
		return line[:i], string(bytes.TrimSpace([]byte(line[i:])))
	}
	return line, ""
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%gµs", float64(d.Nanoseconds()/10)/100)
	case d < time.Second:
		return fmt.Sprintf("%gms", float64(d.Microseconds()/10)/100)
	}
	return fmt.Sprintf("%gs", float64(d.Milliseconds()/10)/100)
}
