package load_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// checkHistogram parses the HTML page as XML and checks it has the plot:
// one bar per latency bucket and the percentile lines.
func checkHistogram(t testing.TB, path string, wantOps int64) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the histogram was not written: %v", err)
	}
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	var svgs, bars, percentiles int
	var barTitles []string
	inBarTitle := false
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("the histogram page is not well-formed: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			class := ""
			for _, a := range el.Attr {
				if a.Name.Local == "class" {
					class = a.Value
				}
			}
			switch {
			case el.Name.Local == "svg":
				svgs++
			case el.Name.Local == "rect" && class == "bucket":
				bars++
			case el.Name.Local == "line" && class == "percentile":
				percentiles++
			case el.Name.Local == "title" && bars > 0:
				inBarTitle = true
			}
		case xml.CharData:
			if inBarTitle {
				barTitles = append(barTitles, string(el))
				inBarTitle = false
			}
		}
	}
	if svgs != 1 || bars == 0 || percentiles != 3 {
		t.Fatalf("the histogram page has %d svg, %d bars, %d percentile lines; want 1, >0, 3", svgs, bars, percentiles)
	}
	// The bars' counts add up to the operations measured.
	var total int64
	for _, title := range barTitles {
		i := strings.LastIndex(title, ": ")
		n, err := strconv.ParseInt(title[i+2:], 10, 64)
		if err != nil {
			t.Fatalf("bar title %q: %v", title, err)
		}
		total += n
	}
	if total != wantOps {
		t.Fatalf("the histogram's bars count %d operations, the summary %d", total, wantOps)
	}
}
