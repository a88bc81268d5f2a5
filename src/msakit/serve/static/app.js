// msakit serve: the analysis page. Hand-written, no library, nothing fetched from elsewhere:
// upload (XMLHttpRequest for its progress events) -> poll the job -> draw the timeline JSON.
// Every value from the server is put in the page with textContent, never as HTML.
"use strict";

const MODALITIES = ["text", "audio", "visual"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function problemText(status, body) {
  try {
    const p = JSON.parse(body);
    return `${p.title || "Error"} (${p.status || status}): ${p.detail || ""}`;
  } catch (_) {
    return `HTTP ${status}`;
  }
}

function upload(form) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "v1/analyze");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.round((100 * e.loaded) / e.total);
      $("upload-progress").value = pct;
      $("upload-pct").textContent = pct + " %";
    };
    xhr.onload = () => {
      if (xhr.status === 202) {
        $("upload-progress").value = 100;
        $("upload-pct").textContent = "100 %";
        resolve(JSON.parse(xhr.responseText));
      } else reject(new Error(problemText(xhr.status, xhr.responseText)));
    };
    xhr.onerror = () => reject(new Error("the upload failed: the service cannot be reached"));
    xhr.send(form);
  });
}

async function getJSON(url) {
  const r = await fetch(url, { headers: authHeaders() });
  const body = await r.text();
  if (!r.ok) throw new Error(problemText(r.status, body));
  return JSON.parse(body);
}

