package monitor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

// fakeSource is a Source over a Recorder, recording the actions it gets.
type fakeSource struct {
	rec  *Recorder
	acts []Action
}

func (f *fakeSource) Snapshot(ctx context.Context, q Query) (Status, error) {
	st := Status{Kind: "node", Name: "n1", Time: time.Now()}
	st.Jobs, st.JobsTotal = f.rec.Jobs(q, st.Time)
	st.JobsSeen = f.rec.Seen()
	return st, nil
}
func (f *fakeSource) Job(ctx context.Context, id int64) (JobDetail, error) { return f.rec.Job(ctx, id) }
func (f *fakeSource) Subscribe(ctx context.Context) <-chan struct{}        { return f.rec.Subscribe(ctx) }
func (f *fakeSource) Supported() []string                                  { return []string{ActCancel} }
func (f *fakeSource) Do(ctx context.Context, a Action) error {
	if _, _, ok := f.rec.Task(a.Job); !ok {
		return ErrNotFound
	}
	f.acts = append(f.acts, a)
	return nil
}

// TestRecorderRing checks that the recorder keeps the latest jobs only,
// newest first, still knows a running job that dropped out of the ring
// (and does not count it twice when it ends), and pages. (Filtering by
// status needs tasks of a real scheduler: cmd/drove's monitor test.)
func TestRecorderRing(t *testing.T) {
	r := NewRecorder(3)
	var tasks []*sched.Task
	for range 5 {
		tk := &sched.Task{}
		tasks = append(tasks, tk)
		r.Observe(sched.TaskEvent{Task: tk, State: sched.Running, Node: "a"}, "c")
	}
	// Jobs 2 to 4 end; job 0 and 1 dropped out while running.
	for _, tk := range tasks[2:] {
		r.Observe(sched.TaskEvent{Task: tk, State: sched.Finished, Node: "a"}, "c")
	}
	page, total := r.Jobs(Query{}, time.Now())
	var ids []int64
	for _, j := range page {
		ids = append(ids, j.ID)
	}
	if !slices.Equal(ids, []int64{5, 4, 3}) || total != 3 {
		t.Errorf("page ids %v total %d, want [5 4 3] 3", ids, total)
	}
	if _, _, ok := r.Task(1); !ok {
		t.Error("a running job that dropped out of the ring is forgotten: it could not be cancelled")
	}
	r.Observe(sched.TaskEvent{Task: tasks[0], State: sched.Cancelled}, "c")
	if _, _, ok := r.Task(1); ok {
		t.Error("a job out of the ring is still known after it ended")
	}
	if got := r.Seen(); got != 5 {
		t.Errorf("seen %d, want 5", got)
	}
	for _, tc := range []struct {
		q     Query
		ids   []int64
		total int
	}{
		{Query{Limit: 2}, []int64{5, 4}, 3},
		{Query{Offset: 2, Limit: 2}, []int64{3}, 3},
		{Query{Offset: 5}, nil, 3},
	} {
		page, total := r.Jobs(tc.q, time.Now())
		var ids []int64
		for _, j := range page {
			ids = append(ids, j.ID)
		}
		if !slices.Equal(ids, tc.ids) || total != tc.total {
			t.Errorf("%+v: ids %v total %d, want %v %d", tc.q, ids, total, tc.ids, tc.total)
		}
	}
}

// TestActionsCSRF checks that an action needs the page's token in its
// header, a JSON body and the page's own origin, and that a read-only
// monitor offers none.
func TestActionsCSRF(t *testing.T) {
	src := &fakeSource{rec: NewRecorder(0)}
	tk := &sched.Task{}
	src.rec.Observe(sched.TaskEvent{Task: tk, State: sched.Running}, "")
	h := New(Config{Source: src})
	srv := httptest.NewServer(h)
	defer srv.Close()

	var st Status
	resp, err := http.Get(srv.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st.CSRF == "" || !slices.Equal(st.Actions, []string{ActCancel}) {
		t.Fatalf("status: csrf %q actions %v", st.CSRF, st.Actions)
	}
	u, _ := url.Parse(srv.URL)
	for _, tc := range []struct {
		name, token, ctype, origin, body string
		want                             int
	}{
		{"ok", st.CSRF, "application/json", "http://" + u.Host, `{"action":"cancel","job":1}`, 200},
		{"no origin (not a browser)", st.CSRF, "application/json", "", `{"action":"cancel","job":1}`, 200},
		{"no token", "", "application/json", "", `{"action":"cancel","job":1}`, 403},
		{"wrong token", "x" + st.CSRF, "application/json", "", `{"action":"cancel","job":1}`, 403},
		{"form post", st.CSRF, "application/x-www-form-urlencoded", "", `{"action":"cancel","job":1}`, 403},
		{"other origin", st.CSRF, "application/json", "http://evil.example", `{"action":"cancel","job":1}`, 403},
		{"unsupported", st.CSRF, "application/json", "", `{"action":"close","node":"n1"}`, 403},
		{"unknown job", st.CSRF, "application/json", "", `{"action":"cancel","job":99}`, 404},
		{"bad body", st.CSRF, "application/json", "", `{`, 400},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/action", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		if tc.token != "" {
			req.Header.Set(CSRFHeader, tc.token)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if len(src.acts) != 2 {
		t.Errorf("actions carried out: %v, want the 2 accepted", src.acts)
	}

	ro := httptest.NewServer(New(Config{Source: src, ReadOnly: true}))
	defer ro.Close()
	resp, err = http.Get(ro.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	st = Status{}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Actions) != 0 || st.CSRF != "" {
		t.Errorf("read-only monitor offers actions %v, token %q", st.Actions, st.CSRF)
	}
}

// TestSessions checks the sign-in: a wrong secret gets no cookie, the
// right one a cookie Valid accepts until it expires, and a cookie signed
// for another boot of the daemon is refused.
func TestSessions(t *testing.T) {
	s := NewSessions("sekrit", "boot1")
	login := func(secret string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"secret": {secret}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		s.login(w, req)
		return w
	}
	if w := login("nope"); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong secret: HTTP %d, cookies %v", w.Code, w.Result().Cookies())
	}
	w := login("sekrit")
	cookies := w.Result().Cookies()
	if w.Code != http.StatusOK || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("right secret: HTTP %d, cookies %+v", w.Code, cookies)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/status", nil)
	req.AddCookie(cookies[0])
	if !s.Valid(req) {
		t.Error("a fresh session is not valid")
	}
	if NewSessions("sekrit", "boot2").Valid(req) {
		t.Error("a session of another boot is valid")
	}
	tampered := httptest.NewRequest(http.MethodGet, "/api/status", nil)
	exp, sig, _ := strings.Cut(cookies[0].Value, ".")
	tampered.AddCookie(&http.Cookie{Name: CookieName, Value: exp + "9." + sig})
	if s.Valid(tampered) {
		t.Error("a session with a changed expiry is valid")
	}
	s.now = func() time.Time { return time.Now().Add(DefaultSessionTTL + time.Minute) }
	if s.Valid(req) {
		t.Error("an expired session is valid")
	}
}
