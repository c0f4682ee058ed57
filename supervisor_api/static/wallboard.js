// CXOS wallboard: renders /api/wallboard and refreshes it whenever the event stream reports
// something, so what the board shows is never more than one refresh behind the events.
// The token comes from the page's fragment (#token=...), which browsers never send to servers.
"use strict";

(function () {
  const REFRESH_GAP_MS = 150;   // coalesce bursts of events into one refresh
  const RECONNECT_MS = 1000;
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  let board = null;             // last snapshot
  let boardAt = 0;              // performance.now() when it arrived
  let fetching = false;
  let again = false;

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function level(value, t) {
    if (value === null || value === undefined) return "ok";
    if (value >= t.alarm) return "alarm";
    if (value >= t.warn) return "warn";
    return "ok";
  }

  function worst(...levels) {
    return levels.includes("alarm") ? "alarm" : levels.includes("warn") ? "warn" : "ok";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
    return h > 0 ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : `${value.toFixed(1)}%`;
  }

  function elapsed() {
    return (performance.now() - boardAt) / 1000;
  }

  function figure(parent, label, value, cls, name) {
    const box = el("div");
    const big = el("div", "big " + (cls || ""), value);
    big.dataset.figure = name;
    box.append(big, el("div", "label", label));
    parent.append(box);
  }

  function renderQueues() {
    const t = board.thresholds;
    const section = $("queues");
    section.replaceChildren();
    for (const q of board.queues) {
      const wait = q.waiting > 0 ? q.longest_wait_seconds + elapsed() : 0;
      const sl = q.service_level;
      const shortfall = sl.now === null ? null : sl.target_percent - sl.now;
      const levels = [
        level(q.waiting, t.waiting),
        level(wait, t.longest_wait_seconds),
        level(shortfall, t.service_level_shortfall),
      ];
      const tile = el("article", "tile " + worst(...levels));
      tile.dataset.queue = q.queue_id;
      tile.append(el("h2", "", q.queue_id));
      const figures = el("div", "figures");
      figure(figures, "waiting", String(q.waiting), levels[0] + "-text", "waiting");
      figure(figures, "longest wait", duration(wait), levels[1] + "-text", "longest_wait");
      figure(figures, `SL now (target ${sl.target_percent}% in ${sl.threshold_seconds}s)`,
             percent(sl.now), levels[2] + "-text", "sl_now");
      figure(figures, "SL today", percent(sl.today), "", "sl_today");
      tile.append(figures);
      const agents = el("div", "agents");
      for (const [key, label] of [["available", "available"], ["busy", "busy"],
                                  ["wrap_up", "wrap-up"], ["paused", "paused"]]) {
        const span = el("span", "", `${label} ${q.agents[key]}`);
        span.dataset.count = key;
        agents.append(span);
      }
      tile.append(agents);
      section.append(tile);
    }
  }

  const MODE_VERB = { listen: "listens", whisper: "whispers", barge: "barges in" };

  function supervisorName(m) {
    return m.supervisor_id || m.sip_user;
  }

  function renderAgents() {
    const t = board.thresholds.state_seconds;
    const body = $("agents").querySelector("tbody");
    const watchers = new Map(board.monitoring.filter((m) => m.agent_id)
                                              .map((m) => [m.agent_id, m]));
    body.replaceChildren();
    for (const a of board.agents) {
      const inState = a.time_in_state_seconds === null ? null : a.time_in_state_seconds + elapsed();
      const watched = a.state === "paused" || a.state === "wrap_up";
      const row = el("tr", `state-${a.state} ${watched ? level(inState, t) : "ok"}`);
      row.dataset.agent = a.agent_id;
      row.append(el("td", "", a.agent_id), el("td", "", a.state.replace("_", " ")),
                 el("td", "", duration(inState)), el("td", "", a.reason || ""),
                 el("td", "", String(a.calls_handled)));
      const watcher = watchers.get(a.agent_id);
      const cell = el("td", watcher ? `monitor ${watcher.mode}` : "",
                      watcher ? `${supervisorName(watcher)} ${MODE_VERB[watcher.mode]}` : "");
      cell.dataset.supervisor = watcher ? supervisorName(watcher) : "";
      row.append(cell);
      body.append(row);
    }
  }

  // Which supervisor listens to, whispers to or barges in on which agent's call.
  function renderMonitoring() {
    const body = $("monitoring").querySelector("tbody");
    body.replaceChildren();
    for (const m of board.monitoring) {
      const row = el("tr", `monitor ${m.mode}`);
      row.dataset.call = m.call_id;
      row.append(el("td", "", supervisorName(m)), el("td", "", m.mode),
                 el("td", "", m.agent_id || "–"), el("td", "", m.call_id),
                 el("td", "", duration(m.seconds + elapsed())));
      body.append(row);
    }
    $("monitoring-section").hidden = board.monitoring.length === 0;
  }

  function render() {
    if (!board) return;
    $("node").textContent = board.node;
    $("clock").textContent = new Date().toLocaleTimeString();
    renderQueues();
    renderAgents();
    renderMonitoring();
    document.body.dataset.lastSeq = String(board.last_seq);
  }

  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const response = await fetch("/api/wallboard", {
        headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        notice(`wallboard: ${response.status} ${body.message || ""}`);
        return;
      }
      board = await response.json();
      boardAt = performance.now();
      notice(null);
      render();
    } catch (error) {
      notice(`wallboard: ${error}`);
    } finally {
      fetching = false;
      if (again) { again = false; setTimeout(refresh, REFRESH_GAP_MS); }
    }
  }

  function notice(text) {
    const p = $("notice");
    p.hidden = !text;
    p.textContent = text || "";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/events`,
                             ["cxos.events.v1", `bearer.${token}`]);
    let pending = null;
    ws.onopen = () => { $("link").className = "link up"; $("link").textContent = "live"; refresh(); };
    ws.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.control) return;   // hello / heartbeat
      if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, REFRESH_GAP_MS);
    };
    ws.onclose = (e) => {
      $("link").className = "link down";
      $("link").textContent = e.reason ? `reconnecting (${e.reason})` : "reconnecting";
      setTimeout(connect, RECONNECT_MS);
    };
  }

  if (!token) {
    notice("Open this page as /wallboard#token=YOUR_API_TOKEN");
  } else {
    connect();
    setInterval(render, 1000);   // time in state and longest wait tick between refreshes
  }
})();