async function waitForJob(id) {
  const began = Date.now();
  for (;;) {
    const job = await getJSON("v1/jobs/" + id);
    const seconds = Math.round((Date.now() - began) / 1000);
    const stage = job.status === "running" && job.stage ? `: ${job.stage}` : "";
    $("job-status").textContent = `${job.status}${stage} (${seconds} s)`;
    if (job.status === "running" && job.progress > 0) $("job-progress").value = job.progress;
    if (job.status === "done") {
      $("job-progress").value = 1;
      return job;
    }
    if (job.status === "failed") throw new Error("the analysis failed: " + job.error);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function linkDownload(anchor, url) {
  // fetched with the token (a plain link could not send it), offered as a local file
  const r = await fetch(url, { headers: authHeaders() });
  if (!r.ok) throw new Error(problemText(r.status, await r.text()));
  anchor.href = URL.createObjectURL(await r.blob());
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const clock = (s) => `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
const polarityClass = (p) => (["positive", "negative", "neutral"].includes(p) ? p : "unknown");

function cueSummary(cues) {
  const parts = [];
  const a = cues.audio || {};
  const v = cues.visual || {};
  if (a.present) parts.push(`pitch ${fmt(a.pitch_hz, 0)} Hz, ${fmt(a.intensity_db, 0)} dB`);
  if (v.present && v.top_emotion) parts.push(`face: ${v.top_emotion}`);
  if (v.present && v.smile_width !== undefined && v.smile_width !== null) parts.push(`smile ${fmt(v.smile_width)}`);
  const fused = ["audio", "visual"].filter((m) => cues[m] && cues[m].fused);
  if (parts.length) parts.push(fused.length ? `(fused: ${fused.join("+")})` : "(cues, not fused)");
  return parts.join("; ");
}

function aspectSummary(u) {
  const items = Array.isArray(u.aspects) ? u.aspects : [];
  return items
    .map((a) => {
      if (typeof a !== "object" || a === null) return String(a);
      const term = a.term ?? a.aspect ?? a.category ?? a.text ?? "";
      const pol = a.polarity ?? a.sentiment ?? "";
      return pol ? `${term}: ${pol}` : String(term);
    })
    .join(", ");
}

function weightBar(weights) {
  const bar = el("div", { class: "bar", title: "per-modality contribution" });
  const total = MODALITIES.reduce((s, m) => s + Math.max(0, weights[m] || 0), 0) || 1;
  for (const m of MODALITIES) {
    if (!(m in weights)) continue;
    const span = el("span", { class: "m-" + m, title: `${m} ${fmt(weights[m])}` });
    span.style.width = (100 * Math.max(0, weights[m])) / total + "%";
    bar.append(span);
  }
  return bar;
}

function drawTimeline(result) {
  const box = $("timeline");
  box.replaceChildren();
  const us = result.utterances;
  const W = 960, top = 14, H = 170, left = 56, right = 14;
  const laneY = top + H + 24, cueY = laneY + 28, height = cueY + 22;
  box.setAttribute("viewBox", `0 0 ${W} ${height}`);
  const duration = Math.max(result.duration || 0, ...us.map((u) => u.end), 0.1);
  const scale = Math.max(3, ...us.map((u) => Math.abs(u.score ?? 0)));
  const x = (t) => left + ((W - left - right) * t) / duration;
  const y = (s) => top + (H / 2) * (1 - s / scale);
  for (const s of [-scale, -scale / 2, 0, scale / 2, scale]) {
    box.append(svg("line", { x1: left, x2: W - right, y1: y(s), y2: y(s), class: s === 0 ? "axis" : "grid" }));
    box.append(svg("text", { x: left - 4, y: y(s) + 4, "text-anchor": "end" }, fmt(s, 1)));
  }
  const ticks = Math.min(10, Math.ceil(duration));
  for (let k = 0; k <= ticks; k++) {
    const t = (duration * k) / ticks;
    const anchor = k === 0 ? "start" : k === ticks ? "end" : "middle";
    box.append(svg("text", { x: x(t), y: top + H + 14, "text-anchor": anchor }, clock(t)));
  }
  us.forEach((u, i) => {
    const x0 = x(u.start), w = Math.max(2, x(u.end) - x(u.start) - 2);
    const s = u.score ?? 0;
    const cls = polarityClass(u.polarity);
    const g = svg("g", { class: "utterance", "data-index": i });
    g.append(svg("title", {}, `${clock(u.start)}–${clock(u.end)}  ${u.polarity} ${fmt(u.score)}\n${u.text}`));
    g.append(svg("rect", { x: x0, width: w, y: Math.min(y(s), y(0)), height: Math.max(1, Math.abs(y(s) - y(0))), class: cls }));
    g.append(svg("text", { x: x0 + w / 2, y: s >= 0 ? y(s) - 4 : y(s) + 12, "text-anchor": "middle", class: "score" }, fmt(u.score)));
    // contributions lane: one stacked bar per utterance
    let offset = x0;
    const total = MODALITIES.reduce((a, m) => a + Math.max(0, u.weights[m] || 0), 0) || 1;
    for (const m of MODALITIES) {
      if (!(m in u.weights)) continue;
      const part = (w * Math.max(0, u.weights[m])) / total;
      g.append(svg("rect", { x: offset, width: part, y: laneY, height: 10, class: "m-" + m }));
      offset += part;
    }
    // transcript and cues under the bar, cut to the bar's width
    const chars = Math.max(4, Math.floor(w / 6));
    const cut = (t) => (t.length > chars ? t.slice(0, chars - 1) + "…" : t);
    g.append(svg("text", { x: x0, y: cueY, class: "transcript" }, cut(u.text || "(no words)")));
    g.append(svg("text", { x: x0, y: cueY + 16, class: "cues" }, cut(cueSummary(u.cues || {}))));
    box.append(g);
  });
  box.append(svg("text", { x: left - 4, y: laneY + 9, "text-anchor": "end" }, "weights"));
  box.append(svg("text", { x: left - 4, y: cueY, "text-anchor": "end" }, "said"));
  box.append(svg("text", { x: left - 4, y: cueY + 16, "text-anchor": "end" }, "cues"));
}

function sceneRuns(frames) {
  // per-frame scene labels (time, label) as runs: "talking_head 0:00.0–0:07.0"
  const runs = [];
  for (const f of frames) {
    const label = typeof f === "object" && f !== null ? String(f.label ?? "") : String(f);
    const t = typeof f === "object" && f !== null ? Number(f.time ?? 0) : 0;
    const last = runs[runs.length - 1];
    if (last && last.label === label) last.end = t;
    else runs.push({ label, start: t, end: t });
  }
  return runs.map((r) => `${r.label} ${clock(r.start)}–${clock(r.end)}`).join(", ");
}

function fillSummary(result) {
  const rows = [
    ["model", `${result.model} (${(result.fused_modalities || []).join(" + ")})`],
    ["duration", `${fmt(result.duration, 1)} s`],
    ["utterances", String(result.utterances.length)],
    ["transcript", result.transcript_source],
    ["language", result.language ? `${result.language} (${result.language_source})` : "unknown"],
  ];
  if (Array.isArray(result.scenes) && result.scenes.length) rows.push(["scenes", sceneRuns(result.scenes)]);
  $("summary").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const notes = [...(result.warnings || []), ...(result.notes || [])];
  $("notes").replaceChildren(...notes.map((n) => el("li", {}, n)));
}

function fillTable(result) {
  const body = $("utterances").tBodies[0];
  body.replaceChildren(
    ...result.utterances.map((u, i) => {
      const weights = el("td", {}, weightBar(u.weights || {}));
      weights.prepend(
        el("div", { class: "small" }, MODALITIES.filter((m) => m in (u.weights || {})).map((m) => `${m} ${fmt(u.weights[m])}`).join(", ") || "none"),
      );
      return el(
        "tr",
        { class: "utterance-row" },
        el("td", {}, String(i + 1)),
        el("td", {}, `${clock(u.start)}–${clock(u.end)}`),
        el("td", { class: "text" }, u.text || "(no words)"),
        el("td", { class: "score " + polarityClass(u.polarity) }, `${fmt(u.score)} ${u.polarity}`),
        weights,
        el("td", { class: "small" }, cueSummary(u.cues || {})),
        el("td", { class: "small" }, [aspectSummary(u), u.scene ? "scene: " + u.scene : ""].filter(Boolean).join("; ")),
      );
    }),
  );
}

async function analyse(event) {
  event.preventDefault();
  showError("");
  const media = $("media").files[0];
  if (!media) return showError("choose a video or audio file first");
  const form = new FormData();
  form.append("media", media);
  if ($("transcript").files[0]) form.append("transcript", $("transcript").files[0]);
  $("submit").disabled = true;
  $("progress-box").hidden = false;
  $("upload-progress").value = 0;
  $("job-progress").removeAttribute("value"); // indeterminate until the job ends
  $("job-status").textContent = "waiting";
  try {
    const job = await upload(form);
    const done = await waitForJob(job.id);
    const result = await getJSON(done.links["timeline.json"]);
    fillSummary(result);
    drawTimeline(result);
    fillTable(result);
    await Promise.all([
      linkDownload($("download-json"), done.links["timeline.json"]),
      linkDownload($("download-csv"), done.links["timeline.csv"]),
      linkDownload($("download-png"), done.links["timeline.png"]),
    ]);
    $("result").hidden = false;
    $("result").dataset.job = done.id;
  } catch (err) {
    showError(err.message);
  } finally {
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => $("form").addEventListener("submit", analyse));
