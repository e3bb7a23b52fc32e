// The page: upload or record a clip and show the answer of POST /api/classify; under the
// service, follow the live view (GET /api/state, /api/health, then /api/events pushed as SSE)
// and draw the history of days (GET /api/history) when the service keeps one.
// No framework and nothing fetched from elsewhere: the device may be offline.
"use strict";

(function () {
  const body = document.body;
  const EMOTIONS = body.dataset.emotions.split(","); // the model's labels, from its contract
  const HOP_S = parseFloat(body.dataset.hopS) || 0.5;
  const MAX_UPLOAD_BYTES = parseInt(body.dataset.maxUploadBytes, 10);
  const MAX_RECORD_S = 60; // a longer recording would only make a bigger upload
  const token = new URLSearchParams(location.search).get("token");
  const authHeaders = token ? { Authorization: "Bearer " + token } : {};
  const $ = (id) => document.getElementById(id);

  function withToken(url) {
    return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // style.css colours the shipped model's eight emotions; a model may have other labels. Each label
  // without a colour of its own gets one here, its hue a golden angle (137.5°) from the previous one's,
  // so any number of them stay apart.
  const EXTRA_COLOURS = new Map();
  for (const label of EMOTIONS) {
    const probe = el("span");
    probe.dataset.emotion = label;
    body.append(probe);
    if (!getComputedStyle(probe).getPropertyValue("--c").trim()) {
      EXTRA_COLOURS.set(label, "hsl(" + ((200 + 137.5 * EXTRA_COLOURS.size) % 360).toFixed(0) + " 55% 45%)");
    }
    probe.remove();
  }

  function tint(node, label) {
    node.dataset.emotion = label;
    if (EXTRA_COLOURS.has(label)) node.style.setProperty("--c", EXTRA_COLOURS.get(label));
    else node.style.removeProperty("--c");
  }

  document.querySelectorAll(".key[data-emotion]").forEach((key) => tint(key, key.dataset.emotion));

  function pct(p) {
    return (100 * p).toFixed(p >= 0.995 || p < 0.0995 ? 1 : 0) + " %";
  }

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // -- drawing ------------------------------------------------------------------------

  function drawBars(container, probs) {
    container.replaceChildren();
    if (!probs) return;
    let top = EMOTIONS[0];
    for (const e of EMOTIONS) if ((probs[e] || 0) > (probs[top] || 0)) top = e;
    for (const e of EMOTIONS) {
      const p = probs[e] || 0;
      const row = el("div", "bar" + (e === top ? " top" : ""));
      tint(row, e);
      row.dataset.p = String(p);
      row.setAttribute("role", "img");
      row.setAttribute("aria-label", e + " " + pct(p));
      const track = el("div", "track");
      const fill = el("div", "fill");
      fill.style.width = Math.max(0, Math.min(100, 100 * p)).toFixed(1) + "%";
      track.append(fill);
      row.append(el("span", "name", e), track, el("span", "value", pct(p)));
      container.append(row);
    }
  }

  // Each window is a mark one hop wide centred on the window, so marks tile the strip; the
  // first and last marks reach out to their window's edges. Stronger verdicts are more opaque.
  function drawTimeline(container, windows, from, to) {
    container.replaceChildren();
    container.dataset.count = String(windows.length);
    const span = Math.max(to - from, 1e-6);
    windows.forEach((w, i) => {
      const centre = (w.start_s + w.end_s) / 2;
      const left = Math.max(from, i === 0 ? w.start_s : centre - HOP_S / 2);
      const right = Math.min(to, i === windows.length - 1 ? w.end_s : centre + HOP_S / 2);
      if (right <= left) return;
      const mark = el("div", "w" + (w.speech ? "" : " quiet"));
      tint(mark, w.label);
      mark.style.left = ((100 * (left - from)) / span).toFixed(3) + "%";
      mark.style.width = ((100 * (right - left)) / span).toFixed(3) + "%";
      const p = w.probs ? w.probs[w.label] : undefined;
      if (w.speech && p !== undefined) mark.style.opacity = (0.5 + 0.5 * p).toFixed(2);
      mark.title = w.start_s.toFixed(1) + "–" + w.end_s.toFixed(1) + " s: " + w.label +
        (p !== undefined ? " " + pct(p) : "") + (w.speech ? "" : " (no speech)");
      container.append(mark);
    });
  }

  function showResult(r) {
    $("result").hidden = false;
    $("result-name").textContent = r.path;
    $("top-label").textContent = r.label;
    tint($("top-label"), r.label);
    $("top-p").textContent = pct(r.probs[r.label]);
    $("duration").textContent = r.duration_s.toFixed(2) + " s";
    $("speech").textContent = r.speech ? "found" : "not found";
    $("no-speech").hidden = r.speech;
    drawBars($("bars"), r.probs);
    const windows = r.windows || [];
    const end = Math.max(r.duration_s, ...windows.map((w) => Math.min(w.end_s, r.duration_s)));
    drawTimeline($("timeline"), windows, 0, end);
    $("axis").lastElementChild.textContent = end.toFixed(1) + " s";
  }

  // -- classify: upload -----------------------------------------------------------------

  async function classify(blob, name) {
    if (blob.size > MAX_UPLOAD_BYTES) {
      setStatus(name + ": the file is larger than the limit of " + body.dataset.maxUpload + ".", true);
      return;
    }
    const form = new FormData();
    form.append("file", blob, name);
    setStatus("Classifying " + name + "…");
    $("upload").disabled = true;
    try {
      const response = await fetch("/api/classify", { method: "POST", body: form, headers: authHeaders });
      let answer;
      try {
        answer = await response.json();
      } catch (_) {
        throw new Error("the server answered " + response.status + " without JSON");
      }
      if (!response.ok || answer.error) throw new Error(answer.error || "the server answered " + response.status);
      showResult(answer);
      setStatus(name + ": " + answer.label + ", from " + answer.windows.length + " window(s).");
    } catch (err) {
      setStatus(err.message, true);
    } finally {
      $("upload").disabled = false;
    }
  }

  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) {
      setStatus("Choose an audio file first.", true);
      return;
    }
    classify(file, file.name);
  });

  // -- classify: record in the browser ----------------------------------------------------
  // MediaRecorder makes webm/opus, which libsndfile cannot read, so the page takes raw PCM
  // from an AudioWorklet and writes a 16-bit mono WAV itself.

  const recorder = { ctx: null, stream: null, chunks: [], timer: null, started: 0 };
  const recordButton = $("record");

  if (!window.isSecureContext || !navigator.mediaDevices || !window.AudioWorkletNode) {
    recordButton.disabled = true;
    $("record-note").textContent = "Recording needs the page opened as http://localhost or over https; upload a file instead.";
  }

  recordButton.addEventListener("click", () => (recorder.ctx ? stopRecording() : startRecording()));

  async function startRecording() {
    try {
      // The browser's voice processing changes the very cues the model listens to.
      recorder.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      recorder.ctx = new AudioContext();
      await recorder.ctx.audioWorklet.addModule(body.dataset.worklet);
      const source = recorder.ctx.createMediaStreamSource(recorder.stream);
      const node = new AudioWorkletNode(recorder.ctx, "pcm-tap");
      recorder.chunks = [];
      node.port.onmessage = (event) => recorder.chunks.push(event.data);
      source.connect(node);
      recorder.started = performance.now();
      recordButton.textContent = "■ Stop";
      recordButton.setAttribute("aria-pressed", "true");
      recorder.timer = setInterval(() => {
        const s = (performance.now() - recorder.started) / 1000;
        setStatus("Recording… " + s.toFixed(0) + " s");
        if (s >= MAX_RECORD_S) stopRecording();
      }, 250);
    } catch (err) {
      await releaseRecorder();
      setStatus("Cannot record: " + err.message, true);
    }
  }

  async function stopRecording() {
    const rate = recorder.ctx.sampleRate;
    const chunks = recorder.chunks;
    await releaseRecorder();
    const wav = encodeWav(chunks, rate);
    classify(wav, "recording.wav");
  }

  async function releaseRecorder() {
    clearInterval(recorder.timer);
    if (recorder.stream) recorder.stream.getTracks().forEach((t) => t.stop());
    if (recorder.ctx) await recorder.ctx.close();
    recorder.ctx = null;
    recorder.stream = null;
    recorder.chunks = [];
    recordButton.textContent = "● Record";
    recordButton.setAttribute("aria-pressed", "false");
  }

  function encodeWav(chunks, rate) {
    const n = chunks.reduce((sum, c) => sum + c.length, 0);
    const buffer = new ArrayBuffer(44 + 2 * n);
    const view = new DataView(buffer);
    const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
    text(0, "RIFF");
    view.setUint32(4, 36 + 2 * n, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true); // size of the PCM format chunk
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, 2 * rate, true); // bytes per second
    view.setUint16(32, 2, true); // bytes per frame
    view.setUint16(34, 16, true); // bits per sample
    text(36, "data");
    view.setUint32(40, 2 * n, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++, offset += 2) {
        const x = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, x < 0 ? x * 32768 : x * 32767, true);
      }
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: authHeaders });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || "the server answered " + response.status);
    return answer;
  }

  // -- the history: days and a weekday-by-hour heat map, from GET /api/history ------------------
  // Days are the device's local days (the server groups them); the page lays out every day of the
  // range, so a day without listening shows as a gap.

  const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const HISTORY_REFRESH_MS = 5 * 60 * 1000; // a minute is added every minute; a trend over days needs no faster view
  const history = { answer: null, since: null, days: 30 };

  function isoDay(d) {
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }

  function rangeDays(first, count) {
    const days = [];
    for (let i = 0; i < count; i++) days.push(new Date(first.getFullYear(), first.getMonth(), first.getDate() + i));
    return days;
  }

  function hours(s) {
    return s >= 360 ? (s / 3600).toFixed(1) + " h" : Math.round(s / 60) + " min";
  }

  function describeShares(shares) {
    return Object.entries(shares)
      .filter(([, v]) => v >= 0.005)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => k + " " + pct(v))
      .join(", ");
  }

  async function loadHistory() {
    history.days = parseInt($("history-range").value, 10);
    const today = new Date();
    const first = new Date(today.getFullYear(), today.getMonth(), today.getDate() - (history.days - 1));
    history.since = first;
    try {
      history.answer = await getJson("/api/history?by=day&since=" + isoDay(first));
      drawHistory();
      $("history-status").textContent = history.answer.periods.length
        ? "Times are the device's (" + history.answer.timezone + ")."
        : "Nothing heard in these days yet: a minute of listening is added every minute.";
      $("history-status").classList.remove("error");
    } catch (err) {
      $("history-status").textContent = err.message;
      $("history-status").classList.add("error");
    }
  }

  function drawHistory() {
    const answer = history.answer;
    const byDay = new Map(answer.periods.map((p) => [p.period, p]));
    const days = rangeDays(history.since, history.days);
    const most = Math.max(0, ...answer.periods.map((p) => p.speech_s));
    const columns = $("history-days");
    const strip = $("history-hours");
    const dates = $("history-dates");
    for (const box of [columns, strip, dates]) {
      box.replaceChildren();
      box.style.setProperty("--n", String(days.length));
    }
    columns.dataset.count = String(answer.periods.length);
    for (const d of days) {
      const key = isoDay(d);
      const p = byDay.get(key);
      const day = el("div", "day");
      day.dataset.day = key;
      const alerts = p ? Object.values(p.alerts).reduce((a, b) => a + b, 0) : 0;
      day.dataset.alerts = String(alerts);
      day.dataset.speechS = String(p ? p.speech_s : 0);
      const mark = el("span", "mark", alerts ? "▲" + (alerts > 1 ? alerts : "") : "");
      mark.title = alerts ? Object.entries(p.alerts).map(([k, n]) => n + " " + k).join(", ") + " alert(s)" : "";
      const stack = el("div", "stack");
      if (p && p.speech_s > 0) {
        for (const label of answer.labels) {
          const share = p.shares[label] || 0;
          if (share <= 0) continue;
          const seg = el("div", "seg");
          tint(seg, label);
          seg.dataset.share = String(share);
          seg.style.height = (100 * share).toFixed(2) + "%";
          stack.append(seg);
        }
      } else {
        stack.classList.add("none");
      }
      day.title = key + (p ? ": " + hours(p.speech_s) + " of speech in " + hours(p.heard_s) + " heard; " + describeShares(p.shares) : ": nothing heard");
      day.append(mark, stack);
      columns.append(day);

      const bar = el("div", "day");
      bar.dataset.day = key;
      const fill = el("div", "fill");
      fill.style.height = most > 0 && p ? ((100 * p.speech_s) / most).toFixed(2) + "%" : "0";
      bar.title = key + ": " + (p ? hours(p.speech_s) + " of speech" : "nothing heard");
      bar.append(fill);
      strip.append(bar);

      // Dates under the columns: every day when there is room, else the Mondays.
      let label = "";
      if (history.days <= 14) label = WEEKDAYS[(d.getDay() + 6) % 7] + " " + d.getDate();
      else if (d.getDay() === 1 && d < days[days.length - 2]) label = d.toLocaleDateString(undefined, { month: "short", day: "numeric" }); // room for the text
      dates.append(el("span", "", label));
    }
    $("history-most").textContent = most > 0 ? "(the tallest is " + hours(most) + ")" : "";
    const legend = $("history-legend");
    legend.replaceChildren();
    for (const label of answer.labels) {
      const key = el("span", "key");
      tint(key, label);
      key.append(el("i"), document.createTextNode(label));
      legend.append(key);
    }
    fillHeatLabels(answer);
    drawHeat();
  }

  // The heat map shows one label: the one alerted most in the range, else the one heard most; the select changes it.
  function fillHeatLabels(answer) {
    const select = $("heat-label");
    const chosen = select.value;
    const total = (key) => (label) => answer.periods.reduce((sum, p) => sum + (p[key][label] || 0) * (key === "shares" ? p.speech_s : 1), 0);
    const alerted = total("alerts");
    const heard = total("shares");
    const labels = answer.labels.length ? answer.labels : EMOTIONS;
    let best = labels[0];
    for (const l of labels) if (alerted(l) > alerted(best) || (alerted(l) === alerted(best) && heard(l) > heard(best))) best = l;
    select.replaceChildren(...labels.map((l) => el("option", "", l)));
    select.value = labels.includes(chosen) ? chosen : best;
  }

  function drawHeat() {
    const answer = history.answer;
    const label = $("heat-label").value;
    const grid = $("history-heat");
    grid.replaceChildren(el("span", "corner"));
    for (let h = 0; h < 24; h++) grid.append(el("span", "hour", h % 3 === 0 ? String(h) : ""));
    const cells = new Map(answer.heatmap.map((c) => [c.weekday + " " + c.hour, c]));
    const most = Math.max(0, ...answer.heatmap.filter((c) => c.speech_s > 0).map((c) => c.shares[label] || 0));
    let count = 0;
    for (let w = 0; w < 7; w++) {
      grid.append(el("span", "weekday", WEEKDAYS[w]));
      for (let h = 0; h < 24; h++) {
        const c = cells.get(w + " " + h);
        const cell = el("div", "cell");
        tint(cell, label);
        cell.dataset.weekday = String(w);
        cell.dataset.hour = String(h);
        const span = WEEKDAYS[w] + " " + String(h).padStart(2, "0") + ":00–" + String(h + 1).padStart(2, "0") + ":00";
        if (c && c.speech_s > 0) {
          const share = c.shares[label] || 0;
          cell.dataset.share = String(share);
          // Darkest at the range's highest share, so the pattern shows whatever the level; the title gives the number.
          cell.style.setProperty("--a", most > 0 ? (0.08 + (0.92 * share) / most).toFixed(3) : "0.08");
          cell.title = span + ": " + label + " " + pct(share) + " of " + hours(c.speech_s) + " of speech";
          count++;
        } else {
          cell.classList.add("empty");
          cell.title = span + ": " + (c ? "no speech" : "nothing heard");
        }
        grid.append(cell);
      }
    }
    grid.dataset.count = String(count);
    grid.dataset.label = label;
    $("heat-scale").textContent = count ? "(darkest: " + pct(most) + " of that hour's speech)" : "";
  }

  if (body.dataset.history === "true") {
    $("history-range").addEventListener("change", loadHistory);
    $("heat-label").addEventListener("change", drawHeat);
    loadHistory();
    setInterval(loadHistory, HISTORY_REFRESH_MS);
  }

  // -- the live view ------------------------------------------------------------------------

  if (body.dataset.live !== "true") return;

  const live = { windows: [], alerts: new Map(), state: null, health: null, historyS: 300 };

  function drawLive() {
    const state = live.state;
    const name = state ? state.state : "—";
    $("live-state").textContent = name;
    $("live-state").dataset.state = state ? state.state : "";
    tint($("live-state"), state ? state.state : "");
    drawBars($("live-bars"), state && state.probs);
    // The strip grows with the stream until it spans the whole history.
    const shown = live.windows;
    const end = shown.length ? shown[shown.length - 1].end_s : 0;
    const from = shown.length ? Math.max(end - live.historyS, shown[0].start_s) : 0;
    drawTimeline($("live-timeline"), shown.filter((w) => w.end_s >= from), from, end);
    $("live-axis").firstElementChild.textContent = shown.length ? "−" + formatDuration(end - from) : "";
    drawAlerts();
  }

  function drawAlerts() {
    const list = $("live-alerts");
    list.replaceChildren();
    if (!live.alerts.size) {
      list.append(el("li", "muted", "none"));
      return;
    }
    for (const a of live.alerts.values()) {
      const item = el("li");
      const badge = el("span", "alert", a.emotion);
      tint(badge, a.emotion);
      item.append(badge, document.createTextNode(" score " + pct(a.score || 0) + (a.wall_time ? " since " + a.wall_time.slice(11, 19) + " UTC" : "")));
      list.append(item);
    }
  }

  // The voice profile in the health event: null without one, else how much speech it holds and whether it adapts.
  function describeProfile(p) {
    if (p === undefined) return "—";
    if (p === null) return "none (the training population's voice)";
    const held = formatDuration(p.speech_s) + " of speech";
    return p.adapting ? held + ", adapting" : held;
  }

  function drawHealth(answer) {
    const h = answer.health;
    const put = (key, text) => (document.querySelector('#live-health [data-key="' + key + '"]').textContent = text);
    if (!h) {
      put("source", "waiting for the first report…");
      return;
    }
    put("source", h.source ?? "—");
    const sinks = h.sinks ? Object.entries(h.sinks).map(([n, s]) => n + ": " + s) : [];
    put("sinks", sinks.length ? sinks.join(", ") : "none");
    put("queue_length", String(h.queue_length ?? "—"));
    put("cpu_percent", h.cpu_percent !== undefined ? Number(h.cpu_percent).toFixed(1) + " % of one core" : "—");
    put("profile", describeProfile(h.profile));
    const up = h.uptime_s ?? answer.uptime_s;
    put("uptime_s", up !== undefined ? formatDuration(up) : "—");
  }

  function formatDuration(s) {
    const whole = Math.floor(s);
    if (whole < 60) return whole + " s";
    if (whole < 3600) return Math.floor(whole / 60) + " min " + (whole % 60) + " s";
    return Math.floor(whole / 3600) + " h " + Math.floor((whole % 3600) / 60) + " min";
  }

  function setLive(status, text) {
    $("live-status").dataset.status = status;
    $("live-status").textContent = text;
  }

  function applySnapshot(s) {
    live.state = s.state;
    live.windows = s.windows || [];
    live.alerts = new Map((s.alerts || []).map((a) => [String(a.id), a]));
    if (s.history_s) live.historyS = s.history_s;
    $("live-history").textContent = (live.historyS / 60).toFixed(live.historyS % 60 ? 1 : 0) + " minutes";
    drawLive();
  }

  function addWindow(w) {
    // A window already shown comes again when a snapshot overlaps the events queued behind it.
    if (live.windows.some((x) => x.start_s === w.start_s && x.end_s === w.end_s)) return;
    if (live.windows.length && w.end_s < live.windows[live.windows.length - 1].end_s) live.windows = []; // a new stream
    live.windows.push(w);
    const horizon = w.end_s - live.historyS;
    while (live.windows.length && live.windows[0].end_s < horizon) live.windows.shift();
  }

  async function follow() {
    try {
      applySnapshot(await getJson("/api/state"));
      drawHealth(await getJson("/api/health"));
    } catch (err) {
      setLive("lost", "unavailable");
      setStatus(err.message, true);
    }
    const events = new EventSource(withToken("/api/events"));
    events.onopen = () => setLive("live", "live");
    events.onerror = () => setLive("lost", events.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    const on = (type, handler) => events.addEventListener(type, (e) => handler(JSON.parse(e.data)));
    on("snapshot", (s) => {
      applySnapshot(s);
      drawHealth(s);
    });
    on("window", (w) => {
      addWindow(w);
      drawLive();
    });
    on("state", (s) => {
      live.state = s;
      drawLive();
    });
    on("alert", (a) => {
      live.alerts.set(String(a.id), a);
      drawAlerts();
    });
    on("alert_end", (a) => {
      live.alerts.delete(String(a.id));
      drawAlerts();
    });
    on("health", (h) => drawHealth({ health: h }));
    on("closed", () => {
      events.close();
      setLive("stopped", "service stopped");
    });
  }

  follow();
})();
