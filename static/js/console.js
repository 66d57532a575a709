/* Polos console: live regions over WebSockets, deadline countdowns, one submit per decision.
 *
 * A live region is an element with data-live-socket (a WebSocket path) and data-live-fragment
 * (a URL answering the region's server-rendered HTML). Any event on the socket re-fetches the
 * fragment and swaps it in; so does every (re)connection, which catches up on whatever was
 * missed while disconnected. The server stays the only place that renders.
 */
(function () {
  "use strict";

  var CLOSE_UNAUTHORIZED = 4401;
  var CLOSE_FORBIDDEN = 4403;
  var STATE_LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

  function socketUrl(path) {
    return (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;
  }

  function connect(path, handlers) {
    var delay = 1000;
    var stopped = false;
    function open() {
      var ws;
      try {
        ws = new WebSocket(socketUrl(path));
      } catch (err) {
        retry();
        return;
      }
      ws.onopen = function () {
        delay = 1000;
        handlers.open();
      };
      ws.onmessage = function (message) {
        var event = null;
        try { event = JSON.parse(message.data); } catch (err) { /* not ours */ }
        handlers.message(event);
      };
      ws.onclose = function (close) {
        if (close.code === CLOSE_UNAUTHORIZED || close.code === CLOSE_FORBIDDEN) {
          stopped = true;
          handlers.state("offline");
          return;
        }
        retry();
      };
    }
    function retry() {
      if (stopped) return;
      handlers.state("reconnecting");
      window.setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    }
    open();
  }

  function focusKey(element) {
    if (!element) return null;
    if (element.id) return "#" + CSS.escape(element.id);
    var href = element.getAttribute && element.getAttribute("href");
    return href ? '[href="' + CSS.escape(href) + '"]' : null;
  }

  function liveRegion(region) {
    var label = document.querySelector('[data-live-label-for="' + region.id + '"]');
    var announcer = document.querySelector('[data-live-announcer-for="' + region.id + '"]');
    var fetching = false;
    var again = false;
    var refreshes = 0;

    function setState(state) {
      region.setAttribute("data-live-state", state);
      if (label) {
        label.textContent = STATE_LABELS[state] || state;
        label.setAttribute("data-state", state);
      }
    }

    function refresh() {
      if (fetching) { again = true; return; }
      fetching = true;
      fetch(region.getAttribute("data-live-fragment") + window.location.search, {
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
        cache: "no-store"
      }).then(function (response) {
        if (!response.ok) throw new Error("fragment " + response.status);
        return response.text();
      }).then(function (html) {
        var active = region.contains(document.activeElement) ? focusKey(document.activeElement) : null;
        region.innerHTML = html;
        updateCountdowns(region);
        if (active) {
          var again_ = region.querySelector(active);
          if (again_) again_.focus();
        }
        refreshes += 1;
        region.setAttribute("data-live-refreshes", String(refreshes));
        if (announcer) {
          var summary = region.querySelector("[data-live-summary]");
          announcer.textContent = summary ? summary.textContent.trim() : "Updated";
        }
      }).catch(function () { /* the next event or reconnection tries again */ })
        .then(function () {
          fetching = false;
          if (again) { again = false; refresh(); }
        });
    }

    connect(region.getAttribute("data-live-socket"), {
      open: function () { setState("live"); refresh(); },
      message: function () { refresh(); },
      state: setState
    });
  }

  /* An approval page with its form open: tell the reader when someone else decides first. */
  function watchStep(element) {
    var step = element.getAttribute("data-watch-step");
    var notice = document.querySelector("[data-stale-notice]");
    var closing = { resume: true, timeout: true, cancel: true, execution_finish: true };
    connect(element.getAttribute("data-watch-socket"), {
      open: function () {},
      message: function (event) {
        if (!event || !notice || !closing[event.event_type]) return;
        if (event.event_type !== "execution_finish" && event.step_key !== step) return;
        if (submitting) return; // our own decision
        notice.hidden = false;
      },
      state: function () {}
    });
  }

  function duration(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    var d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
    var m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (d) return h ? d + " d " + h + " h" : d + " d";
    if (h) return m ? h + " h " + m + " min" : h + " h";
    if (m) return m + " min";
    return s + " s";
  }

  function updateCountdowns(root) {
    var now = Date.now();
    (root || document).querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = (Date.parse(el.getAttribute("data-deadline")) - now) / 1000;
      if (isNaN(left)) return;
      el.textContent = left > 0 ? duration(left) + " left" : "overdue by " + duration(left);
    });
  }

  var submitting = false;
  function guardDecisionForms() {
    document.querySelectorAll("form[data-decision-form]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        // Buttons stay enabled (a disabled button would not send its name and value):
        // a second submit of the same form is swallowed instead.
        if (form.getAttribute("data-submitting") === "true") {
          event.preventDefault();
          return;
        }
        submitting = true;
        form.setAttribute("data-submitting", "true");
        form.querySelectorAll("button[type=submit]").forEach(function (button) {
          button.setAttribute("aria-disabled", "true");
        });
      });
    });
    var summary = document.querySelector("[data-error-summary]");
    if (summary) summary.focus();
  }

  function start() {
    document.querySelectorAll("[data-live-socket][data-live-fragment]").forEach(liveRegion);
    document.querySelectorAll("[data-watch-socket]").forEach(watchStep);
    guardDecisionForms();
    updateCountdowns(document);
    window.setInterval(function () { updateCountdowns(document); }, 15000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
