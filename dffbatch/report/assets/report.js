// dffbatch report: the stack grid, the job table and the viewer, from window.DFF (jobs.js).
// No library, no network: everything it loads is in the run folder.
(function () {
  "use strict";
  var D = window.DFF || {jobs: [], sweeps: [], gt: false};
  // a row: [id, sweep index, stack, status, frames, "HxW", seconds, mean confidence,
  //         low-confidence share, rmse, AiF PSNR, error, views (1: view/ images, 2: truth and error,
  //         4: 3-D mesh, 8: depth and confidence thumbnails), alignment note, AiF PSNR within 30 px
  //         of depth jumps (occlusion halos), unreadable frames skipped (on_bad_frame: skip)]
  var J = {id: 0, sweep: 1, stack: 2, status: 3, frames: 4, size: 5, time: 6, conf: 7, low: 8, rmse: 9,
           psnr: 10, error: 11, views: 12, align: 13, band: 14, skipped: 15};
  var COLS = [["job", J.id], ["status", J.status], ["frames", J.frames], ["size", J.size], ["time (s)", J.time],
              ["mean confidence", J.conf], ["low-confidence share", J.low]];
  if (D.gt) { COLS.push(["depth RMSE (frame)", J.rmse], ["AiF PSNR (dB)", J.psnr],
                        ["AiF PSNR at depth jumps (dB)", J.band]); }
  var LAYERS = [["allfocus", "all-in-focus", "view/allfocus.webp"], ["depth", "depth", "view/depth.jpg"],
                ["confidence", "confidence (half size)", "view/confidence.jpg"],
                ["truth", "true depth", "view/truth.jpg"], ["error", "error (red +, blue -)", "view/error.jpg"],
                ["3-D", "3-D surface (drag to turn, wheel to zoom, right-drag to move)", "view/mesh.js"]];
  // the grid's thumbnails, one kind at a time (the toggle above the grid; "#thumbs=depth" keeps it);
  // a job written before the map thumbnails (views without 8) shows the viewer's full-size image
  var THUMBS = {allfocus: ["view/thumb.webp"], depth: ["view/thumb_depth.jpg", "view/depth.jpg"],
                confidence: ["view/thumb_confidence.jpg", "view/confidence.jpg"]};
  var thumbKind = hashKind();
  var rows = D.jobs, view = rows.slice(), key = -1, dir = 1;
  var cardPage = 0, CARDS = 48, tablePage = 0, ROWS = 100;
  var byStack = {};  // stack -> row indices, one per sweep point
  rows.forEach(function (r, i) { (byStack[r[J.stack]] = byStack[r[J.stack]] || []).push(i); });

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function url(id, file) {  // each path segment encoded: names may hold spaces, '#', '?'
    return id.split("/").concat(file ? file.split("/") : []).map(encodeURIComponent).join("/");
  }
  function fmt(v) {
    if (v === null || v === undefined) { return ""; }
    return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);
  }
  function hashKind() {
    var k = new URLSearchParams(location.hash.slice(1)).get("thumbs");
    return Object.prototype.hasOwnProperty.call(THUMBS, k) ? k : "allfocus";
  }
  function thumbSrc(r) {
    var t = THUMBS[thumbKind];
    return url(r[J.id], t.length > 1 && !(r[J.views] & 8) ? t[1] : t[0]);
  }
  function setThumbs(k) {
    if (!Object.prototype.hasOwnProperty.call(THUMBS, k)) { k = "allfocus"; }
    if (k !== hashKind()) {  // replace, not push: the back button leaves the page, as before
      var h = new URLSearchParams(location.hash.slice(1));
      h.set("thumbs", k);
      location.replace("#" + h.toString());
    }
    document.querySelectorAll("#thumbkind button").forEach(function (b) {
      var on = b.getAttribute("data-kind") === k;
      b.classList.toggle("on", on); b.setAttribute("aria-pressed", String(on));
    });
    legend(k);
    if (k !== thumbKind) { thumbKind = k; renderCards(); }
  }
  function legend(k) {  // what the grid's colours mean: a near-white confidence card is a sure one, not a blank
    var g = $("thumblegend");
    g.textContent = "";
    $("grid").setAttribute("data-kind", k);
    if (k === "depth") {
      g.appendChild(el("span", {}, "first frame "));
      g.appendChild(el("span", {"class": "ramp"}));
      g.appendChild(el("span", {}, " last frame"));
    } else if (k === "confidence") {
      g.appendChild(el("span", {}, "P(depth within 1 frame): 0 "));
      g.appendChild(el("span", {"class": "ramp grey"}));
      g.appendChild(el("span", {}, " 1"));
    }
  }
  function sweepLabel(i) { return (D.sweeps[i] || {}).label || ""; }
  function aspect(r) {  // height / width, from the size "HxW" (numpy's order, as the table shows it)
    var s = String(r[J.size] || "").split("x");
    return s.length === 2 && +s[1] > 0 ? (+s[0] / +s[1]) : 1;
  }

  // ---------------------------------------------------------------- filter and sort
  function apply() {
    var q = $("filter").value.toLowerCase().trim();
    view = rows.filter(function (r) {
      return !q || (r[J.id] + " " + r[J.status] + " " + sweepLabel(r[J.sweep]) + " " + (r[J.error] || ""))
        .toLowerCase().indexOf(q) >= 0;
    });
    if (key >= 0) {
      view.sort(function (a, b) {
        var x = a[key], y = b[key];
        if (x === y) { return 0; }
        if (x === null || x === undefined) { return 1; }
        if (y === null || y === undefined) { return -1; }
        return (x < y ? -1 : 1) * dir;
      });
    }
    cardPage = 0; tablePage = 0; render();
  }
  function sortBy(i) { dir = key === i ? -dir : 1; key = i; $("sort").value = String(i); apply(); }

  // ---------------------------------------------------------------- grid and table
  function renderCards() {
    var grid = $("grid"); grid.textContent = "";
    view.slice(cardPage * CARDS, cardPage * CARDS + CARDS).forEach(function (r) {
      var ok = r[J.status] === "ok";
      var card = el("div", {"class": "card" + (ok ? "" : " failed"), "data-job": r[J.id]});
      if (ok && r[J.views] & 1) {
        var img = el("img", {src: thumbSrc(r), alt: r[J.stack], loading: "lazy", "data-kind": thumbKind,
                             width: "320", height: String(Math.round(320 * aspect(r)))});
        img.style.setProperty("--ar", String(1 / aspect(r)));
        if (thumbKind !== "allfocus" && !(r[J.views] & 8)) {
          img.title = "the viewer's full-size image: this job was written before the grid's " + thumbKind + " thumbnails";
        }
        img.addEventListener("error", function () {  // a file gone from the run folder: say so, no broken image
          var ph = el("div", {"class": "ph", "data-kind": img.getAttribute("data-kind")},
                      "no " + img.getAttribute("data-kind") + " image (" + img.getAttribute("src").split("/").pop() + ")");
          ph.style.setProperty("--ar", String(1 / aspect(r)));
          if (img.parentNode) { img.parentNode.replaceChild(ph, img); }
        });
        card.appendChild(img);
      } else if (!ok) {
        card.appendChild(el("div", {"class": "err"}, r[J.error] || r[J.status]));
      }
      var cap = el("div", {"class": "cap"});
      cap.appendChild(el("b", {}, r[J.stack]));
      cap.appendChild(el("br"));
      if (D.sweeps.length > 1) { cap.appendChild(el("span", {"class": "tag"}, sweepLabel(r[J.sweep]))); }
      var bits = [r[J.frames] ? r[J.frames] + " frames" : "", r[J.size] || "",
                  r[J.conf] !== null && r[J.conf] !== undefined ? "conf " + fmt(r[J.conf]) : "",
                  r[J.rmse] !== null && r[J.rmse] !== undefined ? "RMSE " + fmt(r[J.rmse]) : ""];
      cap.appendChild(el("span", {"class": "small"}, bits.filter(Boolean).join(" \u00b7 ")));
      if (r[J.align]) { cap.appendChild(el("div", {"class": "small note"}, "alignment: " + r[J.align])); }
      if (r[J.skipped]) { cap.appendChild(el("div", {"class": "small note warn"}, "skipped unreadable: " + r[J.skipped])); }
      card.appendChild(cap);
      if (ok && r[J.views] & 1) {  // the viewer opens on the kind the grid shows
        card.addEventListener("click", function () { V.layer = thumbKind; V.mode = "flip"; openViewer(r[J.id]); });
      }
      grid.appendChild(card);
    });
    var n = view.length, a = cardPage * CARDS;
    $("cardinfo").textContent = n ? "stacks " + (a + 1) + "\u2013" + Math.min(n, a + CARDS) + " of " + n : "none";
  }
  function renderTable() {
    var t = $("jobs"); t.textContent = "";
    var head = el("tr");
    COLS.forEach(function (c) {
      var th = el("th", {"data-i": String(c[1])}, c[0] + (c[1] === key ? (dir > 0 ? " \u25b2" : " \u25bc") : ""));
      th.addEventListener("click", function () { sortBy(c[1]); });
      head.appendChild(th);
    });
    t.appendChild(head);
    view.slice(tablePage * ROWS, tablePage * ROWS + ROWS).forEach(function (r) {
      var tr = el("tr", r[J.status] !== "ok" ? {"class": "bad"} : {});
      COLS.forEach(function (c) {
        var v = r[c[1]], td = el("td", typeof v === "number" ? {"class": "num"} : {});
        if (c[1] === J.id) {
          var a = el("a", {href: url(r[J.id]) + "/"}, v);
          td.appendChild(a);
          if (r[J.status] === "ok" && r[J.views] & 1) {
            var z = el("a", {href: "#", "class": "small", title: "open in the viewer"}, " view");
            z.addEventListener("click", function (e) { e.preventDefault(); openViewer(r[J.id]); });
            td.appendChild(z);
          }
        } else {
          td.textContent = c[1] === J.status && r[J.error] ? v + ": " + r[J.error] : fmt(v);
        }
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    var n = view.length, a = tablePage * ROWS;
    $("pageinfo").textContent = n ? "rows " + (a + 1) + "\u2013" + Math.min(n, a + ROWS) + " of " + n : "no rows";
  }
  function render() { renderCards(); renderTable(); }

  // ---------------------------------------------------------------- viewer
  var V = {job: null, layer: "allfocus", mode: "flip", zoom: false};
  function rowOf(id) { for (var i = 0; i < rows.length; i++) { if (rows[i][J.id] === id) { return rows[i]; } } return null; }
  function layersOf(r) {
    return LAYERS.filter(function (l) {
      return l[0] === "3-D" ? r[J.views] & 4 : (l[0] !== "truth" && l[0] !== "error" || r[J.views] & 2);
    });
  }

  // ---------------------------------------------------------------- 3-D view (three.js, loaded on demand)
  var meshes = {}, loading = null, renderers = [];
  window.DFF_MESH = function (data) { if (loading) { meshes[loading] = data; } };
  function script(src, done) {
    var s = el("script", {src: src});
    s.onload = function () { done(true); };
    s.onerror = function () { done(false); };
    document.head.appendChild(s);
  }
  function needThree(done) {
    if (window.DFF3D) { done(true); return; }
    script("three-bundle.js", done);
  }
  function needMesh(id, done) {
    if (meshes[id]) { done(true); return; }
    if (loading) { setTimeout(function () { needMesh(id, done); }, 30); return; }
    loading = id;
    script(url(id, "view/mesh.js"), function (ok) { loading = null; done(ok && !!meshes[id]); });
  }
  function bytes(b64) { var s = atob(b64), a = new Uint8Array(s.length); for (var i = 0; i < s.length; i++) { a[i] = s.charCodeAt(i); } return a; }
  function surface(box, r) {
    needThree(function (ok) {
      if (!ok) { box.textContent = "three-bundle.js did not load"; return; }
      needMesh(r[J.id], function (ok2) {
        if (!ok2) { box.textContent = "view/mesh.js did not load"; return; }
        if (!box.isConnected) { return; }
        var T = window.DFF3D, m = meshes[r[J.id]], w = m.w, h = m.h, S = Math.max(m.W, m.H);
        var z = new Uint16Array(bytes(m.z).buffer), rgb = bytes(m.rgb);
        var pos = new Float32Array(w * h * 3), col = new Float32Array(w * h * 3), idx = [];
        for (var j = 0; j < h; j++) {
          for (var i = 0; i < w; i++) {
            var k = j * w + i;
            pos[3 * k] = ((i + 0.5) / w - 0.5) * m.W / S;
            pos[3 * k + 1] = (0.5 - (j + 0.5) / h) * m.H / S;
            pos[3 * k + 2] = z[k] / 65535 * 0.45;  // as the 3-D plot: depth 0.45 of the longer side
            for (var c = 0; c < 3; c++) { col[3 * k + c] = rgb[3 * k + c] / 255; }
            if (i < w - 1 && j < h - 1) { idx.push(k, k + 1, k + w, k + 1, k + w + 1, k + w); }
          }
        }
        var g = new T.BufferGeometry();
        g.setAttribute("position", new T.BufferAttribute(pos, 3));
        g.setAttribute("color", new T.BufferAttribute(col, 3));
        g.setIndex(idx);
        var scene = new T.Scene(); scene.background = new T.Color(0x161616);
        scene.add(new T.Mesh(g, new T.MeshBasicMaterial({vertexColors: true, side: T.DoubleSide})));
        var W = box.clientWidth || 800, H = box.clientHeight || 600;
        var cam = new T.PerspectiveCamera(40, W / H, 0.01, 100);
        cam.up.set(0, 0, 1); cam.position.set(0, -1.3, 1.1);
        var rr = new T.WebGLRenderer({antialias: true, preserveDrawingBuffer: true});
        rr.setPixelRatio(window.devicePixelRatio || 1); rr.setSize(W, H);
        box.textContent = ""; box.appendChild(rr.domElement);
        var ctl = new T.OrbitControls(cam, rr.domElement); ctl.target.set(0, 0, 0.2); ctl.update();
        var draw = function () { rr.render(scene, cam); };
        ctl.addEventListener("change", draw); draw();
        renderers.push(rr);
        box.setAttribute("data-rendered", r[J.id]);
      });
    });
  }
  function siblings(r) {
    return (byStack[r[J.stack]] || []).map(function (i) { return rows[i]; })
      .filter(function (s) { return s[J.status] === "ok" && s[J.views] & 1; });
  }
  function openViewer(id) { V.job = id; $("viewer").classList.add("open"); drawViewer(); }
  function closeViewer() {
    $("viewer").classList.remove("open"); V.job = null; $("vpanels").textContent = "";
    renderers.forEach(function (rr) { rr.dispose(); if (rr.forceContextLoss) { rr.forceContextLoss(); } });
    renderers = [];
  }
  function step(d) {  // next / previous stack in the current order, same sweep point if it has one
    var r = rowOf(V.job), list = view.filter(function (s) { return s[J.status] === "ok" && s[J.views] & 1; });
    var i = list.indexOf(r);
    if (i < 0 || !list.length) { return; }
    var j = i;
    do { j = (j + d + list.length) % list.length; } while (list[j][J.stack] === r[J.stack] && j !== i);
    var same = siblings(list[j]).filter(function (s) { return s[J.sweep] === r[J.sweep]; });
    V.job = (same[0] || list[j])[J.id]; drawViewer();
  }
  function flipSweep(d) {
    var r = rowOf(V.job), sib = siblings(r), i = sib.indexOf(r);
    if (sib.length > 1) { V.job = sib[(i + d + sib.length) % sib.length][J.id]; drawViewer(); }
  }
  function panel(r, layer, label) {
    var p = el("div", {"class": "panel"});
    var lab = el("div", {"class": "lab"}, label);
    if (layer[0] === "depth" || layer[0] === "truth") {  // the colour scale, as in the depth plots
      var n = r[J.frames] ? r[J.frames] - 1 : "N-1";
      lab.appendChild(el("span", {"class": "scale"}, " frame 0 (first file) "));
      lab.appendChild(el("span", {"class": "ramp"}));
      lab.appendChild(el("span", {"class": "scale"}, " frame " + n));
    } else if (layer[0] === "confidence") {
      lab.appendChild(el("span", {"class": "scale"}, " 0 "));
      lab.appendChild(el("span", {"class": "ramp grey"}));
      lab.appendChild(el("span", {"class": "scale"}, " 1"));
    }
    p.appendChild(lab);
    var sc = el("div", {"class": "scroll" + (V.zoom ? " zoom" : "")});
    if (layer[0] === "3-D") {
      sc.className = "scroll gl"; sc.textContent = "loading the 3-D view\u2026";
      p.appendChild(sc); surface(sc, r);
      return p;
    }
    var s = String(r[J.size] || "").split("x");
    var img = el("img", {src: url(r[J.id], layer[2]), alt: label});
    if (layer[0] === "confidence") { img.className = "half"; }
    if (V.zoom && s.length === 2) { img.style.width = s[1] + "px"; }
    img.addEventListener("click", function () { V.zoom = !V.zoom; drawViewer(); });
    sc.appendChild(img);
    sc.addEventListener("scroll", function () {  // side by side: every panel follows the one scrolled
      document.querySelectorAll("#vpanels .scroll").forEach(function (o) {
        if (o !== sc) { o.scrollLeft = sc.scrollLeft; o.scrollTop = sc.scrollTop; }
      });
    });
    p.appendChild(sc);
    return p;
  }
  function button(box, text, on, fn, title) {
    var b = el("button", on ? {"class": "on"} : {}, text);
    if (title) { b.title = title; }
    b.addEventListener("click", fn); box.appendChild(b); return b;
  }
  function drawViewer() {
    var r = rowOf(V.job); if (!r) { return; }
    var layers = layersOf(r), sib = siblings(r);
    if (!layers.some(function (l) { return l[0] === V.layer; })) { V.layer = "allfocus"; }
    if (V.mode === "sweeps" && sib.length < 2) { V.mode = "flip"; }
    var top = $("vtop"); top.textContent = "";
    top.appendChild(el("span", {"class": "title"}, r[J.stack]));
    button(top, "\u2190", false, function () { step(-1); }, "previous stack (left arrow)");
    button(top, "\u2192", false, function () { step(1); }, "next stack (right arrow)");
    top.appendChild(el("span", {"class": "small"}, " layer:"));
    layers.forEach(function (l, i) {
      button(top, (i + 1) + " " + l[0], V.mode !== "layers" && V.layer === l[0],
             function () { V.layer = l[0]; if (V.mode === "layers") { V.mode = "flip"; } drawViewer(); });
    });
    top.appendChild(el("span", {"class": "small"}, " view:"));
    button(top, "flip", V.mode === "flip", function () { V.mode = "flip"; drawViewer(); });
    button(top, "layers side by side", V.mode === "layers", function () { V.mode = "layers"; drawViewer(); },
           "every layer of this stack side by side (L)");
    if (sib.length > 1) {
      button(top, "sweep points side by side", V.mode === "sweeps", function () { V.mode = "sweeps"; drawViewer(); },
             "this layer at every sweep point (S)");
      top.appendChild(el("span", {"class": "small"}, " sweep point:"));
      sib.forEach(function (s) {
        button(top, sweepLabel(s[J.sweep]) || s[J.id].split("/")[0], s === r,
               function () { V.job = s[J.id]; drawViewer(); }, "up / down arrows flip");
      });
    }
    button(top, "\u2715", false, closeViewer, "close (Esc)");
    var links = el("span", {"class": "small"});
    links.appendChild(el("a", {href: url(r[J.id]) + "/", target: "_blank"}, "outputs folder"));
    if (r[J.align]) {
      links.appendChild(document.createTextNode(" \u00b7 alignment: " + r[J.align] + " "));
      links.appendChild(el("a", {href: url(r[J.id], "alignment.png"), target: "_blank"}, "plot"));
    }
    if (r[J.skipped]) { links.appendChild(document.createTextNode(" \u00b7 skipped unreadable: " + r[J.skipped])); }
    top.appendChild(links);
    top.appendChild(el("span", {"class": "help"},
      "click: 1:1 / fit \u00b7 \u2190 \u2192 stacks \u00b7 1-" + layers.length + " layers \u00b7 \u2191 \u2193 sweep points \u00b7 Esc"));
    var box = $("vpanels"); box.textContent = "";
    renderers.forEach(function (rr) { rr.dispose(); if (rr.forceContextLoss) { rr.forceContextLoss(); } });
    renderers = [];
    var layer = layers.filter(function (l) { return l[0] === V.layer; })[0];
    if (V.mode === "layers") {
      layers.filter(function (l) { return l[0] !== "3-D"; }).forEach(function (l) { box.appendChild(panel(r, l, l[1])); });
    } else if (V.mode === "sweeps") {
      sib.forEach(function (s) { box.appendChild(panel(s, layer, sweepLabel(s[J.sweep]) + " \u2014 " + layer[1])); });
    } else {
      box.appendChild(panel(r, layer, layer[1] + (sib.length > 1 ? " \u2014 " + sweepLabel(r[J.sweep]) : "") +
                            " \u2014 " + r[J.id]));
    }
  }
  document.addEventListener("keydown", function (e) {
    if (!V.job) { return; }
    var r = rowOf(V.job), layers = layersOf(r), n = parseInt(e.key, 10);
    if (e.key === "Escape") { closeViewer(); }
    else if (e.key === "ArrowRight") { step(1); }
    else if (e.key === "ArrowLeft") { step(-1); }
    else if (e.key === "ArrowDown") { flipSweep(1); }
    else if (e.key === "ArrowUp") { flipSweep(-1); }
    else if (n >= 1 && n <= layers.length) { V.layer = layers[n - 1][0]; if (V.mode === "layers") { V.mode = "flip"; } drawViewer(); }
    else if (e.key === "l" || e.key === "L") { V.mode = V.mode === "layers" ? "flip" : "layers"; drawViewer(); }
    else if (e.key === "s" || e.key === "S") { V.mode = V.mode === "sweeps" ? "flip" : "sweeps"; drawViewer(); }
    else { return; }
    e.preventDefault();
  });

  // ---------------------------------------------------------------- wiring
  var sortSel = $("sort");
  sortSel.appendChild(el("option", {value: "-1"}, "run order"));
  COLS.forEach(function (c) { if (c[1] !== J.id) { sortSel.appendChild(el("option", {value: String(c[1])}, c[0])); } });
  sortSel.appendChild(el("option", {value: String(J.stack)}, "stack"));
  sortSel.addEventListener("change", function () { key = +sortSel.value; dir = 1; apply(); });
  document.querySelectorAll("#thumbkind button").forEach(function (b) {
    b.addEventListener("click", function () { setThumbs(b.getAttribute("data-kind")); });
  });
  window.addEventListener("hashchange", function () { setThumbs(hashKind()); });
  setThumbs(thumbKind);
  $("filter").addEventListener("input", apply);
  $("cprev").addEventListener("click", function () { if (cardPage > 0) { cardPage--; renderCards(); } });
  $("cnext").addEventListener("click", function () { if ((cardPage + 1) * CARDS < view.length) { cardPage++; renderCards(); } });
  $("prev").addEventListener("click", function () { if (tablePage > 0) { tablePage--; renderTable(); } });
  $("next").addEventListener("click", function () { if ((tablePage + 1) * ROWS < view.length) { tablePage++; renderTable(); } });
  render();
  document.body.setAttribute("data-ready", "1");
})();
