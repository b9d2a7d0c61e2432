package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/pampa-go/pampa"
)

// ActionResult is what an action answers, as JSON.
type ActionResult struct {
	Done string `json:"done"` // what was done, in words
	Keys []any  `json:"keys"` // the tasks it applied to; [] for none, and for job and worker actions
}

// actionInput is what an action is asked: task keys, or all of them (that
// match Error, a part of their error text, when it is set).
type actionInput struct {
	Keys  []any  `json:"keys"`
	All   bool   `json:"all"`
	Error string `json:"error"`
}

// action is one POST endpoint. do runs it for the job (or worker) the path
// names; it calls the Client, as the CLI does.
type action struct {
	path string
	do   func(ctx context.Context, r *http.Request, in actionInput) (ActionResult, error)
}

func (s *Server) actions() []action {
	c := s.client
	return []action{
		{"/api/jobs/{job}/pause", s.onJob(func(ctx context.Context, job string, _ actionInput) (ActionResult, error) {
			return ActionResult{Done: "job " + job + " paused"}, c.Pause(ctx, job)
		})},
		{"/api/jobs/{job}/resume", s.onJob(func(ctx context.Context, job string, _ actionInput) (ActionResult, error) {
			return ActionResult{Done: "job " + job + " resumed"}, c.Resume(ctx, job)
		})},
		{"/api/jobs/{job}/retry", s.onJob(func(ctx context.Context, job string, in actionInput) (ActionResult, error) {
			var keys []any
			var err error
			switch {
			case len(in.Keys) > 0:
				keys, err = c.Retry(ctx, job, in.Keys...)
			case in.All && in.Error != "":
				keys, err = s.retryMatching(ctx, job, in.Error)
			case in.All:
				keys, err = c.Retry(ctx, job)
			default:
				return ActionResult{}, badRequestf("name the tasks to retry (keys), or ask for all of them")
			}
			return ActionResult{Done: fmt.Sprintf("job %s: %d task(s) retried", job, len(keys)), Keys: keys}, err
		})},
		{"/api/jobs/{job}/discard", s.onJob(func(ctx context.Context, job string, in actionInput) (ActionResult, error) {
			if len(in.Keys) == 0 {
				return ActionResult{}, badRequestf("name the tasks to discard (keys)")
			}
			keys, err := c.Discard(ctx, job, in.Keys...)
			return ActionResult{Done: fmt.Sprintf("job %s: %d task(s) failed for good", job, len(keys)), Keys: keys}, err
		})},
		{"/api/jobs/{job}/cancel", s.onJob(func(ctx context.Context, job string, in actionInput) (ActionResult, error) {
			if len(in.Keys) == 0 {
				return ActionResult{}, badRequestf("name the tasks to cancel (keys)")
			}
			keys, err := c.Cancel(ctx, job, in.Keys...)
			return ActionResult{Done: fmt.Sprintf("job %s: %d task(s) cancelled", job, len(keys)), Keys: keys}, err
		})},
		{"/api/workers/{worker}/drain", func(ctx context.Context, r *http.Request, _ actionInput) (ActionResult, error) {
			id := r.PathValue("worker")
			return ActionResult{Done: "worker " + id + " drained: it gets no new tasks"}, c.Drain(ctx, id)
		}},
		{"/api/workers/{worker}/undrain", func(ctx context.Context, r *http.Request, _ actionInput) (ActionResult, error) {
			id := r.PathValue("worker")
			return ActionResult{Done: "worker " + id + " undrained"}, c.Undrain(ctx, id)
		}},
	}
}

// retryBatch is how many failed tasks retryMatching re-drives at a time.
const retryBatch = 500

