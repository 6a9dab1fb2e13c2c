"use strict";
// The build page's live updates: polls the version's /status answer about
// every second while anything builds, and each unfinished build's log.
// Everything from the server is set with textContent, never parsed as HTML.
(function () {
  var root = document.getElementById("builds");
  if (!root) return;
  var statusUrl = root.getAttribute("data-status");
  var skew = Number(root.getAttribute("data-now")) * 1000 - Date.now();
  var live = document.getElementById("live");
  var TAIL = 200;

  function q(el, sel) { return el.querySelector(sel); }
  function text(el, t) { if (el && el.textContent !== t) el.textContent = t; }
  function field(sec, f) { return q(sec, '[data-f="' + f + '"]'); }
  // A <div data-row=f> of the details list: shown with a value, hidden without.
  function row(sec, f, value) {
    var r = q(sec, '[data-row="' + f + '"]');
    if (!r) return;
    r.hidden = value === null || value === undefined;
    if (!r.hidden) text(field(sec, f), String(value));
  }
  function iso(s) { return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"); }
  function dur(s) {
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h > 0 ? h + "h " + m + "m " + r + "s" : m > 0 ? m + "m " + r + "s" : r + "s";
  }
  function size(n) {
    if (n < 1024) return n + " bytes";
    var units = ["KiB", "MiB", "GiB", "TiB"], v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(1) + " " + units[i] + " (" + n + " bytes)";
  }
  function nowSecs() { return (Date.now() + skew) / 1000; }
  function running(st) { return st === "pending" || st === "queued" || st === "building"; }

  function stageLine(b) {
    if (b.status === "pending") {
      return b.nextAttemptAt ? "waiting to be submitted again at " + iso(b.nextAttemptAt)
                             : "waiting to be submitted to Perry Hub";
    }
    if (!running(b.status)) return null;
    var s = b.stage || "accepted by Perry Hub";
    if (b.message) s += " \u2014 " + b.message;
    if (b.queuePosition !== undefined && b.queuePosition !== null) {
      s += " (position " + b.queuePosition + " in the hub's queue)";
    }
    return s;
  }

  function update(sec, b) {
    sec.setAttribute("data-state", b.status);
    var badge = field(sec, "status");
    text(badge, b.status);
    badge.className = "state st-" + b.status;
    var bar = q(sec, ".bar"), p = field(sec, "progress");
    var pct = b.status === "completed" ? 100 : (typeof b.progress === "number" ? b.progress : null);
    bar.hidden = !(b.status === "completed" || b.status === "queued" || b.status === "building");
    if (pct === null) { p.removeAttribute("value"); text(field(sec, "percent"), ""); }
    else { p.value = pct; text(field(sec, "percent"), pct + "%"); }
    var line = stageLine(b), st = field(sec, "stage");
    st.hidden = line === null;
    if (line !== null) text(st, line);
    row(sec, "createdAt", iso(b.createdAt));
    row(sec, "completedAt", b.completedAt ? iso(b.completedAt) : null);
    row(sec, "duration", b.completedAt ? dur(b.completedAt - b.createdAt)
                         : running(b.status) ? dur(nowSecs() - b.createdAt) + " so far" : null);
    row(sec, "attempts", b.attempts);
    row(sec, "hubJobId", b.hubJobId || null);
    row(sec, "size", typeof b.size === "number" ? size(b.size) : null);
    row(sec, "sha256", b.sha256 || null);
    var err = field(sec, "error");
    err.hidden = !b.errorMessage;
    if (b.errorMessage) text(err, b.errorMessage);
  }

  // fetch() given up after 10 s, so that nothing waits on a stuck request.
  function get(url) {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, 10000) : null;
    return fetch(url, { cache: "no-store", signal: ctl ? ctl.signal : undefined })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  // A build's log tail (the server cuts it: ?tail=); one fetch at a time
  // per build.
  function refreshLog(sec) {
    var url = sec.getAttribute("data-log"), pre = field(sec, "log");
    if (!url || !pre || sec.logBusy) return;
    sec.logBusy = true;
    get(url + "?tail=" + TAIL).then(function (r) {
      if (!r.ok) return;
      return r.text().then(function (t) {
        var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        text(pre, t === "" ? "(no log lines yet)" : t.replace(/\n$/, ""));
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      });
    }).catch(function () {}).then(function () { sec.logBusy = false; });
  }

  function sections() { return root.querySelectorAll("section[data-platform]"); }
  function find(platform) {
    var all = sections();
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-platform") === platform) return all[i];
    }
    return null;
  }

  function poll() {
    get(statusUrl).then(function (r) {
      if (!r.ok) throw new Error("status " + r.status);
      return r.json();
    }).then(function (v) {
      var busy = false, fast = false;
      (v.builds || []).forEach(function (b) {
        var sec = find(b.platform);
        if (!sec) return;
        var was = sec.getAttribute("data-state");
        update(sec, b);
        // Unfinished builds, and a build that just ended: now, and once
        // more a little later for the lines written as it ended.
        if (running(b.status) || running(was)) refreshLog(sec);
        if (running(was) && !running(b.status)) {
          setTimeout(function () { refreshLog(sec); }, 2000);
        }
        if (running(b.status)) busy = true;
        if (b.status === "queued" || b.status === "building") fast = true;
      });
      var ov = document.getElementById("overall");
      text(ov, v.overall);
      ov.className = "state st-" + v.overall;
      if (busy) {
        text(live, "Updating live (last update " + iso(nowSecs()) + ").");
        setTimeout(poll, fast ? 1000 : 5000);
      } else {
        text(live, "All builds have finished.");
      }
    }).catch(function () {
      text(live, "Live updates interrupted; retrying\u2026");
      setTimeout(poll, 5000);
    });
  }

  var anyRunning = false;
  sections().forEach(function (s) { if (running(s.getAttribute("data-state"))) anyRunning = true; });
  if (anyRunning) {
    text(live, "Updating live.");
    poll();
  }
})();
