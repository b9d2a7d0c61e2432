package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/visible"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// view is what every page template gets: the page's data and the frame's.
type view struct {
	Title   string
	Page    string // nav entry to mark
	Refresh int    // seconds between live refreshes; 0: none
	Data    any

	User    string
	Admin   bool
	Auth    bool // someone must sign in: show who and a sign-out button
	CSRF    string
	Flash   string
	Path    string // the page's own path and query, for forms to come back to
	Version string
}

type errorPage struct {
	Status  int
	Text    string
	Message string
}

type loginView struct {
	Next  string
	Error string
}

// parseTemplates builds each page as the frame (layout.html, with the
// pieces pages share in partials.html) around the page's own file, and the
// standalone error and login pages.
func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"show":     visible.Escape,
		"short":    short,
		"num":      num,
		"rate":     rateText,
		"seconds":  secondsText,
		"duration": durationText,
		"path":     url.PathEscape,
		"query":    url.QueryEscape,
		"chart":    chartOf,
		"state":    workerState,
		"percent":  percent,
		"now":      func() string { return time.Now().UTC().Format("15:04:05 UTC") },
		// pair gives a sub-template the page's view beside one item.
		"pair": func(v view, item any) map[string]any { return map[string]any{"View": v, "Job": item} },
		"rows": func(v view, job string, l TaskList, sel string, row ...string) map[string]any {
			m := map[string]any{"View": v, "Job": job, "List": l, "Select": sel, "Row": ""}
			if len(row) == 2 {
				m["Row"], m["Label"] = row[0], row[1]
			}
			return m
		},
		"filter": func(job string, l TaskList) map[string]any {
			return map[string]any{"Action": "/jobs/" + url.PathEscape(job), "List": l, "States": taskStates}
		},
		// select names the form of a list's checkboxes or buttons, for admins.
		"select": func(admin bool, form string) string {
			if admin {
				return form
			}
			return ""
		},
		"age":       ageText,
		"when":      whenText,
		"pageAfter": pageAfter,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, file := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(file, "templates/"), ".html")
		var t *template.Template
		switch name {
		case "layout", "partials":
			continue
		case "error", "login":
			t, err = template.New(name+".html").Funcs(funcs).ParseFS(templateFiles, file)
		default:
			if t, err = layout.Clone(); err == nil {
				t, err = t.ParseFS(templateFiles, file)
			}
		}
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page; it renders into a buffer first, so that a
// template error becomes a clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, v view, p principal) {
	v.User, v.Admin, v.Auth, v.CSRF = p.name, p.admin() && !s.opts.ReadOnly, s.auth.enabled(), p.csrf
	v.Path, v.Version = r.URL.RequestURI(), s.opts.Version
	v.Flash = takeFlash(w, r)
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, v); err != nil {
		s.failInternal(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = b.WriteTo(w)
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, next, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = s.pages["login"].Execute(w, loginView{Next: next, Error: msg})
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFiles, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		files.ServeHTTP(w, r)
	})
}

// short cuts s, made visible, to n characters.
func short(n int, s string) string {
	s = visible.Escape(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// num writes an integer with thin spaces between thousands.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune('\u202f')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func rateText(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	switch {
	case *v >= 100:
		return fmt.Sprintf("%.0f%s", *v, unit)
	case *v >= 10:
		return fmt.Sprintf("%.1f%s", *v, unit)
	}
	return fmt.Sprintf("%.2f%s", *v, unit)
}

// secondsText writes a number of seconds as a short duration.
func secondsText(v float64) string {
	return durationText(time.Duration(v * float64(time.Second)))
}

func durationText(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// chartView is a chart of a series drawn as an SVG polyline; the template
// writes it with numbers only.
type chartView struct {
	Points string // "x,y x,y ..."
	Max    string // the top of the scale, in words
	Last   string
	Empty  bool
}

const chartW, chartH = 600.0, 120.0

func chartOf(series []Point) chartView {
	if len(series) < 2 {
		return chartView{Empty: true}
	}
	top := 0.0
	for _, p := range series {
		top = math.Max(top, p.Rate)
	}
	if top == 0 {
		top = 1
	}
	t0, t1 := series[0].At, series[len(series)-1].At
	span := t1.Sub(t0).Seconds()
	var b strings.Builder
	for i, p := range series {
		x := chartW * p.At.Sub(t0).Seconds() / span
		y := chartH - chartH*p.Rate/top
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	last := series[len(series)-1].Rate
	return chartView{Points: b.String(), Max: rateText(&top, "/s"), Last: rateText(&last, "/s")}
}

func percent(v float64) string {
	if v < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", v)
}

// ageText writes a number of seconds, if known, as a short duration.
func ageText(v *float64) string {
	if v == nil {
		return "—"
	}
	return secondsText(max(*v, 0))
}

// whenText writes a time as how long ago it was.
func whenText(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return durationText(max(time.Since(*t), 0)) + " ago"
}

// pageAfter is the page's own address with after set to the next page's.
func pageAfter(path, after string) string {
	u, err := url.Parse(path)
	if err != nil {
		return "?after=" + url.QueryEscape(after)
	}
	q := u.Query()
	q.Set("after", after)
	u.RawQuery = q.Encode()
	return u.RequestURI()
}
