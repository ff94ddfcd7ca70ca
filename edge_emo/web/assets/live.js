// The live page of `edge-emo listen --serve`: one EventSource, redrawn at most once per animation frame.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
let settings = null;  // from the "hello" event: model, source, emotions, colours, scale, timeline span
let recent = [];     // {t, u}: the updates of the last settings.history_s seconds (t: since the first stream)
let streams = [];     // t where a stream after the first began
let latest = null;    // the newest "update" event: {update, utterances, dropped_blocks}
let skipped = 0;      // updates the server dropped because this browser fell behind
let drawPending = false;

function setup(s) {
  settings = s;
  recent = [];
  streams = [];
  latest = null;
  $("span-s").textContent = Math.round(s.history_s);
  $("bars").innerHTML = "";
  $("legend").innerHTML = "";
  for (const name of s.emotions) {
    const row = [["name", name], ["track", ""], ["value", "0.00"]].map(([cls, text]) => {
      const el = document.createElement("div");
      el.className = cls;
      el.textContent = text;
      return el;
    });
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.background = s.colors[name];
    row[1].appendChild(fill);
    row[0].id = "name-" + name;
    fill.id = "fill-" + name;
    row[2].id = "value-" + name;
    $("bars").append(...row);
    const item = document.createElement("span");
    item.innerHTML = '<span class="swatch"></span>';
    item.firstChild.style.background = s.colors[name];
    item.append(name);
    $("legend").appendChild(item);
  }
  schedule();
}

function onUpdate(msg) {
  recent.push({ t: msg.t, u: msg.update });
  while (recent[0].t < msg.t - settings.history_s) recent.shift();
  latest = msg;
  schedule();
}

function onStream(msg) {
  settings.source = msg.source;
  if (msg.t > 0) streams.push(msg.t);
  schedule();
}

function schedule() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }
}

function draw() {
  if (!settings) return;
  const u = latest && latest.update;
  for (const name of settings.emotions) {
    const v = u ? u.intensities[name] : 0;
    $("fill-" + name).style.width = (100 * Math.min(1, v / settings.max_intensity)).toFixed(1) + "%";
    $("value-" + name).textContent = v.toFixed(2);
    $("name-" + name).classList.toggle("top", !!u && u.dominant === name);
  }
  const dom = $("dominant");
  dom.innerHTML = "";
  if (u && u.dominant) {
    const dot = document.createElement("span");
    dot.className = "swatch";
    dot.style.background = settings.colors[u.dominant];
    dom.append(dot, u.dominant);
  } else {
    dom.textContent = u && u.speech ? "none yet" : "–";
  }
  $("speech").textContent = u && u.speech ? "● speech" : "○ silence";
  $("speech").classList.toggle("on", !!u && u.speech);
  const db = u ? Math.max(u.level_db, -99) : null;
  $("level-fill").style.width = u ? Math.max(0, Math.min(100, (100 * (db + 60)) / 60)).toFixed(1) + "%" : "0";
  $("level-db").textContent = u ? db.toFixed(1) + " dBFS" : "–";
  const parts = [settings.source, "model " + settings.model];
  if (u) parts.push("t = " + u.time_s.toFixed(1) + " s", "utterances: " + latest.utterances,
                    "dropped audio blocks: " + latest.dropped_blocks);
  if (u && u.speaker_heard_s != null) parts.push("speaker heard: " + u.speaker_heard_s.toFixed(0) + " s");
  if (skipped) parts.push("updates skipped (slow connection): " + skipped);
  $("footer").textContent = parts.filter(Boolean).join(" · ");
  drawTimeline();
}

function drawTimeline() {
  const canvas = $("timeline");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.body);
  const muted = css.getPropertyValue("--muted"), line = css.getPropertyValue("--line");
  const left = 22, bottom = 18, top = 16, plotW = w - left - 4, plotH = h - top - bottom;
  const now = recent.length ? recent[recent.length - 1].t : 0;
  const span = settings.history_s, t0 = now - span;  // now at the right edge, older to the left
  const x = (t) => left + ((t - t0) / span) * plotW;
  const y = (v) => top + plotH * (1 - Math.min(1, v / settings.max_intensity));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = muted;
  ctx.strokeStyle = line;
  ctx.lineWidth = 1;
  for (let v = 0; v <= settings.max_intensity; v++) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(left + plotW, y(v)); ctx.stroke();
    ctx.fillText(String(v), 6, y(v) + 4);
  }
  // speech: shaded spans
  ctx.fillStyle = css.getPropertyValue("--speech-band");
  let start = null;
  recent.forEach((p, i) => {
    if (p.u.speech && start === null) start = i ? recent[i - 1].t : p.t;
    if ((!p.u.speech || i === recent.length - 1) && start !== null) {
      ctx.fillRect(x(start), top, x(p.t) - x(start), plotH);
      start = null;
    }
  });
  // a new stream (the next file): a dashed line
  ctx.strokeStyle = muted;
  ctx.setLineDash([4, 4]);
  for (const t of streams) {
    if (t < t0) continue;
    ctx.beginPath(); ctx.moveTo(x(t), top); ctx.lineTo(x(t), top + plotH); ctx.stroke();
  }
  ctx.setLineDash([]);
  // one line per emotion
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  for (const name of settings.emotions) {
    ctx.strokeStyle = settings.colors[name];
    ctx.beginPath();
    recent.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(p.t), y(p.u.intensities[name])));
    ctx.stroke();
  }
  // each finished utterance: a dot of its dominant emotion's colour above its end
  for (const p of recent) {
    if (!p.u.final || !p.u.dominant) continue;
    ctx.fillStyle = settings.colors[p.u.dominant];
    ctx.beginPath(); ctx.arc(x(p.t), top - 8, 5, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.fillStyle = muted;
  for (const [ago, align] of [[span, "left"], [span / 2, "center"], [0, "right"]]) {
    ctx.textAlign = align;
    ctx.fillText(ago ? "−" + ago.toFixed(0) + " s" : "now", x(now - ago), h - 4);
  }
  ctx.textAlign = "start";
}

function status(text, live) {
  $("status").textContent = text;
  $("status").classList.toggle("live", live);
}

function connect() {
  const events = new EventSource("events?token=" + encodeURIComponent(token));
  events.onopen = () => status("live", true);
  events.onerror = () => status(events.readyState === EventSource.CLOSED ? "not allowed or gone" : "reconnecting…", false);
  events.addEventListener("hello", (e) => setup(JSON.parse(e.data)));
  events.addEventListener("stream", (e) => onStream(JSON.parse(e.data)));
  events.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
  events.addEventListener("dropped", (e) => { skipped = Number(e.data); schedule(); });
  events.addEventListener("end", () => { events.close(); status("listen has ended", false); });
}

window.addEventListener("resize", schedule);
connect();