// retryMatching retries every task of job failed for good whose error
// text holds text, a page of keys at a time: the same listing and Retry
// as one by one, without holding every key at once.
func (s *Server) retryMatching(ctx context.Context, job, text string) ([]any, error) {
	var done []any
	after := ""
	for {
		page, err := s.client.Tasks(ctx, job, pampa.TaskFilter{State: pampa.StateFailed, ErrorContains: text, After: after, Limit: retryBatch})
		if err != nil || len(page) == 0 {
			return done, err
		}
		keys := make([]any, len(page))
		for i, t := range page {
			keys[i] = t.Key
		}
		retried, err := s.client.Retry(ctx, job, keys...)
		done = append(done, retried...)
		if err != nil || len(page) < retryBatch {
			return done, err
		}
		after = fmt.Sprint(keys[len(keys)-1])
	}
}

// onJob checks that the path's job exists before fn.
func (s *Server) onJob(fn func(ctx context.Context, job string, in actionInput) (ActionResult, error)) func(context.Context, *http.Request, actionInput) (ActionResult, error) {
	return func(ctx context.Context, r *http.Request, in actionInput) (ActionResult, error) {
		job := r.PathValue("job")
		if s.client.Cluster().Job(job) == nil {
			return ActionResult{}, notFoundf("no job is named %q", job)
		}
		if len(in.Keys) > 0 && (in.All || in.Error != "") {
			return ActionResult{}, badRequestf("name the tasks (keys), or ask for all of them (all, error), not both")
		}
		for i, k := range in.Keys { // as the key column needs: 7 and "7" alike
			key, err := s.client.ParseKey(ctx, job, fmt.Sprint(k))
			if errors.Is(err, pampa.ErrBadKey) {
				return ActionResult{}, badRequest{err.Error()}
			}
			if err != nil {
				return ActionResult{}, err
			}
			in.Keys[i] = key
		}
		return fn(ctx, job, in)
	}
}

// perform runs an action and answers: JSON to a JSON request, otherwise a
// redirect back to the form's page with the outcome shown there.
func (s *Server) perform(a action) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		in, form, err := readInput(r)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		res, err := a.do(r.Context(), r, in)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		if res.Keys == nil {
			res.Keys = []any{}
		}
		s.log.Info("dashboard: action", "user", p.name, "path", r.URL.Path, "done", res.Done)
		if !form {
			writeJSON(w, http.StatusOK, res)
			return
		}
		setFlash(w, res.Done)
		http.Redirect(w, r, localPath(r.PostFormValue("back")), http.StatusSeeOther)
	}
}

// maxBody bounds an action's request body.
const maxBody = 1 << 20

// readInput reads an action's keys from a form of the pages (fields
// "key", repeated, "all" and "error"), or else from a JSON body, which may
// be empty. form tells which it was.
func readInput(r *http.Request) (in actionInput, form bool, err error) {
	r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
	if isForm(r) {
		if err := r.ParseForm(); err != nil {
			return in, true, badRequestf("the form cannot be read: %v", err)
		}
		for _, k := range r.PostForm["key"] {
			in.Keys = append(in.Keys, k) // as text: onJob converts it as the key column needs
		}
		in.All = r.PostFormValue("all") == "1"
		in.Error = r.PostFormValue("error")
		return in, true, nil
	}
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	dec.DisallowUnknownFields() // a misspelt "error" must not widen "all" to every task
	if err := dec.Decode(&in); err != nil && err != io.EOF {
		return in, false, badRequestf("the request body is not the JSON object expected: %v", err)
	}
	for i, k := range in.Keys {
		switch v := k.(type) {
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return in, false, badRequestf("key %s is not an integer or a string", v)
			}
			in.Keys[i] = n
		case string:
		default:
			return in, false, badRequestf("key %v is not an integer or a string", k)
		}
	}
	return in, false, nil
}

// isForm: the request is a form of the pages.
func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

const flashCookie = "pampa_flash"

// setFlash leaves a message for the next page the browser shows.
func setFlash(w http.ResponseWriter, msg string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: "/", MaxAge: 60,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// takeFlash reads the message setFlash left, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	msg, err := url.QueryUnescape(c.Value)
	if err != nil {
		return ""
	}
	return msg
}
