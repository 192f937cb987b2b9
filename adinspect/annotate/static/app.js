// adinspect annotate: the page. Plain JS, no libraries; everything goes through the JSON API.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const S = {
    list: null, id: null, info: null, w: 0, h: 0, img: null, heatImg: null,
    clicks: [], paint: null, model: null, final: null, overlay: null,
    undo: [], redo: [], mode: "click", heat: false, busy: 0, seq: 0, area: 0,
    view: { scale: 1, x: 0, y: 0 }, drag: null,
  };

  async function api(path, body) {
    const opt = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const r = await fetch(path, opt);
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  }
  const showError = (e) => { $("error").textContent = e ? String(e.message || e) : ""; };
  const busy = (d) => { S.busy += d; document.body.dataset.busy = String(S.busy); };
  const loadImage = (src) => new Promise((res, rej) => {
    const im = new Image();
    im.onload = () => res(im);
    im.onerror = () => rej(new Error(`cannot load ${src}`));
    im.src = src;
  });
  const defectType = () => $("defect-type").value;

  // ---------------------------------------------------------------- queue and progress
  async function refreshList() {
    S.list = await api("/api/images");
    const p = S.list.progress;
    $("progress").textContent = `${p.accepted + p.no_defect} labelled (${p.accepted} defect, ` +
      `${p.no_defect} no defect) · ${p.skipped} skipped · ${p.todo} left of ${S.list.images.length}`;
    const ol = $("queue");
    ol.innerHTML = "";
    for (const it of S.list.images) {
      const li = document.createElement("li");
      li.textContent = `${it.name} — ${it.state.replace("_", " ")}`;
      li.className = it.state + (it.id === S.id ? " current" : "");
      li.onclick = () => openImage(it.id);
      ol.appendChild(li);
    }
  }

  async function openImage(id) {
    busy(+1);
    showError(null);
    try {
      const info = await api(`/api/images/${id}`);
      const [img, heat] = await Promise.all([loadImage(info.image_url), loadImage(info.heatmap_url)]);
      Object.assign(S, { id, info, w: info.width, h: info.height, img, heatImg: heat, clicks: [], undo: [], redo: [] });
      S.paint = new Int8Array(S.w * S.h);
      S.model = new Uint8Array(S.w * S.h);
      const types = S.list.defect_types;
      const d = info.decision;
      $("defect-type").value = d && d.defect_type ? d.defect_type
        : (types.includes(info.folder_type) ? info.folder_type : types[0] || "");
      if (d && d.state === "accepted") {
        S.clicks = d.clicks.map((c) => ({ x: c.x, y: c.y, positive: c.positive }));
        await segment();
        const saved = await maskFromURL(info.mask_url);  // brush edits = saved mask vs model mask
        for (let i = 0; i < saved.length; i++) S.paint[i] = saved[i] === S.model[i] ? 0 : (saved[i] ? 1 : -1);
      }
      fitView();
      rebuild();
      await refreshList();
      $("info").textContent = `${info.name} · ${S.w}×${S.h}` + (d ? ` · ${d.state.replace("_", " ")}` : "");
    } catch (e) {
      showError(e);
    } finally {
      busy(-1);
    }
  }

  // ---------------------------------------------------------------- masks
  async function maskFromURL(url) {
    const im = await loadImage(url);
    const c = document.createElement("canvas");
    c.width = S.w; c.height = S.h;
    const g = c.getContext("2d");
    g.drawImage(im, 0, 0);
    const px = g.getImageData(0, 0, S.w, S.h).data;
    const out = new Uint8Array(S.w * S.h);
    for (let i = 0; i < out.length; i++) out[i] = px[4 * i] > 127 ? 1 : 0;
    return out;
  }

  async function segment() {
    const seq = ++S.seq;
    if (!S.clicks.length) {
      S.model = new Uint8Array(S.w * S.h);
      rebuild();
      return;
    }
    busy(+1);
    const t0 = performance.now();
    try {
      const r = await api("/api/segment", { image: S.id, defect_type: defectType(), clicks: S.clicks });
      const model = await maskFromURL(r.mask);
      if (seq !== S.seq) return;  // a newer click superseded this answer
      S.model = model;
      rebuild();
      $("status").textContent = `${S.clicks.length} clicks · model mask ${r.area} px · ` +
        `${Math.round(performance.now() - t0)} ms`;
      showError(null);
    } catch (e) {
      showError(e);
    } finally {
      busy(-1);
    }
  }

  function rebuild() {  // final = (model ∪ brush) \ eraser; overlay = translucent fill + outline
    const n = S.w * S.h;
    S.final = new Uint8Array(n);
    let area = 0;
    for (let i = 0; i < n; i++) {
      S.final[i] = S.paint[i] === 1 || (S.model[i] && S.paint[i] !== -1) ? 1 : 0;
      area += S.final[i];
    }
    S.area = area;
    const oc = document.createElement("canvas");
    oc.width = S.w; oc.height = S.h;
    const g = oc.getContext("2d");
    const im = g.createImageData(S.w, S.h);
    const f = S.final, w = S.w, h = S.h;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!f[i]) continue;
        const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          !f[i - 1] || !f[i + 1] || !f[i - w] || !f[i + w];
        im.data.set(edge ? [255, 255, 0, 255] : [255, 40, 40, 110], 4 * i);
      }
    }
    g.putImageData(im, 0, 0);
    S.overlay = oc;
    draw();
  }

  function maskDataURL() {  // the mask as drawn, white on black, original size
    const c = document.createElement("canvas");
    c.width = S.w; c.height = S.h;
    const g = c.getContext("2d");
    const im = g.createImageData(S.w, S.h);
    for (let i = 0; i < S.final.length; i++) {
      const v = S.final[i] ? 255 : 0;
      im.data.set([v, v, v, 255], 4 * i);
    }
    g.putImageData(im, 0, 0);
    return c.toDataURL("image/png");
  }

  // ---------------------------------------------------------------- drawing, zoom and pan
  function fitView() {
    const cw = canvas.clientWidth, ch = canvas.clientHeight;
    const scale = Math.min(cw / S.w, ch / S.h) * 0.98;
    S.view = { scale, x: (cw - S.w * scale) / 2, y: (ch - S.h * scale) / 2 };
  }

  function draw() {
    if (canvas.width !== canvas.clientWidth || canvas.height !== canvas.clientHeight) {
      canvas.width = canvas.clientWidth;
      canvas.height = canvas.clientHeight;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!S.img) return;
    const v = S.view;
    ctx.setTransform(v.scale, 0, 0, v.scale, v.x, v.y);
    ctx.imageSmoothingEnabled = v.scale < 1;
    ctx.drawImage(S.img, 0, 0);
    if (S.heat) ctx.drawImage(S.heatImg, 0, 0);
    ctx.imageSmoothingEnabled = false;
    if (S.overlay) ctx.drawImage(S.overlay, 0, 0);
    for (const c of S.clicks) {
      ctx.beginPath();
      ctx.arc(c.x + 0.5, c.y + 0.5, 6 / v.scale, 0, 2 * Math.PI);
      ctx.fillStyle = c.positive ? "#38a169" : "#e53e3e";
      ctx.fill();
      ctx.lineWidth = 1.5 / v.scale;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  }

  function toImage(ev) {
    const r = canvas.getBoundingClientRect();
    return {
      x: Math.floor((ev.clientX - r.left - S.view.x) / S.view.scale),
      y: Math.floor((ev.clientY - r.top - S.view.y) / S.view.scale),
    };
  }

  function imageToClient(x, y) {  // centre of image pixel (x, y) in client coordinates
    const r = canvas.getBoundingClientRect();
    return { x: r.left + S.view.x + (x + 0.5) * S.view.scale, y: r.top + S.view.y + (y + 0.5) * S.view.scale };
  }

  function zoom(factor, cx, cy) {
    const v = S.view;
    const s = Math.max(0.05, Math.min(40, v.scale * factor));
    S.view = { scale: s, x: cx - (cx - v.x) * (s / v.scale), y: cy - (cy - v.y) * (s / v.scale) };
    draw();
  }

  // ---------------------------------------------------------------- editing
  const snapshot = () => ({ clicks: S.clicks.slice(), paint: S.paint.slice() });
  function pushUndo() { S.undo.push(snapshot()); S.redo = []; }
  function restore(snap) { S.clicks = snap.clicks; S.paint = snap.paint; segment(); }
  function undo() { if (S.undo.length) { S.redo.push(snapshot()); restore(S.undo.pop()); } }
  function redo() { if (S.redo.length) { S.undo.push(snapshot()); restore(S.redo.pop()); } }
  function reset() { pushUndo(); restore({ clicks: [], paint: new Int8Array(S.w * S.h) }); }

  function addClick(p, positive) {
    if (p.x < 0 || p.y < 0 || p.x >= S.w || p.y >= S.h) return;
    if (!S.list.click_model) { showError("this package has no click model; run `adinspect train-click`"); return; }
    pushUndo();
    S.clicks.push({ x: p.x, y: p.y, positive });
    draw();
    segment();
  }

  function paintAt(p) {
    const r = Number($("brush-size").value) || 8, value = S.mode === "brush" ? 1 : -1;
    for (let y = Math.max(0, p.y - r); y <= Math.min(S.h - 1, p.y + r); y++) {
      for (let x = Math.max(0, p.x - r); x <= Math.min(S.w - 1, p.x + r); x++) {
        if ((x - p.x) ** 2 + (y - p.y) ** 2 <= r * r) S.paint[y * S.w + x] = value;
      }
    }
  }

  function setMode(mode) {
    S.mode = mode;
    for (const m of ["click", "brush", "eraser"]) $(`mode-${m}`).classList.toggle("active", m === mode);
  }

  // ---------------------------------------------------------------- decisions and navigation
  async function decide(path, body) {
    busy(+1);
    try {
      await api(path, body);
      await refreshList();
      const imgs = S.list.images;
      const next = imgs.find((it) => it.id > S.id && it.state === "todo") || imgs.find((it) => it.state === "todo");
      await openImage(next ? next.id : S.id);
      $("status").textContent = `saved ${path.replace("/api/", "")}`;
    } catch (e) {
      showError(e);
    } finally {
      busy(-1);
    }
  }

  function accept() {
    if (!S.clicks.length) { showError("click the defect at least once before accepting (or mark no defect)"); return; }
    if (S.area === 0) {  // an empty defect label would train the seg model on nothing: ask
      if (window.confirm("The mask is empty (0 defect pixels). Mark this image 'no defect' instead?")) {
        decide("/api/no_defect", { image: S.id });
      } else {
        showError("the mask is empty: draw the defect (another click or the brush), or mark no defect");
      }
      return;
    }
    decide("/api/accept", { image: S.id, defect_type: defectType(), clicks: S.clicks, mask: maskDataURL() });
  }
  const go = (d) => { const id = S.id + d; if (id >= 0 && id < S.list.images.length) openImage(id); };

  async function train() {
    $("train").disabled = true;
    try {
      showTrain(await api("/api/train", {}));
      setTimeout(pollTrain, 1000);
    } catch (e) {
      showError(e);
      $("train").disabled = false;
    }
  }
  function showTrain(st) {  // progress while running; a failure also goes to the error line
    $("train-status").textContent = st.state === "idle" ? "" :
      `${st.state}: step ${st.step}/${st.steps} ${st.command} (${st.seconds} s) ${st.last_line}`;
    $("train-status").dataset.state = st.state;
    $("train").disabled = st.state === "running";
    if (st.state === "failed") {
      showError(`training failed in ${st.command} (exit ${st.returncode}): ${st.last_line} — see ${st.log}`);
    }
  }
  async function pollTrain() {
    try {
      const st = await api("/api/train");
      showTrain(st);
      if (st.state === "running") setTimeout(pollTrain, 1000);
    } catch (e) {  // the server went away: say so, keep the button usable
      showError(`training status: ${e.message || e}`);
      $("train").disabled = false;
    }
  }

  // ---------------------------------------------------------------- events
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("mousedown", (ev) => {
    if (!S.img) return;
    if (ev.button === 1 || ev.altKey) {
      S.drag = { kind: "pan", x: ev.clientX, y: ev.clientY };
    } else if (S.mode === "click") {
      addClick(toImage(ev), ev.button === 0 && !ev.shiftKey);
    } else if (ev.button === 0) {
      pushUndo();
      S.drag = { kind: "paint" };
      paintAt(toImage(ev));
      rebuild();
    }
    ev.preventDefault();
  });
  window.addEventListener("mousemove", (ev) => {
    if (!S.drag) return;
    if (S.drag.kind === "pan") {
      S.view.x += ev.clientX - S.drag.x;
      S.view.y += ev.clientY - S.drag.y;
      S.drag.x = ev.clientX;
      S.drag.y = ev.clientY;
      draw();
    } else {
      paintAt(toImage(ev));
      if (!S.drag.frame) S.drag.frame = requestAnimationFrame(() => { if (S.drag) S.drag.frame = 0; rebuild(); });
    }
  });
  window.addEventListener("mouseup", () => { if (S.drag && S.drag.kind === "paint") rebuild(); S.drag = null; });
  canvas.addEventListener("wheel", (ev) => {
    const r = canvas.getBoundingClientRect();
    zoom(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    ev.preventDefault();
  }, { passive: false });
  window.addEventListener("resize", draw);
  window.addEventListener("keydown", (ev) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName)) return;
    const k = ev.key.toLowerCase(), mod = ev.ctrlKey || ev.metaKey;
    const actions = {
      arrowleft: () => go(-1), arrowright: () => go(1), enter: accept,
      n: () => decide("/api/no_defect", { image: S.id }), s: () => decide("/api/skip", { image: S.id }),
      u: undo, y: redo, r: reset, h: () => { S.heat = !S.heat; draw(); },
      c: () => setMode("click"), b: () => setMode("brush"), e: () => setMode("eraser"),
      0: () => { fitView(); draw(); }, 1: () => zoom(1 / S.view.scale, canvas.width / 2, canvas.height / 2),
      "[": () => { $("brush-size").value = Math.max(1, Number($("brush-size").value) - 2); },
      "]": () => { $("brush-size").value = Number($("brush-size").value) + 2; },
    };
    const action = mod ? { z: ev.shiftKey ? redo : undo, y: redo }[k] : actions[k];
    if (action) { action(); ev.preventDefault(); }
  });
  $("defect-type").addEventListener("change", () => segment());
  $("mode-click").onclick = () => setMode("click");
  $("mode-brush").onclick = () => setMode("brush");
  $("mode-eraser").onclick = () => setMode("eraser");
  $("undo").onclick = undo;
  $("redo").onclick = redo;
  $("reset").onclick = reset;
  $("heatmap").onclick = () => { S.heat = !S.heat; $("heatmap").classList.toggle("active", S.heat); draw(); };
  $("fit").onclick = () => { fitView(); draw(); };
  $("accept").onclick = accept;
  $("no-defect").onclick = () => decide("/api/no_defect", { image: S.id });
  $("skip").onclick = () => decide("/api/skip", { image: S.id });
  $("prev").onclick = () => go(-1);
  $("next").onclick = () => go(1);
  $("train").onclick = train;

  // for people scripting the page (and the browser tests)
  window.adinspect = { state: S, maskDataURL, imageToClient, openImage, idle: () => S.busy === 0 };

  (async () => {
    busy(+1);
    try {
      await refreshList();
      for (const t of S.list.defect_types) $("defect-type").add(new Option(t, t));
      if (!S.list.click_model) showError("this package has no click model (run `adinspect train-click`): heat map only");
      await openImage(S.list.resume);
      pollTrain();
    } catch (e) {
      showError(e);
    } finally {
      busy(-1);
    }
  })();
})();
